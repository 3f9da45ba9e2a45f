"""The flag file watcher: follows edits, renames and ConfigMap swaps; keeps the last good set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import strangler.flags.watch as flags_watch
from strangler.flags.load import FlagFileError
from strangler.flags.model import Mode
from strangler.flags.watch import FlagWatcher, ReloadResult

INTERVAL = 0.05
WAIT = 5.0
# Same length on purpose: an in-place edit that keeps the size must still be seen.
V1 = "flags: {f: {routes: [main], rollout: {unified: 1}}}\n"
V2 = "flags: {f: {routes: [main], rollout: {unified: 2}}}\n"
V3 = "flags: {f: {routes: [main, factory], rollout: {shadow: 30}}}\n"
GARBAGE = "flags: {f: {routes: [main\n"


class Recorder:
    """on_result callback that lets a test await the next result (bounded)."""

    def __init__(self) -> None:
        self.results: asyncio.Queue[ReloadResult] = asyncio.Queue()

    def __call__(self, result: ReloadResult) -> None:
        self.results.put_nowait(result)

    async def next(self) -> ReloadResult:
        return await asyncio.wait_for(self.results.get(), WAIT)

    async def expect_nothing(self, seconds: float = 10 * INTERVAL) -> None:
        await asyncio.sleep(seconds)
        assert self.results.empty(), self.results.get_nowait()


@contextlib.asynccontextmanager
async def polling(watcher: FlagWatcher) -> AsyncIterator[None]:
    task = asyncio.create_task(watcher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# Disk changes the tests make, as plain functions: what a release manager, an editor or
# the kubelet does to the file, while the watcher polls on the event loop.
def write(path: Path, text: str) -> None:
    path.write_text(text)


def remove(path: Path) -> None:
    path.unlink()


def mtime_ns(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_atime_ns, st.st_mtime_ns


def set_mtime_ns(path: Path, times: tuple[int, int]) -> None:
    os.utime(path, ns=times)


def atomic_replace(path: Path, text: str) -> None:
    """What editors do: write a temporary file, rename it over the original."""
    temp = path.with_name(f".{path.name}.swp")
    temp.write_text(text)
    os.replace(temp, path)


def unified_share(watcher: FlagWatcher) -> int:
    return watcher.current.flags["f"].rollout[Mode.UNIFIED]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(V1)
    return path


@pytest.fixture
def watcher(flag_file: Path, recorder: Recorder) -> FlagWatcher:
    watcher = FlagWatcher(
        flag_file, known_routes={"main", "factory"}, interval=INTERVAL, on_result=recorder
    )
    watcher.load_initial()
    return watcher


def test_load_initial_applies_the_file_without_reporting(
    watcher: FlagWatcher, recorder: Recorder
) -> None:
    assert unified_share(watcher) == 100
    assert watcher.last_error is None and watcher.loaded_at is not None
    assert recorder.results.empty()


@pytest.mark.parametrize("content", [GARBAGE, None], ids=["invalid", "missing"])
def test_load_initial_raises_so_start_up_fails_loudly(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "flags.yaml"
    if content is not None:
        path.write_text(content)
    watcher = FlagWatcher(path)
    with pytest.raises(FlagFileError):
        watcher.load_initial()
    assert watcher.last_error is not None and watcher.loaded_at is None
    assert dict(watcher.current.flags) == {}


async def test_in_place_edit_is_applied(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    first_loaded_at = watcher.loaded_at
    async with polling(watcher):
        write(flag_file, V3)
        result = await recorder.next()
    assert result.outcome == "applied" and result.error is None
    assert watcher.current is result.flagset
    assert set(watcher.current.by_route) == {"main", "factory"}
    assert watcher.loaded_at is not None and first_loaded_at is not None
    assert watcher.loaded_at >= first_loaded_at


async def test_a_file_truncated_then_written_in_place_is_applied_only_when_whole(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    # An editor or `>` truncates first and writes a moment later: the empty file in
    # between is a valid flag file (everyone on legacy) and must never be applied.
    with flag_file.open("wb") as half_written:
        poll = asyncio.create_task(watcher._poll_once())
        await asyncio.sleep(INTERVAL / 5)
        half_written.write(V3.encode())
    await asyncio.wait_for(poll, WAIT)
    result = await recorder.next()
    assert result.outcome == "applied"
    assert set(result.flagset.by_route) == {"main", "factory"}
    assert recorder.results.empty()


async def test_same_size_edit_within_one_timestamp_tick_is_applied(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    before = mtime_ns(flag_file)
    async with polling(watcher):
        write(flag_file, V2)
        # Same inode, size and mtime: stat alone cannot tell, the content re-check must.
        set_mtime_ns(flag_file, before)
        result = await recorder.next()
    assert result.outcome == "applied"
    assert unified_share(watcher) == 200


async def test_atomic_rename_over_the_file_is_applied(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    async with polling(watcher):
        atomic_replace(flag_file, V2)
        result = await recorder.next()
    assert result.outcome == "applied"
    assert unified_share(watcher) == 200


def make_configmap(directory: Path, text: str, version: str) -> None:
    """Kubelet's layout: flags.yaml -> ..data/flags.yaml, ..data -> ..<timestamp>/."""
    (directory / version).mkdir()
    (directory / version / "flags.yaml").write_text(text)
    (directory / "..data_tmp").symlink_to(version)
    os.replace(directory / "..data_tmp", directory / "..data")  # atomic symlink swap


async def test_configmap_data_symlink_swap_is_applied(tmp_path: Path, recorder: Recorder) -> None:
    make_configmap(tmp_path, V1, "..2024_06_01_10_00_00.1")
    (tmp_path / "flags.yaml").symlink_to("..data/flags.yaml")
    watcher = FlagWatcher(tmp_path / "flags.yaml", interval=INTERVAL, on_result=recorder)
    watcher.load_initial()
    async with polling(watcher):
        make_configmap(tmp_path, V3, "..2024_06_01_10_05_00.2")
        shutil.rmtree(tmp_path / "..2024_06_01_10_00_00.1")
        result = await recorder.next()
    assert result.outcome == "applied"
    assert set(watcher.current.by_route) == {"main", "factory"}


async def test_invalid_file_is_rejected_last_good_kept_then_recovery_applied(
    watcher: FlagWatcher,
    recorder: Recorder,
    flag_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="strangler.flags")
    good = watcher.current
    async with polling(watcher):
        write(flag_file, GARBAGE)
        rejected = await recorder.next()
        assert rejected.outcome == "rejected"
        assert rejected.flagset is good and watcher.current is good
        assert rejected.error is not None and watcher.last_error is rejected.error
        # Rejected once, not again on every poll while the bad file stays.
        await recorder.expect_nothing()
        write(flag_file, V2)
        recovered = await recorder.next()
    assert recovered.outcome == "applied" and watcher.last_error is None
    assert unified_share(watcher) == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(flag_file) in warnings[0].getMessage()
    assert "not valid YAML at line 2" in warnings[0].getMessage()


async def test_rejection_log_names_file_key_and_problem_but_no_user_id(
    watcher: FlagWatcher,
    recorder: Recorder,
    flag_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="strangler.flags")
    write(
        flag_file,
        "flags: {f: {routes: [main], targets: {unified: [user-4711], live: [user-4711]}}}\n",
    )
    result = await watcher.reload()
    assert result.outcome == "rejected"
    message = caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.WARNING
    assert str(flag_file) in message and "flags.f.targets.live[0]" in message
    assert "only one mode" in message
    assert "user-4711" not in caplog.text


async def test_deleted_file_is_rejected_then_recreated_file_is_applied(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    good = watcher.current
    async with polling(watcher):
        remove(flag_file)
        rejected = await recorder.next()
        assert rejected.outcome == "rejected" and watcher.current is good
        assert rejected.error is not None and "cannot be read" in rejected.error.problem
        await recorder.expect_nothing()
        write(flag_file, V1)  # same content as the last good file: still a recovery
        recovered = await recorder.next()
    assert recovered.outcome == "applied" and watcher.last_error is None
    assert unified_share(watcher) == 100


async def test_touch_without_content_change_is_unchanged_not_reapplied(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    good, loaded_at = watcher.current, watcher.loaded_at
    atime, mtime = mtime_ns(flag_file)
    async with polling(watcher):
        set_mtime_ns(flag_file, (atime, mtime + 1_000_000_000))  # touch
        result = await recorder.next()
        assert result.outcome == "unchanged" and result.flagset is good
        await recorder.expect_nothing()
    assert watcher.current is good and watcher.loaded_at == loaded_at


async def test_poller_reports_nothing_while_the_file_does_not_change(
    watcher: FlagWatcher, recorder: Recorder
) -> None:
    good = watcher.current
    async with polling(watcher):
        await recorder.expect_nothing(20 * INTERVAL)
    assert watcher.current is good


async def test_reload_rereads_now_and_reports_each_outcome(
    watcher: FlagWatcher, recorder: Recorder, flag_file: Path
) -> None:
    write(flag_file, V2)
    applied = await watcher.reload()
    assert applied.outcome == "applied" and unified_share(watcher) == 200
    unchanged = await watcher.reload()
    assert unchanged.outcome == "unchanged" and unchanged.flagset is applied.flagset
    write(flag_file, GARBAGE)
    rejected = await watcher.reload()
    assert rejected.outcome == "rejected" and watcher.current is applied.flagset
    reported = [recorder.results.get_nowait() for _ in range(3)]
    assert reported == [applied, unchanged, rejected]


async def test_poller_survives_exceptions_and_keeps_polling(
    watcher: FlagWatcher,
    recorder: Recorder,
    flag_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_stat = flags_watch._stat
    failures = 3

    def flaky_stat(path: str) -> tuple[int, int, int, int] | None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("disk on fire")
        return real_stat(path)

    monkeypatch.setattr(flags_watch, "_stat", flaky_stat)
    async with polling(watcher):
        write(flag_file, V3)
        result = await recorder.next()
    assert result.outcome == "applied"
    assert failures == 0
    assert "disk on fire" in caplog.text


async def test_broken_callback_does_not_stop_reloads(
    watcher: FlagWatcher, flag_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(result: ReloadResult) -> None:
        raise ValueError("callback bug")

    broken = FlagWatcher(flag_file, interval=INTERVAL, on_result=explode)
    broken.load_initial()
    write(flag_file, V2)
    assert (await broken.reload()).outcome == "applied"
    assert unified_share(broken) == 200
    assert "callback bug" in caplog.text


async def test_a_recheck_that_reads_a_half_written_file_never_applies_it(
    watcher: FlagWatcher, flag_file: Path
) -> None:
    # The poll's stat ran before the writer truncated the file, its read after: what it
    # read (nothing yet) must wait for the next poll, which settles the file first.
    watcher.load_initial()
    good = watcher.current.digest
    await watcher._poll_once()  # the file was just written: the watcher re-checks it
    write(flag_file, "")  # the writer's truncate, before its write
    assert await watcher._reload(quiet_if_same=True) is None
    assert watcher.current.digest == good
    write(flag_file, "\x00\xff garbage \x00")  # what the writer then wrote
    await watcher._poll_once()
    assert watcher.current.digest == good  # rejected, the last good file stays
