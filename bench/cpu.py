"""Where the CPU went during a measured batch: generator, server, PostgreSQL, the rest.

On a shared 2-core machine this is what tells a reader whether the generator starved the
service, and whether something else was running. ``generator`` is this process's CPU time
(for the limit it includes the asyncpg client side); ``server`` sums the server's process
group; ``postgres`` sums the PostgreSQL backends serving the bench's own databases (found by
their process title, which names the database; a backend that exits during the batch, such
as a pool's overflow connection, is not counted); ``kernel_irq`` is interrupt and softirq
time (loopback TCP lands mostly there); ``foreign`` is the rest of the machine's busy time
over the same interval: anything else running (other jobs, other databases' backends,
PostgreSQL's background processes, exited backends). Linux only; elsewhere nothing is
recorded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy() -> tuple[float, float] | None:
    """(busy, irq + softirq) CPU seconds, all cores, since boot: the ``cpu`` line of /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields[:8]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICKS, (irq + softirq) / _TICKS


def _processes(pgid: int | None, db_tag: str | None) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds per live process: of process group ``pgid``; of backends of ``db_tag``."""
    server: dict[int, float] = {}
    backends: dict[int, float] = {}
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return server, backends
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICKS
            if pgid is not None and int(fields[2]) == pgid:
                server[int(entry.name)] = cpu
            elif db_tag and "(postgres)" in stat[: stat.rindex(")") + 1]:
                title = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                if db_tag.encode() in title:
                    backends[int(entry.name)] = cpu
        except (OSError, ValueError, IndexError):
            continue
    return server, backends


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots by the processes alive at the second (new ones from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class CpuMeter:
    """``start()`` at the release, ``stop()`` after the last response; ``result`` has the split."""

    def __init__(self, server_pgid: int | None = None, db_tag: str | None = None) -> None:
        self.server_pgid = server_pgid
        self.db_tag = db_tag
        self.result: dict[str, Any] | None = None
        self._start: tuple[Any, ...] | None = None

    def start(self) -> None:
        """Snapshot the counters."""
        server, backends = _processes(self.server_pgid, self.db_tag)
        self._start = (time.perf_counter(), time.process_time(), _machine_busy(), server, backends)

    def stop(self) -> None:
        """Snapshot again and keep the differences, in CPU seconds."""
        if self._start is None:
            return
        wall0, gen0, busy0, server0, backends0 = self._start
        wall = time.perf_counter() - wall0
        generator = time.process_time() - gen0
        busy1 = _machine_busy()
        server1, backends1 = _processes(self.server_pgid, self.db_tag)
        busy = irq = None
        if busy1 is not None and busy0 is not None:
            busy, irq = busy1[0] - busy0[0], busy1[1] - busy0[1]
        server = _delta(server0, server1) if self.server_pgid is not None else None
        postgres = _delta(backends0, backends1) if self.db_tag else None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        known = generator + (server or 0.0) + (postgres or 0.0) + (irq or 0.0)
        foreign = busy - known if busy is not None else None
        self.result = {
            "wall_s": round(wall, 3),
            "machine_busy_s": round(busy, 3) if busy is not None else None,
            "machine_utilisation": round(busy / (wall * cores), 3)
            if busy is not None and cores and wall > 0
            else None,
            "generator_s": round(generator, 3),
            "server_s": round(server, 3) if server is not None else None,
            "postgres_s": round(postgres, 3) if postgres is not None else None,
            "kernel_irq_s": round(irq, 3) if irq is not None else None,
            "foreign_s": round(max(foreign, 0.0), 3) if foreign is not None else None,
        }
