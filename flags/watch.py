"""Follows the flag file on disk and swaps in each new valid version.

Change detection polls ``os.stat`` of the path (which follows symlinks) and compares
(st_dev, st_ino, st_mtime_ns, st_size). That sees in-place edits, an editor's atomic
rename (new inode) and the Kubernetes ConfigMap swap (``flags.yaml -> ..data/flags.yaml``
with ``..data`` re-pointed to a new directory: a new inode again). Content is compared by
digest, so a touch without a content change is reported "unchanged", not re-applied.

A file that is missing, unreadable or invalid is "rejected": the last good FlagSet stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

from strangler.flags.load import FlagFileError, parse_flags
from strangler.flags.model import FlagSet

_log = logging.getLogger("strangler.flags")

_Signature = tuple[int, int, int, int]

# A file modified this recently may be modified again within the file system's timestamp
# granularity (1-10 ms here, up to 2 s elsewhere) without its stat changing, so until it is
# older than this the poller re-reads it and compares digests instead of trusting stat.
_RECENT_NS = 2_000_000_000

# A writer that truncates and then writes (an editor saving in place, `>` in a shell)
# leaves the file empty or half written for a moment. The poller applies a changed file
# only once its stat holds still for this long, re-checking at most this many times.
_SETTLE_SECONDS = 0.05
_SETTLE_CHECKS = 10


@dataclass(frozen=True)
class ReloadResult:
    """What one reload attempt did; ``flagset`` is the set in force afterwards."""

    outcome: Literal["applied", "unchanged", "rejected"]
    flagset: FlagSet
    error: FlagFileError | None
    changes: Any = None
    """For an applied file, what the watcher's ``compare(previous, new)`` said (None
    without one): worked out in the parsing thread, so a large diff never runs on the
    event loop."""


@dataclass(frozen=True, slots=True)
class _Read:
    """One read of the file: its stat signature and bytes, or why it could not be read."""

    signature: _Signature | None
    data: bytes
    digest: str
    recent: bool
    error: FlagFileError | None


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _stat(path: str) -> _Signature | None:
    try:
        return _signature(os.stat(path))
    except OSError:
        return None


def _read(path: str) -> _Read:
    started = time.time_ns()
    try:
        with open(path, "rb") as f:
            # fstat of the open file: the signature belongs to the bytes read, even if the
            # path is renamed over meanwhile (then the next poll sees a new signature).
            st = os.fstat(f.fileno())
            data = f.read()
    except OSError as exc:
        return _Read(_stat(path), b"", "", False, FlagFileError.unreadable(path, exc))
    recent = st.st_mtime_ns >= started - _RECENT_NS
    return _Read(_signature(st), data, hashlib.sha256(data).hexdigest(), recent, None)


class FlagWatcher:
    """Holds the current FlagSet and reloads it from ``path`` on demand or by polling."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        known_routes: Collection[str] | None = None,
        interval: float = 1.0,
        on_result: Callable[[ReloadResult], None] | None = None,
        compare: Callable[[FlagSet, FlagSet], Any] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._path = os.fspath(path)
        # A frozen copy: parsing runs in a worker thread.
        self._known_routes = None if known_routes is None else frozenset(known_routes)
        self._interval = interval
        self._on_result = on_result
        self._compare = compare
        self._current = FlagSet.empty()
        self._last_error: FlagFileError | None = None
        self._loaded_at: float | None = None
        # What the last read attempt saw, to tell a change on disk from no change.
        self._attempted = False
        self._seen: _Signature | None = None
        self._seen_digest = ""
        self._recent = False
        # Serialises reloads (poller and SIGHUP) so an older read is never applied last.
        self._lock = asyncio.Lock()

    @property
    def path(self) -> str:
        """The watched flag file path."""
        return self._path

    @property
    def current(self) -> FlagSet:
        """The last good FlagSet (empty until the first successful load)."""
        return self._current

    @property
    def last_error(self) -> FlagFileError | None:
        """Why the last attempt was rejected; None once a good file is in force."""
        return self._last_error

    @property
    def loaded_at(self) -> float | None:
        """time.time() of the last applied load, None before the first."""
        return self._loaded_at

    def load_initial(self) -> FlagSet:
        """Load the file synchronously at start-up; raises FlagFileError so start-up fails.

        The result is not reported through ``on_result``: it is not a reload.
        """
        read = _read(self._path)
        self._remember(read)
        try:
            if read.error is not None:
                raise read.error
            flagset = parse_flags(read.data, self._path, self._known_routes)
        except FlagFileError as err:
            self._last_error = err
            raise
        self._apply(flagset)
        return flagset

    async def reload(self) -> ReloadResult:
        """Re-read the file now (SIGHUP, the poller) and report the result."""
        result = await self._reload(quiet_if_same=False)
        assert result is not None  # only quiet re-checks return None
        return result

    async def run(self) -> None:
        """Poll the file every ``interval`` seconds until cancelled; never stops on errors."""
        while True:
            try:
                await self._poll_once()
            except Exception:
                _log.exception("flag file poll of %s failed; polling continues", self._path)
            await asyncio.sleep(self._interval)

    async def _poll_once(self) -> None:
        signature = await asyncio.to_thread(_stat, self._path)
        changed = not self._attempted or signature != self._seen
        if changed and signature is not None:
            await self._settled(signature)
        if changed or self._recent:
            # A re-check of a recently written file stays silent unless the bytes changed.
            await self._reload(quiet_if_same=not changed)

    async def _settled(self, signature: _Signature) -> None:
        """Return once the file's stat stops changing (or after a bounded wait)."""
        for _ in range(_SETTLE_CHECKS):
            await asyncio.sleep(_SETTLE_SECONDS)
            again = await asyncio.to_thread(_stat, self._path)
            if again == signature:
                return
            if again is None:
                return  # gone: the reload reports it
            signature = again

    async def _reload(self, *, quiet_if_same: bool) -> ReloadResult | None:
        async with self._lock:
            previous_digest = self._seen_digest
            read = await asyncio.to_thread(_read, self._path)
            self._remember(read)
            if read.error is not None:
                return self._report(self._reject(read.error))
            if quiet_if_same:
                if read.digest != previous_digest:
                    # New bytes under a stat that had not changed when this poll began:
                    # the file may be half written (a truncate before the write). The
                    # next poll sees it as changed and waits for it to settle first.
                    self._seen = None
                return None
            if read.digest == self._current.digest and self._last_error is None:
                return self._report(ReloadResult("unchanged", self._current, None))
            try:
                flagset, changes = await asyncio.to_thread(
                    self._parse_and_compare, read.data, self._current
                )
            except FlagFileError as err:
                return self._report(self._reject(err))
            self._apply(flagset)
            return self._report(ReloadResult("applied", flagset, None, changes))

    def _parse_and_compare(self, data: bytes, previous: FlagSet) -> tuple[FlagSet, Any]:
        """Runs in a worker thread: the new set, and how it differs from ``previous``."""
        flagset = parse_flags(data, self._path, self._known_routes)
        changes = None if self._compare is None else self._compare(previous, flagset)
        return flagset, changes

    def _remember(self, read: _Read) -> None:
        self._attempted = True
        self._seen = read.signature
        self._seen_digest = read.digest
        self._recent = read.recent

    def _apply(self, flagset: FlagSet) -> None:
        self._current = flagset
        self._last_error = None
        self._loaded_at = time.time()
        _log.info(
            "flag file %s applied: %d flags, sha256 %s",
            flagset.source,
            len(flagset.flags),
            flagset.digest[:12],
        )

    def _reject(self, err: FlagFileError) -> ReloadResult:
        self._last_error = err
        # The error text names file, key and problem; validation never puts user ids in it.
        _log.warning(
            "flag file rejected, keeping the last good one (sha256 %s): %s",
            self._current.digest[:12] or "none",
            err,
        )
        return ReloadResult("rejected", self._current, err)

    def _report(self, result: ReloadResult) -> ReloadResult:
        if self._on_result is not None:
            try:
                self._on_result(result)
            except Exception:
                # A broken callback must not stop reloads (or the poller).
                _log.exception("flag reload callback failed")
        return result
