# PostgreSQL 15 (Debian's binaries), a private cluster: trust auth for user postgres, no durability (fsync=off,
# test data only). Just the server: `livechat migrate` creates the schema. Sourced by services.sh.
#
# initdb/pg_ctl refuse to run as root, so as root they run as the postgres user (runuser), and the data dir must
# be reachable by that user: $INFRA when every parent is traversable, else /var/tmp (root's home is often 0700).

postgres_url() { echo "postgresql://postgres@$HOST:$POSTGRES_PORT/postgres"; }

postgres_dir() {
    if [[ -n ${LIVECHAT_POSTGRES_DIR:-} ]]; then
        echo "$LIVECHAT_POSTGRES_DIR"
    elif [[ $(id -u) != 0 ]] || runuser -u postgres -- test -x "$INFRA" 2>/dev/null; then
        echo "$INFRA/postgres"
    else
        echo "/var/tmp/livechat-services-postgres-$POSTGRES_PORT"
    fi
}

# The command prefix that runs a PostgreSQL tool as the postgres user when we are root.
AS_PG=()
if [[ $(id -u) == 0 ]]; then AS_PG=(runuser -u postgres --); fi

postgres_answering() {
    PGCONNECT_TIMEOUT=2 "$PG_BIN/psql" -h "$HOST" -p "$POSTGRES_PORT" -U postgres -d postgres -XAtqc 'select 1' \
        2>/dev/null | grep -qx 1
}

postgres_pids() {
    local d
    d=$(postgres_dir)
    pid_alive "$d/data/postmaster.pid" 2>/dev/null || true
}

postgres_start() {
    local d t0
    d=$(postgres_dir)
    t0=$(now)
    [[ -x $PG_BIN/initdb ]] || apt_install postgresql-15
    postgres_stop
    ports_free postgres "$POSTGRES_PORT" || return 1
    # Fresh start: a new cluster every time (a few hundred ms).
    rm -rf "$d"
    mkdir -p "$d"
    if [[ $(id -u) == 0 ]]; then chown postgres:postgres "$d"; fi
    if ! "${AS_PG[@]}" "$PG_BIN/initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$d/initdb.log" 2>&1 9>&-; then
        fail_with_log postgres "$d/initdb.log" "initdb failed"
        return 1
    fi
    # -k: the unix socket stays in our dir, away from the system cluster's /var/run/postgresql.
    if ! setsid -w "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/server.log" -w -t "$POSTGRES_TIMEOUT" \
        -o "-p $POSTGRES_PORT -k $d -c listen_addresses=$HOST -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=200" start </dev/null >"$d/pg_ctl.log" 2>&1 9>&-; then
        fail_with_log postgres "$d/server.log" "pg_ctl start failed ($(tail -n 1 "$d/pg_ctl.log"))"
        return 1
    fi
    if ! wait_until "$POSTGRES_TIMEOUT" "$d/data/postmaster.pid" postgres_answering; then
        fail_with_log postgres "$d/server.log" "$WAIT_ERROR"
        return 1
    fi
    log "postgres: ready in $(since "$t0")s (pid $(postgres_pids), dir $d)"
}

postgres_stop() {
    local d
    d=$(postgres_dir)
    pid_alive "$d/data/postmaster.pid" >/dev/null || return 0
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$d/data" -m fast -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1 9>&- ||
        log "postgres: pg_ctl stop failed"
}
