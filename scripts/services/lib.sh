# Settings and helpers shared by scripts/services.sh and the per-service files. Sourced, never run.
#
# Every default lives here. Override with the environment:
#   LIVECHAT_SERVICES_DIR    work dir (downloads, data, logs, pid files)   ~/.cache/livechat-services
#   LIVECHAT_SERVICES_READY  the "name url" file other tools read            /tmp/livechat-services.ready
#   LIVECHAT_SERVICES_HOST   the address every service binds               127.0.0.1
#   LIVECHAT_<SERVICE>_PORT  see the port block below
#   LIVECHAT_KAFKA_HEAP / LIVECHAT_CASSANDRA_HEAP                          512m / 1G
#   LIVECHAT_JAVA            a Java 17 binary (default: java on PATH if it is 17, else /usr/lib/jvm/java-17-*)
#   LIVECHAT_POSTGRES_DIR    PostgreSQL's dir; it must be reachable by the postgres user (see postgres.sh)

SERVICES_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF=$SERVICES_LIB/conf
INFRA=${LIVECHAT_SERVICES_DIR:-$HOME/.cache/livechat-services}
RUN=$INFRA/run
READY_FILE=${LIVECHAT_SERVICES_READY:-/tmp/livechat-services.ready}
HOST=${LIVECHAT_SERVICES_HOST:-127.0.0.1}

# The project's standard ports (docs: /work/shared/reference/services.md, briefs/common.md).
KAFKA_PORT=${LIVECHAT_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${LIVECHAT_KAFKA_CONTROLLER_PORT:-19093}
CASSANDRA_PORT=${LIVECHAT_CASSANDRA_PORT:-19042}
CASSANDRA_STORAGE_PORT=${LIVECHAT_CASSANDRA_STORAGE_PORT:-19070}
CASSANDRA_SSL_STORAGE_PORT=${LIVECHAT_CASSANDRA_SSL_STORAGE_PORT:-19071}
POSTGRES_PORT=${LIVECHAT_POSTGRES_PORT:-19432}
REDIS_PORT=${LIVECHAT_REDIS_PORT:-19600}
REDIS_CLUSTER_PORT=${LIVECHAT_REDIS_CLUSTER_PORT:-19701} # first of 6 consecutive ports; bus ports are +10000
TOXIPROXY_PORT=${LIVECHAT_TOXIPROXY_PORT:-18474}

# Pinned versions. Kafka 4.1.2 / Cassandra 5.0.9 / log4j 2.25.3 are pinned in conf/*-pom.xml.
TOXIPROXY_VERSION=v2.12.0 # `@latest` resolves to v2.5.0 on the Go proxy; name the version.
MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:2.8
PG_BIN=${LIVECHAT_PG_BIN:-/usr/lib/postgresql/15/bin}
KAFKA_HEAP=${LIVECHAT_KAFKA_HEAP:-512m}         # broker RSS ~350 MB at 512m
CASSANDRA_HEAP=${LIVECHAT_CASSANDRA_HEAP:-1G}   # node RSS ~1.5 GB at 1G

# Bounded waits (seconds) for a fresh start to become ready; measured cold starts are 5-10x below these.
KAFKA_TIMEOUT=${LIVECHAT_KAFKA_TIMEOUT:-120}
CASSANDRA_TIMEOUT=${LIVECHAT_CASSANDRA_TIMEOUT:-180}
POSTGRES_TIMEOUT=${LIVECHAT_POSTGRES_TIMEOUT:-60}
REDIS_TIMEOUT=${LIVECHAT_REDIS_TIMEOUT:-10}
REDIS_CLUSTER_TIMEOUT=${LIVECHAT_REDIS_CLUSTER_TIMEOUT:-60}
TOXIPROXY_TIMEOUT=${LIVECHAT_TOXIPROXY_TIMEOUT:-10}
STOP_TIMEOUT=${LIVECHAT_STOP_TIMEOUT:-30} # Cassandra flushes memtables on SIGTERM (~6 s)

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { printf '%.1f' "$(echo "$(now) - $1" | bc)"; }

# fail_with_log NAME LOGFILE MESSAGE — print the message and the log's tail on stderr, return 1.
fail_with_log() {
    log "$1: $3"
    if [[ -f $2 ]]; then
        log "last lines of $2:"
        tail -n 40 "$2" | sed 's/^/    /' >&2
    fi
    return 1
}

# wait_until TIMEOUT PIDFILE CMD... — poll CMD until it succeeds; fail early when PIDFILE's process dies
# (PIDFILE may be ""). Returns 1 on timeout or death, with the reason in WAIT_ERROR.
wait_until() {
    local timeout=$1 pidfile=$2 t0
    shift 2
    t0=$(now)
    WAIT_ERROR=""
    until "$@" >/dev/null 2>&1; do
        if [[ -n $pidfile ]] && ! pid_alive "$pidfile" >/dev/null; then
            WAIT_ERROR="the process exited"
            return 1
        fi
        if [[ $(echo "$(now) - $t0 > $timeout" | bc) == 1 ]]; then
            WAIT_ERROR="not ready after ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

# running PID — the process exists and is not a zombie (daemons are reparented to init, which may reap late).
running() {
    kill -0 "$1" 2>/dev/null || return 1
    [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# pid_alive PIDFILE — print the pid and succeed when the file names a running process.
pid_alive() {
    [[ -s $1 ]] || return 1
    local pid
    pid=$(head -n 1 "$1")
    [[ $pid =~ ^[0-9]+$ ]] && running "$pid" && echo "$pid"
}

# launch PIDFILE LOGFILE CMD... — run CMD in its own session, detached from the caller's terminal, pipes and
# lock fds (a test's subprocess.run(capture_output=True) would otherwise wait for the service to exit).
launch() {
    local pidfile=$1 logfile=$2
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016  # $$ and $@ belong to the inner sh
    setsid sh -c 'echo $$ > "$0"; exec "$@"' "$pidfile" "$@" </dev/null >"$logfile" 2>&1 8>&- 9>&- &
    local _
    for _ in $(seq 50); do
        [[ -s $pidfile ]] && return 0
        sleep 0.05
    done
    return 1
}

# stop_pidfile NAME PIDFILE — SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Only ever the pid in the file.
stop_pidfile() {
    local name=$1 pidfile=$2 pid _
    if ! pid=$(pid_alive "$pidfile"); then
        rm -f "$pidfile"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT * 20))); do
        running "$pid" || break
        sleep 0.05
    done
    if running "$pid"; then
        log "$name: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
}

# port_busy PORT — something listens on HOST:PORT (or on every address).
port_busy() {
    ss -ltnH "( sport = :$1 )" 2>/dev/null | grep -q .
}

# ports_free NAME PORT... — fail with the owner when one of the ports is taken by something else.
ports_free() {
    local name=$1 p
    shift
    for p in "$@"; do
        if port_busy "$p"; then
            log "$name: port $p is in use by another program:"
            ss -ltnpH "( sport = :$p )" 2>/dev/null | sed 's/^/    /' >&2
            return 1
        fi
    done
}

# rss_kb PID — resident set size in KiB (0 when gone).
rss_kb() {
    awk '/^VmRSS:/ {print $2; found=1} END {if (!found) print 0}' "/proc/$1/status" 2>/dev/null || echo 0
}

APT_UPDATED=""
# apt_install PACKAGE... — Debian packages for what is missing (root only; otherwise say what to install).
apt_install() {
    if [[ $(id -u) != 0 ]]; then
        die "missing $*: run as root or install it: apt-get install -y $*"
    fi
    log "installing Debian packages: $*"
    if [[ -z $APT_UPDATED ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
        die "apt-get install $* failed"
}

JAVA_BIN=""
# java17 — set JAVA_BIN to a Java 17 binary, installing openjdk-17 when there is none.
java17() {
    [[ -n $JAVA_BIN ]] && return 0
    local cand
    for cand in ${LIVECHAT_JAVA:-} "$(command -v java || true)" /usr/lib/jvm/java-17-openjdk-*/bin/java; do
        [[ -n $cand && -x $cand ]] || continue
        if "$cand" -version 2>&1 | head -n 1 | grep -q '"17\.'; then
            JAVA_BIN=$cand
            return 0
        fi
    done
    apt_install openjdk-17-jre-headless
    JAVA_BIN=$(ls /usr/lib/jvm/java-17-openjdk-*/bin/java | head -n 1)
}

# maven_jars NAME POM DEST — copy POM's runtime dependencies into DEST (Maven caches them in ~/.m2). A stamp
# holding the pom's sha256 makes an edited pom (a version bump) fetch again; otherwise nothing runs.
maven_jars() {
    local name=$1 pom=$2 dest=$3 sum t0
    sum=$(sha256sum "$pom" | cut -d' ' -f1)
    [[ -d $dest && $(cat "$dest.sha256" 2>/dev/null) == "$sum" ]] && return 0
    command -v mvn >/dev/null || apt_install maven
    log "$name: fetching jars with Maven (cached in ~/.m2)"
    t0=$(now)
    rm -rf "$dest.tmp"
    mkdir -p "$(dirname "$dest")"
    if ! mvn -q -B -f "$pom" "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" -DoutputDirectory="$dest.tmp" \
        >"$dest.mvn.log" 2>&1; then
        fail_with_log "$name" "$dest.mvn.log" "mvn dependency:copy-dependencies failed"
        exit 1
    fi
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "$sum" >"$dest.sha256"
    log "$name: $(find "$dest" -name '*.jar' | wc -l) jars in $(since "$t0")s"
}

# render TEMPLATE OUT KEY=VALUE... — copy TEMPLATE replacing @KEY@ with VALUE.
render() {
    local template=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do
        args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
    done
    sed "${args[@]}" "$template" >"$out"
}

# ready_set NAME URL / ready_remove NAME — keep READY_FILE's "name url" lines in step, under a lock so
# concurrent `up` calls do not lose each other's lines. The file is replaced atomically (readers never see half).
ready_edit() {
    local name=$1 url=${2:-} tmp
    (
        flock -w 30 8 || die "could not lock $READY_FILE.lock"
        tmp=$(mktemp "$READY_FILE.XXXXXX")
        { grep -v "^$name " "$READY_FILE" 2>/dev/null || true; } >"$tmp"
        [[ -n $url ]] && echo "$name $url" >>"$tmp"
        chmod 644 "$tmp"
        mv -f "$tmp" "$READY_FILE"
    ) 8>>"$READY_FILE.lock"
}
ready_set() { ready_edit "$1" "$2"; }
ready_remove() { ready_edit "$1" ""; }
