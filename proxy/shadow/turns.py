"""The per-connection comparator: both backends' streams cut into turns, each judged once.

Pure code: no sockets, no asyncio, no clock. The relay feeds it the client's requests
and both backends' canonical events together with the time it saw them, and gets back
one `Verdict` per turn, in turn order, each exactly once. The turn's events themselves
are compared by `judge_events` (proxy/shadow/compare.py).

How a stream is cut: each side's events go to the oldest turn that side has not ended.
A side opens a turn with its first compared event and ends it with agent_completed or
agent_error. A turn end that arrives while no turn is open on that side (a duplicate, a
late repeat) ends nothing: it belongs to the turn that side ended last, and counts there
if that turn is still unreported, so one stray end never shifts the pairing of the turns
after it (alignment resynchronises at every turn boundary). Likewise an agent_started
while that side's turn is still open, once the client has sent its next request, begins
the next turn: the unfinished one is judged as such (SHADOW_TIMEOUT for the secondary,
PRIMARY_INCOMPLETE for the primary) instead of swallowing the next turn's events.

A turn may be shed (proxy/shadow/shed.py): started uncompared, or left uncompared when
the secondary is closed to shed its work. It keeps nothing, its events only move the
cursors, and its verdict is SHED as soon as it is the oldest turn: never a judgement
made from part of a turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from strangler.legacy_adapters.canonical import TURN_TYPES as CANONICAL_TURN_TYPES
from strangler.proxy.config.compare import NOT_COMPARED, CompareSettings
from strangler.proxy.shadow.compare import TURN_END, event_type, judge_events
from strangler.proxy.shadow.verdict import Category, Difference, Outcome, Side, Verdict

TURN_TYPES = CANONICAL_TURN_TYPES
"""Client message types that start a turn (the comparator is fed canonical messages)."""

_TURN_START = "agent_started"


@dataclass(slots=True)
class _Track:
    """One side's view of one turn."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    first: float | None = None
    end: float | None = None
    cut: int = 0  # events beyond max_events_per_turn, not kept
    keep: bool = True  # False once its data is worthless (dropped, secondary failed)
    abandoned: bool = False  # the side began its next turn without ending this one


@dataclass(slots=True)
class _Turn:
    index: int
    request_type: str
    start: float
    legacy: _Track = field(default_factory=_Track)
    unified: _Track = field(default_factory=_Track)
    dropped: bool = False
    failed: bool = False  # the secondary failed before finishing it: report at once
    shed: bool = False  # not compared, to keep the primary fast: report at once


def _since(when: float | None, start: float) -> float | None:
    return None if when is None else when - start


class Comparator:
    """Per connection: fed both streams as they arrive; yields verdicts as turns complete.

    Each side's events go to that side's oldest turn it has not finished, so the two
    sides may be on different turns at the same time. Verdicts come out in turn order.
    """

    __slots__ = (
        "_closed",
        "_cursor",
        "_failed",
        "_next",
        "_open",
        "_primary",
        "_secondary",
        "_settings",
        "_shed",
        "_turns",
    )

    def __init__(self, primary: Side, settings: CompareSettings) -> None:
        self._primary = Side(primary)
        self._secondary = Side.UNIFIED if self._primary is Side.LEGACY else Side.LEGACY
        self._settings = settings
        self._turns: deque[_Turn] = deque()  # turns not yet reported, oldest first
        self._next = 0  # index of the next turn a client request opens
        # Per side, the index of the oldest turn that side has not finished. It keeps
        # counting through turns already reported so late events never leak forward.
        self._cursor = {Side.LEGACY: 0, Side.UNIFIED: 0}
        # Per side, whether its turn at the cursor has begun (a compared event came).
        self._open = {Side.LEGACY: False, Side.UNIFIED: False}
        self._failed = False
        self._shed = False  # the secondary was closed to shed its work
        self._closed = False

    @property
    def open_turns(self) -> int:
        """Turns started and not yet reported."""
        return len(self._turns)

    @property
    def comparing(self) -> bool:
        """Whether a turn not shed waits for its verdict."""
        return any(not turn.shed for turn in self._turns)

    def client_message(self, message: Mapping[str, Any], now: float, *, shed: bool = False) -> bool:
        """Start a turn if ``message`` is a request; both sides get the same copy.

        With ``shed`` (or once the secondary was shed) the turn is not compared: its
        events still keep both sides' turns paired, its verdict is SHED. True when a
        turn started.
        """
        kind = message.get("type")
        if self._closed or not isinstance(kind, str) or kind not in TURN_TYPES:
            return False
        turn = _Turn(self._next, kind, now)
        if self._failed:
            self._track(turn, self._secondary).keep = False
        if shed or self._shed:
            turn.shed = True
            turn.legacy.keep = turn.unified.keep = False
        self._turns.append(turn)
        self._next += 1
        return True

    def keeps(self, side: Side) -> bool:
        """Whether ``side``'s next event could be kept for a comparison; when not, only
        its ``type`` matters (the event can be read that far and no further)."""
        index = self._cursor[side]
        # The event goes to the turn at the cursor, the one after it when it begins that
        # one, or, a stray turn end, the one before it (see `event`); a turn already
        # reported keeps nothing.
        return any(
            turn is not None and self._track(turn, side).keep
            for turn in (self._find(index - 1), self._find(index), self._find(index + 1))
        )

    def event(self, side: Side, event: Mapping[str, Any], now: float) -> list[Verdict]:
        """Take one canonical event from ``side``; return the verdicts it completes."""
        if self._closed:
            return []
        kind = event_type(event)
        if kind in NOT_COMPARED or ((self._failed or self._shed) and side == self._secondary):
            return self._drain(now)
        index = self._cursor[side]
        if kind in TURN_END and not self._open[side]:
            return self._stray_end(side, index, event, now)
        if kind == _TURN_START and self._open[side] and index + 1 < self._next:
            # The side began the next request's turn without ending this one (it hung,
            # or gave up): this turn is left unfinished there, and the new events go
            # to their own turn, so one hang never shifts the turns after it.
            abandoned = self._find(index)
            if abandoned is not None:
                self._track(abandoned, side).abandoned = True
            index += 1
            self._cursor[side] = index
            self._open[side] = False
        if index >= self._next:
            return self._drain(now)  # no request is open on that side: nothing to align
        turn = self._find(index)
        if turn is not None:  # None: already reported, the rest of it is discarded
            track = self._track(turn, side)
            if track.first is None:
                track.first = now
            if track.keep:
                if len(track.events) < self._settings.max_events_per_turn:
                    track.events.append(event)
                else:
                    track.cut += 1
            if kind in TURN_END:
                track.end = now
        if kind in TURN_END:
            self._cursor[side] = index + 1
            self._open[side] = False
        else:
            self._open[side] = True
        return self._drain(now)

    def _stray_end(
        self, side: Side, index: int, event: Mapping[str, Any], now: float
    ) -> list[Verdict]:
        # Every turn opens with agent_started (docs/PROTOCOL.md): an end with nothing
        # before it is a repeat of the end of the turn this side finished last. Counted
        # there while that turn waits for its verdict, dropped once it has one; either
        # way the next turn stays paired with its own request.
        turn = self._find(index - 1) if index > 0 else None
        if turn is not None:
            track = self._track(turn, side)
            if track.keep:
                if len(track.events) < self._settings.max_events_per_turn:
                    track.events.append(event)
                else:
                    track.cut += 1
        return self._drain(now)

    def secondary_failed(self, reason: str, now: float) -> list[Verdict]:
        """The secondary connection failed: its unfinished turns, and all later ones, error.

        Turns the secondary had already finished are still compared when the primary
        finishes them. ``reason`` is not kept: it may quote user data or tokens.
        """
        if self._closed or self._failed:
            return []
        self._failed = True
        for turn in self._turns:
            track = self._track(turn, self._secondary)
            if track.end is None:
                turn.failed = True
                track.keep = False
                track.events = []
        return self._drain(now)

    def secondary_shed(self, now: float) -> list[Verdict]:
        """The secondary was closed to shed its work: turns it had not finished, and all
        later ones, are SHED. Turns it had finished are still compared."""
        if self._closed or self._failed or self._shed:
            return []
        self._shed = True
        for turn in self._turns:
            track = self._track(turn, self._secondary)
            if track.end is None:
                turn.shed = True
                turn.legacy.keep = turn.unified.keep = False
                turn.legacy.events, turn.unified.events = [], []
        return self._drain(now)

    def secondary_dropped(self, now: float) -> None:
        """Secondary data was lost: the turns it had not finished become SHADOW_ERROR."""
        if self._closed:
            return
        for turn in self._turns:
            track = self._track(turn, self._secondary)
            if track.end is None:
                turn.dropped = True
                track.keep = False
                track.events = []

    def primary_closed(self, now: float) -> list[Verdict]:
        """The client left: report every open turn now; later input is ignored."""
        if self._closed:
            return []
        self._closed = True
        verdicts: list[Verdict] = []
        for turn in self._turns:
            verdict = self._resolve(turn, now)
            if verdict is None:
                primary = self._track(turn, self._primary)
                # Unfinished by the primary: the client did not wait. Otherwise the
                # secondary, which closes with the client, can no longer finish in time.
                unfinished = primary.end is None
                outcome = Outcome.PRIMARY_INCOMPLETE if unfinished else Outcome.SHADOW_TIMEOUT
                verdict = self._verdict(turn, outcome)
            verdicts.append(verdict)
        self._turns.clear()
        return verdicts

    def poll(self, now: float) -> list[Verdict]:
        """Report turns whose secondary deadline has passed."""
        return [] if self._closed else self._drain(now)

    # -- internals --

    @staticmethod
    def _track(turn: _Turn, side: Side) -> _Track:
        return turn.legacy if side == Side.LEGACY else turn.unified

    def _find(self, index: int) -> _Turn | None:
        if not self._turns:
            return None
        position = index - self._turns[0].index
        return self._turns[position] if 0 <= position < len(self._turns) else None

    def _drain(self, now: float) -> list[Verdict]:
        verdicts: list[Verdict] = []
        while self._turns:
            verdict = self._resolve(self._turns[0], now)
            if verdict is None:
                break  # later turns wait: verdicts come out in turn order
            self._turns.popleft()
            verdicts.append(verdict)
        return verdicts

    def _resolve(self, turn: _Turn, now: float) -> Verdict | None:
        """The verdict on ``turn`` if it can be given at ``now``, else None."""
        primary = self._track(turn, self._primary)
        secondary = self._track(turn, self._secondary)
        if turn.shed:
            return self._verdict(turn, Outcome.SHED)
        if turn.failed:
            return self._verdict(turn, Outcome.SHADOW_ERROR)
        if primary.abandoned:
            return self._verdict(turn, Outcome.PRIMARY_INCOMPLETE)
        if primary.end is None:
            return None
        if secondary.abandoned:
            return self._verdict(turn, Outcome.SHADOW_TIMEOUT)  # it will never finish it
        if turn.dropped or (self._failed and secondary.end is None):
            return self._verdict(turn, Outcome.SHADOW_ERROR)
        duration = primary.end - turn.start
        settings = self._settings
        deadline = primary.end + max(settings.timeout_factor * duration, settings.timeout_floor)
        if secondary.end is None:
            return self._verdict(turn, Outcome.SHADOW_TIMEOUT) if now > deadline else None
        if secondary.end > deadline:
            # Late is late, however often the relay polls.
            return self._verdict(turn, Outcome.SHADOW_TIMEOUT)
        cut = self._cut_differences(turn)
        if cut:
            return self._verdict(turn, Outcome.MISMATCH, cut)
        judged = judge_events(turn.legacy.events, turn.unified.events, settings)
        outcome = Outcome.MISMATCH if judged.differences else Outcome.MATCH
        return self._verdict(turn, outcome, judged.differences, judged.noise)

    def _cut_differences(self, turn: _Turn) -> tuple[Difference, ...]:
        # A cut turn cannot be compared faithfully: report the cut, not its side effects.
        limit = self._settings.max_events_per_turn
        return tuple(
            Difference(Category.EXTRA_EVENT, f"more than {limit} events ({side})")
            for side in Side
            if self._track(turn, side).cut
        )

    def _verdict(
        self,
        turn: _Turn,
        outcome: Outcome,
        differences: tuple[Difference, ...] = (),
        noise: tuple[tuple[str, str], ...] = (),
    ) -> Verdict:
        legacy, unified = turn.legacy, turn.unified
        return Verdict(
            turn=turn.index,
            request_type=turn.request_type,
            outcome=outcome,
            differences=differences,
            primary=self._primary,
            legacy_duration=_since(legacy.end, turn.start),
            unified_duration=_since(unified.end, turn.start),
            legacy_first_event=_since(legacy.first, turn.start),
            unified_first_event=_since(unified.first, turn.start),
            dropped=turn.dropped,
            # Transcripts explain a non-match; a match needs none, so none are kept.
            legacy_events=() if outcome is Outcome.MATCH else tuple(legacy.events),
            unified_events=() if outcome is Outcome.MATCH else tuple(unified.events),
            noise=noise,
        )
