#!/usr/bin/env bash
# The local cluster on one host: the services (scripts/services.sh), then the schema
# (`livechat migrate`), three `livechat serve` edges and the persist and notify workers.
#
#   scripts/cluster.sh up      start everything (idempotent: what runs is left alone); prints the URLs
#   scripts/cluster.sh down    stop the edges and workers, then the services
#   scripts/cluster.sh status
#
# Environment: LIVECHAT_CLUSTER_DIR (data, logs, pid files; default ~/.cache/livechat-cluster),
# LIVECHAT_CLUSTER_PORT (first edge port, default 8771; edges take 3 consecutive ports, their admin
# servers port+100…), LIVECHAT_CHAT_AUTH_HMAC_SECRET (the cluster's token secret; made once and kept in
# the cluster dir when unset). Every edge reads the same secret, so a token works on each.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${LIVECHAT_CLUSTER_DIR:-$HOME/.cache/livechat-cluster}
BASE_PORT=${LIVECHAT_CLUSTER_PORT:-8771}
PY=${PY:-python3}
EDGES=(a b c)
mkdir -p "$DIR/run" "$DIR/logs"

url() { "$ROOT/scripts/services.sh" urls | awk -v n="$1" '$1 == n {print $2}'; }

secret() {
  if [ -n "${LIVECHAT_CHAT_AUTH_HMAC_SECRET:-}" ]; then echo "$LIVECHAT_CHAT_AUTH_HMAC_SECRET"; return; fi
  [ -s "$DIR/hmac-secret" ] || "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$DIR/hmac-secret"
  cat "$DIR/hmac-secret"
}

running() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

start() { # name, then the command
  local name=$1; shift
  if running "$name"; then echo "$name: already running (pid $(cat "$DIR/run/$name.pid"))"; return; fi
  LIVECHAT_CHAT_AUTH_HMAC_SECRET=$(secret) setsid "$@" > "$DIR/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/run/$name.pid"
}

wait_port() { # port, name
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    running "$2" || { echo "$2 exited; last lines of $DIR/logs/$2.log:" >&2; tail -20 "$DIR/logs/$2.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$2 did not listen on $1 in 30 s" >&2; return 1
}

up() {
  "$ROOT/scripts/services.sh" up postgres redis kafka cassandra
  local redis kafka cassandra pg log history meta
  redis=$(url redis); kafka=$(url kafka); cassandra=$(url cassandra); pg=$(url postgres)
  log="$kafka/livechat-comments?partitions=8&dedupe=$redis"
  history="$cassandra/livechat"
  meta="${pg%/*}/postgres"
  "$PY" -m livechat.cli migrate --meta "$meta"
  start persist "$PY" -m livechat.cli worker persist --log "$log" --history "$history"
  start notify "$PY" -m livechat.cli worker notify --log "$log" --meta "$meta" --history "$history"
  local i=0 port
  for e in "${EDGES[@]}"; do
    port=$((BASE_PORT + i)); i=$((i + 1))
    start "edge-$e" "$PY" -m livechat.cli serve --port "$port" --admin-port $((port + 100)) \
      --edge-id "$e" --data-dir "$DIR/data-$e" --broker "$redis" --registry "$redis" \
      --set "backends.log=$log" --set "backends.history=$history" --set "backends.meta=$meta"
  done
  i=0
  for e in "${EDGES[@]}"; do wait_port $((BASE_PORT + i)) "edge-$e"; i=$((i + 1)); done
  echo
  echo "livechat cluster up (logs in $DIR/logs):"
  i=0
  for e in "${EDGES[@]}"; do
    port=$((BASE_PORT + i)); i=$((i + 1))
    echo "  edge $e   page http://127.0.0.1:$port/   socket ws://127.0.0.1:$port/live   metrics http://127.0.0.1:$((port + 100))/metrics"
  done
  echo "  workers  persist, notify (pids in $DIR/run)"
  echo "  tokens   LIVECHAT_CHAT_AUTH_HMAC_SECRET=\$(cat $DIR/hmac-secret) livechat token alice"
  "$ROOT/scripts/services.sh" urls | sed 's/^/  /'
}

down() {
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    for _ in $(seq 1 100); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  "$ROOT/scripts/services.sh" down
}

status() {
  for name in persist notify "${EDGES[@]/#/edge-}"; do
    if running "$name"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
  "$ROOT/scripts/services.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
