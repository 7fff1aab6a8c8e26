#!/usr/bin/env bash
# The Node `ws` peer of the fan-out benchmark (bench/peers/ws_broadcast.mjs), with its pinned deps kept
# outside the repo.
#
#   scripts/node-peer.sh install        install bench/peers/package-lock.json's packages (npm ci) into the
#                                       cache; prints the node_modules directory
#   scripts/node-peer.sh serve ARGS...  install if needed, then exec node bench/peers/ws_broadcast.mjs ARGS
#                                       (e.g. --host 127.0.0.1 --port 19003) with NODE_PATH at the cache
#
# Guarantees: `install` is idempotent (a no-op, no network, when the cache holds this exact lockfile's
# install) and serialised (flock: concurrent callers wait, then find it done); nothing is written inside
# the repo. `serve` replaces itself with node (same pid, so the harness measures node itself).
# Settings: LIVECHAT_NODE_WS_DIR (default ~/.cache/livechat-bench/node-ws), NODE (default: node on PATH).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS="$REPO/bench/peers"
CACHE=${LIVECHAT_NODE_WS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/livechat-bench/node-ws}
NODE=${NODE:-node}

die() {
    echo "node-peer: $*" >&2
    exit 1
}

install_deps() {
    command -v "$NODE" >/dev/null || die "'$NODE' not found: install Node.js >= 20 (or set NODE)"
    command -v npm >/dev/null || die "npm not found: it comes with Node.js"
    mkdir -p "$CACHE"
    local want have
    want=$(cat "$PEERS/package.json" "$PEERS/package-lock.json" | sha256sum | cut -d' ' -f1)
    exec 9>"$CACHE/.lock"
    flock 9
    have=$(cat "$CACHE/.installed" 2>/dev/null || true)
    if [[ "$have" != "$want" || ! -f "$CACHE/node_modules/ws/package.json" ]]; then
        rm -f "$CACHE/.installed"
        cp "$PEERS/package.json" "$PEERS/package-lock.json" "$CACHE/"
        # npm ci: exactly the lockfile's versions and integrity hashes, or fail.
        npm ci --prefix "$CACHE" --no-audit --no-fund --loglevel=error >&2 \
            || die "npm ci failed in $CACHE (is the npm registry reachable?)"
        echo "$want" >"$CACHE/.installed"
    fi
    exec 9>&-
}

case "${1:-}" in
    install)
        install_deps
        echo "$CACHE/node_modules"
        ;;
    serve)
        shift
        install_deps
        export NODE_PATH="$CACHE/node_modules"
        exec "$NODE" "$PEERS/ws_broadcast.mjs" "$@"
        ;;
    *)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
