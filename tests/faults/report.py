"""Render the JSON lines of a fault run (``LIVECHAT_FAULTS_REPORT``) as the table of docs/results.md.

python -m tests.faults.report bench/results/faults-long.jsonl
"""

from __future__ import annotations

import json
import sys
from typing import Any

COLUMNS = (
    ("case", "case"),
    ("acked", "acked"),
    ("lost", "lost"),
    ("dups", "shown twice"),
    ("gap_viewers", "viewers with a gap"),
    ("disorder", "out of order"),
    ("client_errors", "errors clients saw"),
    ("posting_back_s", "posting back after heal (s)"),
    ("longest_ack_gap_s", "longest gap between acks (s)"),
    ("viewer_disconnects", "viewer reconnects"),
    ("peak_rss_mb", "peak RSS MiB (max edge / persist)"),
)


def _cell(key: str, value: Any) -> str:
    if key == "client_errors":
        return ", ".join(f"{k} {n}" for k, n in sorted(value.items())) or "none"
    if key == "peak_rss_mb":
        edges = [mb for name, mb in value.items() if name.startswith("edge")]
        return f"{max(edges, default=0):.0f} / {value.get('persist', 0):.0f}"
    return "-" if value is None else str(value)


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(key, row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as source:
        print(render([json.loads(line) for line in source if line.strip()]))
