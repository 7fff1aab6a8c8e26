"""CPU time and resident memory of a process, read from /proc (all its threads included)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    cpu_s: float
    rss_bytes: int


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of every thread of ``pid`` (resolution 1 / SC_CLK_TCK, 10 ms)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces; fields after its closing paren are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    user, system = cpu_times(pid)
    return user + system


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS (process exited?)")


def sample(pid: int) -> Sample:
    return Sample(cpu_seconds(pid), rss_bytes(pid))


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (any process, other agents' included), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user).
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / _CLOCK_TICKS


def kernel_slab_bytes() -> int:
    """Machine-wide kernel slab memory (sockets, files, epoll items live there), from /proc/meminfo."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no Slab line")


def vfs_calls(pid: int) -> tuple[int, int]:
    """(read/readv, write/writev) calls by every thread of ``pid``, from /proc/<pid>/io.

    The kernel counts only the VFS calls here: recv*/send*/sendmsg are not included, so compare a
    server only with itself.
    """
    counts = {}
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            counts[key] = int(value)
    return counts["syscr"], counts["syscw"]
