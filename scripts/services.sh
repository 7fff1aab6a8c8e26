#!/usr/bin/env bash
# Real backing services for livechat's cluster mode and tests, without Docker.
#
#   scripts/services.sh up NAME...      start what is not answering yet; prints "name url" per service
#   scripts/services.sh down [NAME...]  stop what this script started (default: all)
#   scripts/services.sh status          up/down, pid, RSS and URL of each service
#   scripts/services.sh urls            "name url" of each service (whether up or not)
#
# NAMEs: postgres redis redis-cluster kafka cassandra toxiproxy, or all (in that order).
#
# Guarantees of `up`: a service that already answers its own protocol is left alone (exit 0 at once); otherwise
# the missing pieces are installed or downloaded (Debian packages, Maven jars in ~/.m2, a Go build), its data dir
# is wiped and it is started, and `up` returns only once it is ready, within a bounded wait. On failure: exit 1,
# the reason and the service log's tail on stderr, and the half-started process stopped. Concurrent `up` calls of
# one service are serialised (the second one finds it answering). Each service that is up gets a "name url" line in
# /tmp/livechat-services.ready. `down` only ever signals pids this script recorded.
#
# Settings (ports, dirs, heaps, timeouts) come from the environment; defaults and names: scripts/services/lib.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Lint: cd scripts && shellcheck -x services.sh
# shellcheck source-path=SCRIPTDIR
source "$HERE/services/lib.sh"
source "$HERE/services/postgres.sh"
source "$HERE/services/redis.sh"
source "$HERE/services/kafka.sh"
source "$HERE/services/cassandra.sh"
source "$HERE/services/toxiproxy.sh"

ALL=(postgres redis redis-cluster kafka cassandra toxiproxy)

usage() {
    sed -n '3,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# names NAME... — validate and expand "all" into the canonical order.
names() {
    local n out=()
    for n in "$@"; do
        if [[ $n == all ]]; then
            out+=("${ALL[@]}")
        elif [[ " ${ALL[*]} " == *" $n "* ]]; then
            out+=("$n")
        else
            log "unknown service '$n' (known: ${ALL[*]} all)"
            exit 2
        fi
    done
    printf '%s\n' "${out[@]}" | awk '!seen[$0]++'
}

fn() { echo "${1//-/_}"; }

up_one() {
    local name=$1 f rc=0
    f=$(fn "$name")
    mkdir -p "$RUN" "$INFRA/logs"
    # fd 9 holds the per-service lock; launch() closes it so the services never inherit it.
    exec 9>"$RUN/$name.lock"
    if ! flock -w 900 9; then
        log "$name: another 'up $name' held the lock for 900 s"
        return 1
    fi
    if "${f}_answering"; then
        log "$name: already answering at $("${f}_url")"
    else
        log "$name: starting"
        "${f}_start" || rc=$?
        if ((rc != 0)); then
            "${f}_stop" || true
            ready_remove "$name"
            exec 9>&-
            return 1
        fi
    fi
    ready_set "$name" "$("${f}_url")"
    exec 9>&-
    echo "$name $("${f}_url")"
}

cmd_up() {
    (($# > 0)) || usage
    local n list
    list=$(names "$@") || exit 2
    for n in $list; do
        up_one "$n" || exit 1
    done
}

cmd_down() {
    local n f list
    list=$(names "${@:-all}") || exit 2
    for n in $(tac <<<"$list"); do # stop in reverse start order
        f=$(fn "$n")
        if [[ -z $("${f}_pids") ]]; then
            "${f}_answering" && log "$n: answering but not started by this script ($INFRA); left alone"
        else
            log "$n: stopping"
            "${f}_stop"
        fi
        ready_remove "$n"
    done
}

cmd_status() {
    local n f pids pid state rss total
    printf '%-14s %-8s %-42s %7s  %s\n' NAME STATE PIDS RSS_MB URL
    for n in "${ALL[@]}"; do
        f=$(fn "$n")
        pids=$("${f}_pids" | xargs)
        state=down
        if "${f}_answering"; then
            state=up
            [[ -z $pids ]] && state=up-other # answering, but not a process this script started
        elif [[ -n $pids ]]; then
            state=starting
        fi
        total=0
        for pid in $pids; do
            rss=$(rss_kb "$pid")
            # PostgreSQL: the postmaster plus its backends and auxiliary processes.
            [[ $n == postgres ]] && rss=$(ps -o rss= --ppid "$pid" | awk -v s="$rss" '{s+=$1} END {print s}')
            total=$((total + rss))
        done
        printf '%-14s %-8s %-42s %7s  %s\n' "$n" "$state" "${pids:--}" "$((total / 1024))" "$("${f}_url")"
    done
}

cmd_urls() {
    local n
    for n in "${ALL[@]}"; do echo "$n $("$(fn "$n")_url")"; done
}

(($# > 0)) || usage
cmd=$1
shift
case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    urls) cmd_urls ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
