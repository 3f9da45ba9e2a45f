"""One worker slot as the supervisor sees it: /proc figures of its process, and how it ended."""

from __future__ import annotations

import os
import signal

from strangler.proxy.runtime.worker_slot import describe_exit, proc_stats


def test_proc_stats_reads_cpu_and_resident_memory_of_a_live_process() -> None:
    cpu, rss = proc_stats(os.getpid())
    assert cpu is not None and cpu >= 0
    assert rss is not None and rss > 1024 * 1024  # a Python interpreter holds megabytes


def test_proc_stats_of_a_process_that_is_gone_is_unknown() -> None:
    assert proc_stats(2**22 + 1) == (None, None)  # above Linux's largest pid


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
