# Cassandra 5.0.9, one node on Java 17, started as a plain java process from the Maven jars
# (conf/cassandra-pom.xml), JVM flags in conf/cassandra-jvm17.options. Sourced by services.sh.

cassandra_url() { echo "cassandra://$HOST:$CASSANDRA_PORT"; }

cassandra_answering() { python3 "$SERVICES_LIB/probe.py" cassandra "$HOST" "$CASSANDRA_PORT"; }

cassandra_pids() { pid_alive "$RUN/cassandra.pid" || true; }

cassandra_start() {
    local d=$INFRA/cassandra t0 jamm opts=()
    t0=$(now)
    java17
    maven_jars cassandra "$CONF/cassandra-pom.xml" "$d/lib"
    cassandra_stop
    ports_free cassandra "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" "$CASSANDRA_SSL_STORAGE_PORT" || return 1
    rm -rf "$d/data"
    mkdir -p "$d/data"
    render "$CONF/cassandra.yaml" "$d/cassandra.yaml" HOST="$HOST" PORT="$CASSANDRA_PORT" \
        STORAGE_PORT="$CASSANDRA_STORAGE_PORT" SSL_STORAGE_PORT="$CASSANDRA_SSL_STORAGE_PORT"
    cp "$CONF/cassandra-logback.xml" "$d/logback.xml"
    mapfile -t opts < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$CONF/cassandra-jvm17.options")
    jamm=$(find "$d/lib" -name "jamm-*.jar" | head -n 1)
    [[ -n $jamm ]] || die "cassandra: no jamm jar in $d/lib"
    launch "$RUN/cassandra.pid" "$d/cassandra.log" "$JAVA_BIN" -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" \
        "${opts[@]}" -javaagent:"$jamm" \
        -Dcassandra.config=file://"$d/cassandra.yaml" -Dcassandra.storagedir="$d/data" \
        -Dcassandra.logdir="$d/data/logs" -Dlogback.configurationFile=file://"$d/logback.xml" \
        -cp "$d/lib/*" org.apache.cassandra.service.CassandraDaemon || {
        fail_with_log cassandra "$d/cassandra.log" "java did not start"
        return 1
    }
    if ! wait_until "$CASSANDRA_TIMEOUT" "$RUN/cassandra.pid" cassandra_started "$d/cassandra.log"; then
        fail_with_log cassandra "$d/cassandra.log" "$WAIT_ERROR"
        return 1
    fi
    log "cassandra: ready in $(since "$t0")s (pid $(cassandra_pids))"
}

cassandra_started() { grep -q "Starting listening for CQL clients" "$1" && cassandra_answering; }

cassandra_stop() { stop_pidfile cassandra "$RUN/cassandra.pid"; }
