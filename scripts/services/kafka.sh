# Kafka 4.1.2, one KRaft node (broker + controller in one JVM), jars from Maven Central (conf/kafka-pom.xml).
# No topics are created here: the backend creates its own with the admin client (auto-create is off).
# Sourced by services.sh.

# The TOXI listener (conf/kafka-server.properties): the broker listens on KAFKA_TOXI_PORT and advertises
# KAFKA_TOXI_ADVERTISED_PORT, where the fault tests put a Toxiproxy proxy -> KAFKA_TOXI_PORT.
KAFKA_TOXI_PORT=${LIVECHAT_KAFKA_TOXI_PORT:-19094}
KAFKA_TOXI_ADVERTISED_PORT=${LIVECHAT_KAFKA_TOXI_ADVERTISED_PORT:-19095}

kafka_url() { echo "kafka://$HOST:$KAFKA_PORT"; }

kafka_answering() { python3 "$SERVICES_LIB/probe.py" kafka "$HOST" "$KAFKA_PORT"; }

kafka_pids() { pid_alive "$RUN/kafka.pid" || true; }

# A KRaft cluster id: 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints; one
# JVM start saved). Kafka refuses ids whose text starts with '-'.
kafka_cluster_id() {
    python3 -c 'import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

kafka_start() {
    local d=$INFRA/kafka t0
    t0=$(now)
    java17
    maven_jars kafka "$CONF/kafka-pom.xml" "$d/lib"
    kafka_stop
    ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_TOXI_PORT" || return 1
    rm -rf "$d/data"
    render "$CONF/kafka-server.properties" "$d/server.properties" HOST="$HOST" PORT="$KAFKA_PORT" \
        CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" TOXI_PORT="$KAFKA_TOXI_PORT" \
        TOXI_ADVERTISED_PORT="$KAFKA_TOXI_ADVERTISED_PORT" DATA_DIR="$d/data"
    cp "$CONF/kafka-log4j2.properties" "$d/log4j2.properties"
    # The lib/* glob is for the JVM, not the shell: keep it quoted.
    if ! "$JAVA_BIN" -Dkafka.root.level=WARN -Dlog4j2.configurationFile="$d/log4j2.properties" -cp "$d/lib/*" \
        kafka.tools.StorageTool format -t "$(kafka_cluster_id)" -c "$d/server.properties" --standalone \
        </dev/null >"$d/format.log" 2>&1 9>&-; then
        fail_with_log kafka "$d/format.log" "kafka-storage format failed"
        return 1
    fi
    launch "$RUN/kafka.pid" "$d/kafka.log" "$JAVA_BIN" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$d/log4j2.properties" \
        -cp "$d/lib/*" kafka.Kafka "$d/server.properties" || {
        fail_with_log kafka "$d/kafka.log" "java did not start"
        return 1
    }
    if ! wait_until "$KAFKA_TIMEOUT" "$RUN/kafka.pid" kafka_started "$d/kafka.log"; then
        fail_with_log kafka "$d/kafka.log" "$WAIT_ERROR"
        return 1
    fi
    log "kafka: ready in $(since "$t0")s (pid $(kafka_pids))"
}

# Ready = the broker logged its start-up end and answers ApiVersions.
kafka_started() { grep -q "Kafka Server started" "$1" && kafka_answering; }

kafka_stop() { stop_pidfile kafka "$RUN/kafka.pid"; }
