"""One worker slot as the supervisor sees it: the process that fills it, that process's
CPU and memory from /proc, and how it ended."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def proc_stats(pid: int) -> tuple[float | None, int | None]:
    """CPU seconds (user + system) and resident bytes of `pid`, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None, None
    # The command name may contain spaces and parentheses: fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)
    return cpu, int(statm.split()[1]) * _PAGE_SIZE


def describe_exit(code: int) -> str:
    """How a worker ended, for the log."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Worker:
    """One worker slot; its process is replaced when it dies."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    admin_port: int | None = None
    restarts: int = 0
    quick_exits: int = 0
    announced: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None
