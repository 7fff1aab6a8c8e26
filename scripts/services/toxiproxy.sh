# Toxiproxy (Shopify), built once from the Go module proxy into $INFRA/gobin; proxies are made over its HTTP API
# (tests/cluster_services.py: Toxiproxy). A fresh start has no proxies. Sourced by services.sh.

toxiproxy_url() { echo "http://$HOST:$TOXIPROXY_PORT"; }

toxiproxy_bin() { echo "$INFRA/gobin/toxiproxy-server-$TOXIPROXY_VERSION"; }

toxiproxy_answering() { curl -sf -m 2 "http://$HOST:$TOXIPROXY_PORT/version" >/dev/null; }

toxiproxy_pids() { pid_alive "$RUN/toxiproxy.pid" || true; }

toxiproxy_build() {
    local bin t0 tmp
    bin=$(toxiproxy_bin)
    [[ -x $bin ]] && return 0
    command -v go >/dev/null || die "toxiproxy: no Go toolchain on PATH (needed once to build $TOXIPROXY_VERSION)"
    log "toxiproxy: building $TOXIPROXY_VERSION with go install (about 20 s; Go caches the modules and build)"
    t0=$(now)
    tmp=$(mktemp -d "$INFRA/gobin.XXXXXX")
    # The package is cmd/server (the binary is named "server"), not cmd/toxiproxy-server.
    if ! GOBIN=$tmp go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" \
        >"$INFRA/logs/toxiproxy-build.log" 2>&1 </dev/null; then
        rm -rf "$tmp"
        fail_with_log toxiproxy "$INFRA/logs/toxiproxy-build.log" "go install failed"
        exit 1
    fi
    mkdir -p "$(dirname "$bin")"
    mv "$tmp/server" "$bin"
    rm -rf "$tmp"
    log "toxiproxy: built in $(since "$t0")s"
}

toxiproxy_start() {
    local t0 d=$INFRA/toxiproxy
    t0=$(now)
    toxiproxy_build
    toxiproxy_stop
    ports_free toxiproxy "$TOXIPROXY_PORT" || return 1
    mkdir -p "$d"
    launch "$RUN/toxiproxy.pid" "$d/toxiproxy.log" "$(toxiproxy_bin)" -host "$HOST" -port "$TOXIPROXY_PORT" || {
        fail_with_log toxiproxy "$d/toxiproxy.log" "toxiproxy-server did not start"
        return 1
    }
    if ! wait_until "$TOXIPROXY_TIMEOUT" "$RUN/toxiproxy.pid" toxiproxy_answering; then
        fail_with_log toxiproxy "$d/toxiproxy.log" "$WAIT_ERROR"
        return 1
    fi
    log "toxiproxy: ready in $(since "$t0")s (pid $(toxiproxy_pids))"
}

toxiproxy_stop() { stop_pidfile toxiproxy "$RUN/toxiproxy.pid"; }
