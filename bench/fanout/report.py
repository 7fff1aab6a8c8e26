"""The markdown summary of a fan-out run: headline metrics with targets and ratios, then each ladder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, str, Callable[[dict[str, Any]], float | None]]


def _steady(key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        value = result.get("steady", {}).get(key)
        return float(value) if value is not None else None

    return get


def _field(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def get(result: dict[str, Any]) -> float | None:
        value = result.get(key)
        return float(value) * scale if value is not None else None

    return get


HEADLINE: list[Row] = [
    ("RSS per idle connection (KB)", "≤ 1", _field("rss_per_idle_conn_bytes", 1 / 1024)),
    (
        "process RSS projected to 1M idle connections (GiB)",
        "",
        _field("rss_per_idle_conn_bytes", 1e6 / 2**30),
    ),
    (
        "kernel slab per connection, both ends (KB)",
        "",
        _field("kernel_slab_per_conn_both_ends_bytes", 1 / 1024),
    ),
    ("server CPU per accepted connection (µs)", "≤ 20", _field("cpu_per_accept_us")),
    ("server CPU per delivered message at 2 msg/s (µs)", "≤ 1.5", _steady("server_cpu_per_delivered_us")),
    ("p99 latency at 2 msg/s (ms)", "≤ 50", _steady("p99_ms")),
    ("delivered at 2 msg/s (%)", "100", lambda r: _pct(r.get("steady", {}).get("delivered_ratio"))),
    ("highest rate, all delivered and p99 ≤ 250 ms (msg/s)", "≥ 200", _field("max_ok_rate")),
    ("load generator CPU at 2 msg/s (cores)", "", _steady("loadgen_cores")),
]


def _pct(ratio: float | None) -> float | None:
    return ratio * 100 if ratio is not None else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(run: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = run["results"]
    names = [r["target"] for r in results]
    subject = next((r for r in results if r["target"] == "livechat"), None)
    peers = [r for r in results if r is not subject]
    lines = [
        f"# Fan-out run {run['started']}",
        "",
        f"`{run['command']}`",
        "",
        f"{run['plan']['conns']} viewers + 1 publisher per server, {run['plan']['workers']} load-generator "
        f"processes ({run['plan'].get('loadgen', 'python')} viewers, Python publisher); "
        f"machine: {run['machine']['cpus']} CPUs, load average at start "
        f"{run['machine']['loadavg_start']}.",
        "",
    ]
    header = ["metric", "target", *names]
    if subject is not None:
        header += [f"{peer['target']} / livechat" for peer in peers]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, goal, get in HEADLINE:
        cells = [label, goal, *(_fmt(get(r)) for r in results)]
        if subject is not None:
            base = get(subject)
            for peer in peers:
                value = get(peer)
                cells.append(f"{value / base:.1f}x" if value is not None and base else "—")
        lines.append("| " + " | ".join(cells) + " |")
    for result in results:
        lines += ["", f"## {result['target']}", "", f"`{result['server_command']}`", ""]
        if "error" in result:
            lines += [f"**error:** {result['error']}", ""]
        if "connections" in result:
            lines.append(
                f"{result['connections']} connections in {result['connect_seconds']:.1f} s "
                f"({result['connect_failures']} failed; server CPU {result['accept_sys_share'] * 100:.0f} % "
                "system time); "
                f"idle server CPU {result['idle_cpu_cores']:.3f} cores; machine busy before start "
                f"{result.get('machine_busy_before_cores', float('nan')):.2f} cores."
            )
            lines.append("")
        steps = [s for s in [result.get("steady"), *result.get("ladder", [])] if s]
        if steps:
            lines += [
                "| msg/s | delivered | p50 ms | p99 ms | max ms | server cores (sys share) | µs/delivery "
                "| loadgen cores (max proc) | other cores | machine busy | disconnects | ok |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
            for s in steps:
                lines.append(
                    f"| {_fmt(s['rate'])} | {s['delivered_ratio'] * 100:.2f} % | {_fmt(s['p50_ms'])} "
                    f"| {_fmt(s['p99_ms'])} | {_fmt(s['max_ms'])} "
                    f"| {s['server_cores']:.2f} ({s.get('server_sys_share', 0) * 100:.0f} %) "
                    f"| {_fmt(s['server_cpu_per_delivered_us'])} | {s['loadgen_cores']:.2f} "
                    f"({s['loadgen_max_process_cores']:.2f}{', saturated' if s['client_saturated'] else ''}) "
                    f"| {s['other_cores']:.2f} | {s['machine_busy_cores']:.2f}"
                    f"{' (saturated)' if s['machine_saturated'] else ''} "
                    f"| {s['disconnects']} | {'yes' if s['ok'] else 'no'} |"
                )
    return "\n".join(lines) + "\n"
