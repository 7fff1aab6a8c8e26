"""The compiled viewer load generator (``bench/loadgen_rs``, binary ``lc-loadgen``): where it is built.

It replaces the viewers role of ``bench.fanout.loadgen`` with the same command line and JSON-lines
protocol, at a fraction of the CPU per received message; the publisher (one connection) stays Python.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
CRATE_DIR = _REPO_ROOT / "bench" / "loadgen_rs"
BUILD_COMMAND = "cargo build --release -p lc-loadgen"
CHOICES = ("rust", "python")


def binary_path() -> Path:
    """Where ``cargo build --release`` puts the binary (``CARGO_TARGET_DIR`` honoured)."""
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or _REPO_ROOT / "target")
    if not target_dir.is_absolute():
        target_dir = _REPO_ROOT / target_dir
    return target_dir / "release" / "lc-loadgen"


def is_built() -> bool:
    path = binary_path()
    return path.is_file() and os.access(path, os.X_OK)


def stale_sources() -> list[Path]:
    """Crate sources newer than the built binary (a rebuild would change what runs)."""
    built = binary_path().stat().st_mtime
    sources = [CRATE_DIR / "Cargo.toml", *sorted((CRATE_DIR / "src").rglob("*.rs"))]
    return [path for path in sources if path.stat().st_mtime > built]


def require_built() -> Path:
    if not is_built():
        raise FileNotFoundError(f"{binary_path()} is not built; run `{BUILD_COMMAND}`")
    return binary_path()


def choose(requested: str | None) -> tuple[str, str]:
    """The load generator to use for viewers, and a line saying why.

    ``None`` means rust when the binary is built, else python. Asking for rust when it is not
    built is an error, not a silent fallback: the two measure different things at high rates.
    """
    if requested not in (None, *CHOICES):
        raise ValueError(f"--loadgen {requested!r}: choose from {', '.join(CHOICES)}")
    if requested == "python":
        return "python", "viewers: bench.fanout.loadgen (Python, picows on uvloop)"
    if is_built():
        note = f"viewers: {binary_path()} (Rust)"
        stale = stale_sources()
        if stale:
            newer = stale[0].relative_to(_REPO_ROOT)
            note += f"; WARNING: older than {newer}, rebuild with `{BUILD_COMMAND}`"
        return "rust", note
    if requested == "rust":
        raise FileNotFoundError(f"--loadgen rust: {binary_path()} is not built; run `{BUILD_COMMAND}`")
    return "python", (
        f"viewers: bench.fanout.loadgen (Python) because {binary_path()} is not built; "
        f"`{BUILD_COMMAND}` builds the faster Rust one"
    )
