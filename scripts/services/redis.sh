# Redis (Debian's redis-server >= 7, for sharded pub/sub): a single node ("redis") and a 3-master + 3-replica
# cluster ("redis-cluster") on 6 consecutive ports. No persistence: the data is test state. Sourced by services.sh.

redis_url() { echo "redis://$HOST:$REDIS_PORT"; }
redis_cluster_url() { echo "redis+cluster://$HOST:$REDIS_CLUSTER_PORT"; }

redis_cluster_ports() { seq "$REDIS_CLUSTER_PORT" $((REDIS_CLUSTER_PORT + 5)); }

rcli() { # rcli PORT ARGS... — redis-cli with a short timeout, never interactive
    local port=$1
    shift
    timeout 2 redis-cli -h "$HOST" -p "$port" "$@" </dev/null 2>/dev/null
}

redis_ensure_installed() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server
    local major
    major=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    ((major >= 7)) || die "redis-server $major found; livechat needs >= 7 (SSUBSCRIBE/SPUBLISH)"
}

# redis_server PORT DIR EXTRA_ARGS... — a daemonized redis-server whose pid file is $RUN/redis-PORT.pid.
redis_server() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind "$HOST" --protected-mode no --daemonize yes \
        --dir "$dir" --pidfile "$RUN/redis-$port.pid" --logfile "$dir/redis.log" \
        --save "" --appendonly no "$@" </dev/null >/dev/null 2>&1 8>&- 9>&-
}

# --- single node --------------------------------------------------------------------------------------------

redis_answering() { [[ $(rcli "$REDIS_PORT" ping) == PONG ]]; }

redis_pids() { pid_alive "$RUN/redis-$REDIS_PORT.pid" || true; }

redis_start() {
    local d=$INFRA/redis t0
    t0=$(now)
    redis_ensure_installed
    redis_stop
    ports_free redis "$REDIS_PORT" || return 1
    rm -rf "$d"
    # maxclients: one test process may hold thousands of connections (redis lowers it to the fd limit).
    if ! redis_server "$REDIS_PORT" "$d" --maxclients 10000; then
        fail_with_log redis "$d/redis.log" "redis-server did not start"
        return 1
    fi
    if ! wait_until "$REDIS_TIMEOUT" "" redis_answering; then
        fail_with_log redis "$d/redis.log" "$WAIT_ERROR"
        return 1
    fi
    log "redis: ready in $(since "$t0")s (pid $(redis_pids))"
}

redis_stop() { stop_pidfile redis "$RUN/redis-$REDIS_PORT.pid"; }

# --- cluster ------------------------------------------------------------------------------------------------

# Healthy = every node answers, cluster_state:ok with 3 masters owning the slots, 3 replicas, each replica's
# link to its master up and not syncing. A replica that has not finished its sync refuses to fail over, so fault
# tests need all of it, not just cluster_state:ok.
redis_cluster_answering() {
    local p0=$REDIS_CLUSTER_PORT p info nodes repl
    info=$(rcli "$p0" cluster info) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q '^cluster_size:3' <<<"$info" || return 1
    grep -q '^cluster_known_nodes:6' <<<"$info" || return 1
    nodes=$(rcli "$p0" cluster nodes) || return 1
    [[ $(grep -cE '(^| |,)slave ' <<<"$nodes") == 3 && $(grep -cE '(^| |,)master ' <<<"$nodes") == 3 ]] || return 1
    ! grep -q 'fail' <<<"$nodes" || return 1
    for p in $(redis_cluster_ports); do
        repl=$(rcli "$p" info replication) || return 1
        grep -q '^role:master' <<<"$repl" && continue
        grep -q '^master_link_status:up' <<<"$repl" || return 1
        grep -q '^master_sync_in_progress:0' <<<"$repl" || return 1
    done
}

redis_cluster_pids() {
    local p
    for p in $(redis_cluster_ports); do pid_alive "$RUN/redis-$p.pid" || true; done
}

redis_cluster_start() {
    local d=$INFRA/redis-cluster t0 p addrs=()
    t0=$(now)
    redis_ensure_installed
    redis_cluster_stop
    for p in $(redis_cluster_ports); do
        ports_free redis-cluster "$p" $((p + 10000)) || return 1
        addrs+=("$HOST:$p")
    done
    rm -rf "$d"
    for p in $(redis_cluster_ports); do
        # node-timeout 2 s: failover tests see a promotion in ~4 s. validity-factor 0: a replica may always
        # fail over, however long it was cut off (otherwise slots can stay down after a restart).
        if ! redis_server "$p" "$d/$p" --cluster-enabled yes --cluster-config-file "$d/$p/nodes.conf" \
            --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 --maxclients 10000; then
            fail_with_log redis-cluster "$d/$p/redis.log" "redis-server on $p did not start"
            return 1
        fi
    done
    for p in $(redis_cluster_ports); do
        if ! wait_until "$REDIS_TIMEOUT" "" redis_node_pong "$p"; then
            fail_with_log redis-cluster "$d/$p/redis.log" "node $p: $WAIT_ERROR"
            return 1
        fi
    done
    if ! timeout 30 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
        </dev/null >"$d/create.log" 2>&1; then
        fail_with_log redis-cluster "$d/create.log" "redis-cli --cluster create failed"
        return 1
    fi
    if ! wait_until "$REDIS_CLUSTER_TIMEOUT" "" redis_cluster_answering; then
        fail_with_log redis-cluster "$d/create.log" "$WAIT_ERROR (cluster_state:ok + 3 synced replicas)"
        rcli "$REDIS_CLUSTER_PORT" cluster nodes | sed 's/^/    /' >&2
        return 1
    fi
    log "redis-cluster: 3 masters + 3 synced replicas in $(since "$t0")s (pids $(redis_cluster_pids | xargs))"
}

redis_node_pong() { [[ $(rcli "$1" ping) == PONG ]]; }

redis_cluster_stop() {
    local p
    for p in $(redis_cluster_ports); do stop_pidfile redis-cluster "$RUN/redis-$p.pid"; done
}
