"""Markdown tables of a ``bench.service`` run, and whether it met the issue's targets."""

from __future__ import annotations

from typing import Any

# docs: issue 3, "done when".
TARGET_ACCEPTED_PER_S = 30_000.0
TARGET_P99_MS = 100.0


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _threads(cores: dict[str, float]) -> str:
    """Per-thread-kind cores of an edge: the Python event loop, the Rust I/O and ticker threads."""
    return (
        f"Python loop {cores['python']:.2f}, I/O threads {cores['io']:.2f}, ticker {cores['ticker']:.2f}, "
        f"other threads {cores['other']:.2f}"
    )


def throughput_ok(t: dict[str, Any]) -> bool:
    return "error" not in t and not t["errors"] and t["accepted_per_s"] >= TARGET_ACCEPTED_PER_S


def latency_ok(lat: dict[str, Any]) -> bool:
    if "error" in lat:
        return False
    every = lat["all"]
    return every["delivered"] == every["expected"] and every["gaps"] == 0 and every["p99_ms"] <= TARGET_P99_MS


def passed(result: dict[str, Any]) -> bool:
    checks = []
    if "throughput" in result:
        checks.append(throughput_ok(result["throughput"]))
    if "latency" in result:
        checks.append(latency_ok(result["latency"]))
    if "scale" in result:
        checks.append(scale_ok(result["scale"]))
    return all(checks)


def scale_ok(sc: dict[str, Any]) -> bool:
    """Every probe got every comment at every rate, and the storm brought every viewer back."""
    if "error" in sc:
        return False
    steps_ok = all(s["probe_delivered_pct"] == 100.0 and s["gaps"] == 0 for s in sc["steps"])
    storm = sc.get("storm")
    storm_ok = storm is None or (
        storm["reconnect_failed"] == 0 and storm["after"]["probe_delivered_pct"] == 100.0
    )
    return steps_ok and storm_ok


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# livechat serve end to end ({result['started']})",
        "",
        f"`{result['command']}` — {machine['cpus']} CPUs shared by servers, Redis and load generators; "
        f"load average at start {', '.join(f'{x:.2f}' for x in machine['load'])}.",
        "",
    ]
    if "throughput" in result:
        lines += _throughput(result["throughput"], result.get("throughput_busy_before"))
    if "latency" in result:
        lines += _latency(result["latency"], result.get("latency_busy_before"))
    if "scale" in result:
        lines += _scale(result["scale"], result.get("scale_busy_before"))
    return "\n".join(lines) + "\n"


def _throughput(t: dict[str, Any], busy_before: float | None) -> list[str]:
    plan = t["plan"]
    out = [
        "## (a) Comments accepted per second, one edge, embedded mode",
        "",
        f"{plan['poster_procs']} poster processes x {plan['conns_per_proc']} signed-in viewer connections, "
        f"{plan['window']} posts in flight each, {plan['streams']} stream(s), "
        f"{plan['viewers_per_stream']} anonymous viewers per stream; {plan['warmup_s']} s warm-up, "
        f"{plan['seconds']} s measured. Machine busy before start: {_num(busy_before, 2)} cores.",
        "",
    ]
    if "error" in t:
        return [*out, f"**Run failed:** {t['error']}", ""]
    verdict = "met" if throughput_ok(t) else "NOT met"
    out += [
        "| metric | target | measured |",
        "|---|---|---|",
        f"| accepted comments/s (acks) | ≥ {TARGET_ACCEPTED_PER_S:,.0f} | "
        f"**{_num(t['accepted_per_s'], 0)}** ({verdict}) |",
        f"| server CPU (cores) |  | {_num(t['server_cores'], 2)} ({_threads(t['server_thread_cores'])}) |",
        f"| server CPU per accepted comment (µs) |  | {_num(t['server_us_per_comment'])} |",
        f"| post → ack p50 / p99 (ms) |  | {_num(t['ack_p50_ms'])} / {_num(t['ack_p99_ms'])} |",
        f"| comments delivered to the {t['viewers']} viewers (/s, all viewers) |  | "
        f"{_num(t['viewer_comment_events_per_s'], 0)} |",
        f"| poster / viewer load-generator CPU (cores) |  | {_num(t['poster_cores'], 2)} / "
        f"{_num(t['viewer_cores'], 2)} |",
        f"| everything else on the machine (cores) |  | {_num(t['other_cores'], 2)} |",
        f"| errors, disconnects |  | {t['errors'] or 0}, {t['disconnects']} |",
        f"| posts sent / acked over the run |  | {_num(t['sent_total'])} / {_num(t['acked_total'])} |",
        "",
        f"Server: `{' '.join(t['server_command'][2:])}`",
        "",
    ]
    return out


def _latency(lat: dict[str, Any], busy_before: float | None) -> list[str]:
    plan = lat["plan"]
    viewers = plan["viewers_a"] + plan["viewers_b"]
    out = [
        "## (b) Publish → delivery across two edges on Redis",
        "",
        f"{viewers:,} viewers ({plan['viewers_b']:,} on edge B, {plan['viewers_a']:,} on edge A) x "
        f"{plan['rate']:g} comments/s posted on edge A; {plan['warmup_s']} s warm-up, {plan['seconds']} s "
        f"measured. Machine busy before start: {_num(busy_before, 2)} cores.",
        "",
    ]
    if "error" not in lat:
        probes = lat["probes"]
        sinks = lat["sinks"]
        out += [
            f"Latency is timed on {probes['b']:,} probe viewers of B and {probes['a']:,} of A (picows, "
            f"every frame decoded); the other {sinks['viewers']:,} viewers are sinks (same frames, read "
            f"in bulk, not parsed: {_num(sinks['bytes_per_s'] / 1e6, 2)} MB/s together, "
            f"{sinks['disconnects']} disconnects).",
            "",
        ]
    if "error" in lat:
        return [*out, f"**Run failed:** {lat['error']}", ""]
    verdict = "met" if latency_ok(lat) else "NOT met"
    cores = lat["cores"]
    out += [
        "| viewers on | delivered | p50 ms | p99 ms | max ms | gaps |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (
        ("edge B (remote)", "edge_b_viewers"),
        ("edge A (local)", "edge_a_viewers"),
        ("all", "all"),
    ):
        s = lat[key]
        out.append(
            f"| {label} | {_num(s['delivered_pct'], 2)} % | {_num(s['p50_ms'])} | **{_num(s['p99_ms'])}** | "
            f"{_num(s['max_ms'])} | {s['gaps']} |"
        )
    out += [
        "",
        f"Target p99 ≤ {TARGET_P99_MS:.0f} ms with every comment delivered: **{verdict}**. "
        f"Post → ack on A: p50 {_num(lat['ack_p50_ms'])} ms, p99 {_num(lat['ack_p99_ms'])} ms; "
        f"poster schedule lag max {_num(lat['sent']['max_lag_ms'])} ms.",
        "",
        "| CPU over the measured window (cores) | edge A | edge B | Redis | load generators "
        "| everything else | machine |",
        "|---|---|---|---|---|---|---|",
        f"| | {_num(cores['edge_a'], 2)} | {_num(cores['edge_b'], 2)} | {_num(cores['redis'], 3)} | "
        f"{_num(cores['loadgen'], 2)} | {_num(cores['other'], 2)} | {_num(cores['machine'], 2)} |",
        "",
        "| per second | frames written | events delivered | ticks | I/O threads busy (s/s) |",
        "|---|---|---|---|---|",
        *(
            f"| edge {name.upper()} | {_num(r['frames_out_total'], 0)} | {_num(r['deliveries_total'], 0)} | "
            f"{_num(r['ticks_total'], 0)} | {_num(r['io_busy_seconds_total'], 2)} |"
            for name, r in sorted(lat.get("edge_rates", {}).items())
        ),
        "",
        f"Threads (cores): edge A {_threads(lat['thread_cores']['edge_a'])}; "
        f"edge B {_threads(lat['thread_cores']['edge_b'])}.",
        "",
        f"Edge B CPU per delivered comment: {_num(lat['us_per_delivery_b'], 2)} µs. Busiest "
        f"load-generator process: {_num(lat['loadgen_max_process_cores'], 2)} cores. "
        f"Probe disconnects: {lat['disconnects']}.",
        "",
    ]
    return out


def _scale(sc: dict[str, Any], busy_before: float | None) -> list[str]:
    plan = sc["plan"]
    lines = [
        f"## (c) One stream, {plan['viewers']:,} viewers, `livechat serve --workers {plan['workers']}`",
        "",
        f"Machine busy before: {_num(busy_before, 2)} cores. "
        f"Server: `{' '.join(sc.get('server_command', []))}`",
        "",
    ]
    if "error" in sc:
        return [*lines, f"**failed**: {sc['error']}", ""]
    c, m = sc["connect"], sc["memory"]
    lines += [
        "| connect | value |",
        "|---|---|",
        f"| viewers connected and joined | {_num(c['connections_on_workers'], 0)} of {c['viewers']:,} |",
        f"| per worker | {', '.join(_num(x, 0) for x in c['per_worker'])} |",
        f"| time to connect all | {_num(c['seconds'])} s |",
        f"| upgrades retried (408: handshake not finished in time) | {_num(sc.get('connect_retried'))} |",
        f"| worker CPU per accepted connection (upgrade + join) | {_num(c['cpu_us_per_connection'])} µs |",
        f"| worker RSS idle → loaded | {_num(m['idle_rss_mib'])} → {_num(m['loaded_rss_mib'])} MiB |",
        f"| RSS per connection (workers) | {_num(m['rss_bytes_per_connection'], 0)} B |",
        "| kernel slab per connection (both loopback ends) "
        f"| {_num(m['kernel_slab_bytes_per_connection_both_ends'], 0)} B |",
        "",
        "| comments/s | probe delivered | p50 | p99 | max | gaps | edge deliveries / expected "
        "| worker cores | µs worker CPU per delivery | machine cores | ack p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sc["steps"]:
        lines.append(
            f"| {_num(s['rate'], 0)} | {_num(s['probe_delivered_pct'], 2)} % | {_num(s['p50_ms'])} ms "
            f"| {_num(s['p99_ms'])} ms | {_num(s['max_ms'])} ms | {s['gaps']} "
            f"| {_num(s['edge_deliveries'], 0)} / {s['deliveries_expected']:,} "
            f"| {_num(s['worker_cores'], 2)} "
            f"| {_num(s['worker_cpu_us_per_delivery'], 2)} | {_num(s['machine_cores'], 2)} "
            f"| {_num(s['ack_p99_ms'])} ms |"
        )
    storm = sc.get("storm")
    if storm:
        after = storm["after"]
        lines += [
            "",
            f"Reconnect storm: {storm['workers_killed']} workers SIGKILLed at once; workers back in "
            f"{_num(storm['workers_back_s'])} s; {storm['viewers_lost']:,} viewers lost, "
            f"{storm['reconnected']:,} reconnected and joined ({storm['reconnect_failed']} failed, "
            f"{storm.get('reconnect_retried', 0):,} retried after a 408), all back "
            f"{_num(storm['all_back_s'])} s after the kill; "
            f"{_num(storm['connections_after'], 0)} connections after; "
            f"{_num(storm['worker_cpu_us_per_reconnect'])} µs worker CPU per reconnect. "
            f"Comments at 2/s after it: {_num(after['probe_delivered_pct'], 2)} % delivered to the probes, "
            f"p99 {_num(after['p99_ms'])} ms.",
        ]
    return [*lines, ""]
