#!/usr/bin/env bash
# Start or stop a throwaway Redis (Debian's redis-server) for livechat's cluster-mode tests.
#
#   scripts/redis.sh start PORT [DATA_DIR]   # prints redis://127.0.0.1:PORT once PING answers
#   scripts/redis.sh stop PORT [DATA_DIR]    # stops the server this script started on PORT
#
# DATA_DIR defaults to ${XDG_RUNTIME_DIR:-/tmp}/livechat-redis-PORT. No persistence (the data is
# test state); the server binds 127.0.0.1 only. Installs redis-server with apt-get when missing.
set -euo pipefail

usage() { echo "usage: $0 start|stop PORT [DATA_DIR]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1 port=$2
[[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || { echo "bad port: $port" >&2; exit 2; }
dir=${3:-${XDG_RUNTIME_DIR:-/tmp}/livechat-redis-$port}
pidfile=$dir/redis.pid
logfile=$dir/redis.log

ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

ensure_installed() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
    echo "redis-server not found; installing the Debian package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

running_pid() {
    [[ -f $pidfile ]] || return 1
    local pid
    pid=$(<"$pidfile")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    ensure_installed
    mkdir -p "$dir"
    if pid=$(running_pid); then
        ping && { echo "redis://127.0.0.1:$port"; return; }
        echo "redis pid $pid from $dir is not answering on $port" >&2; exit 1
    fi
    if ping; then echo "port $port already has a Redis this script did not start" >&2; exit 1; fi
    # Sharded pub/sub (SPUBLISH/SSUBSCRIBE) needs Redis >= 7.0.
    local version
    version=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    (( version >= 7 )) || { echo "redis-server $version found; livechat needs >= 7" >&2; exit 1; }
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --dir "$dir" \
        --daemonize yes --pidfile "$pidfile" --logfile "$logfile" \
        --save "" --appendonly no --maxclients 10000 >/dev/null
    # 10 s at most: a cold start takes ~20 ms here.
    for _ in $(seq 200); do
        ping && { echo "redis://127.0.0.1:$port"; return; }
        sleep 0.05
    done
    echo "redis did not answer PING on $port within 10 s; log $logfile:" >&2
    tail -n 20 "$logfile" >&2 || true
    exit 1
}

stop() {
    local pid
    if ! pid=$(running_pid); then echo "no redis started by this script on $port" >&2; return 0; fi
    kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.05
    done
    echo "redis pid $pid did not stop within 5 s" >&2; exit 1
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
