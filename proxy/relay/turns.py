"""Every turn of a connection, from its request to how it ended (pure: no I/O, no asyncio).

A turn starts when the client sends a turn message (docs/PROTOCOL.md, section 2: a turn
type or one of its aliases) or, with no turn open, when the backend sends
`agent_started`. It ends with

- `completed`: `agent_completed`, after every golden-path type (`agent_started`,
  `agent_thinking`, `tool_executing`, `tool_completed`) came. A turn without a tool pair
  is not complete: the business objective is the share of requests that get all five
  events, as the legacy golden-path tests require (../shared/LEGACY_SURFACE.md);
- `incomplete`: `agent_completed` with a golden-path type missing, or the next turn's
  `agent_started` before this one's `agent_completed`; each type that never came is
  counted once (`missing`);
- `errored`: `agent_error`;
- `abandoned`: the connection ended from the client's side (it closed, vanished or
  broke the protocol) with the turn open;
- `interrupted`: the connection ended otherwise with the turn open: the backend closed,
  vanished or broke the protocol, or the proxy closed it (shutdown, drain, stall);
- `timed_out`: no end within `relay.turn_timeout` seconds of its start.

Turns run one after another (the router queues them, PROTOCOL.md section 2): a turn
message while a turn is open waits behind it, and starts (is counted as started, its
times run) when the one before it ends; at the connection's end those still waiting
are started and ended with the open one. A queued request is one integer add. After
a timeout, events of the late turn find no turn open and are ignored; its late
`agent_started` opens nothing, until the client sends its next turn message.

State costs nothing while no turn is open: a connection holds one shared `Idle` (one
per route, mode and backend) and holds a `Turn` only while one is open. Each state
answers what it becomes: `state = state.request(owner)`, `state.event(owner, code)`.
The owner (the tunnel, or the per-frame relay's `TurnWatch`) keeps the state and
implements `turn_expired`, which the turn's timer calls.
"""

from __future__ import annotations

from typing import Final, Protocol

from strangler.proxy.relay.turnscan import AGENT_COMPLETED, AGENT_ERROR, AGENT_STARTED, CODE_BITS

OUTCOMES: Final = ("completed", "incomplete", "errored", "abandoned", "interrupted", "timed_out")
COMPLETED, INCOMPLETE, ERRORED, ABANDONED, INTERRUPTED, TIMED_OUT = range(6)

_GOLDEN_SEEN = 0b11111  # one bit per golden-path type, code 1 in bit 0
_CODE_MASK = (1 << CODE_BITS) - 1


class Counts(Protocol):
    def add(self, amount: int = 1) -> None: ...


class Observes(Protocol):
    def observe(self, amount: float) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Time for turns: `now` (monotonic seconds) and a timer that calls `fn(turn)`."""

    def now(self) -> float: ...

    def later(self, delay: float, owner: Owner, turn: Turn) -> Cancellable: ...


class Owner(Protocol):
    """What holds a connection's turn state."""

    def turn_expired(self, turn: Turn) -> None: ...


class TurnMeters:
    """The counters of one route, mode and backend, and the clock; shared by connections."""

    __slots__ = (
        "clock",
        "duration",
        "first_event",
        "idle",
        "missing",
        "outcomes",
        "quiet",
        "started",
        "timeout",
    )

    def __init__(
        self,
        *,
        started: Counts,
        outcomes: tuple[Counts, ...],
        missing: tuple[Counts, ...],
        first_event: Observes,
        duration: Observes,
        timeout: float,
        clock: Clock,
    ) -> None:
        self.started = started
        self.outcomes = outcomes  # by OUTCOMES index
        self.missing = missing  # by golden-path index
        self.first_event = first_event
        self.duration = duration
        self.timeout = timeout
        self.clock = clock
        self.idle = Idle(self, opens_on_started=True)
        self.quiet = Idle(self, opens_on_started=False)  # after a timeout


class Idle:
    """No turn open (shared: one per meters, so an idle connection holds nothing)."""

    __slots__ = ("meters", "opens_on_started")

    def __init__(self, meters: TurnMeters, *, opens_on_started: bool) -> None:
        self.meters = meters
        self.opens_on_started = opens_on_started

    def request(self, owner: Owner, count: int = 1) -> State:
        """`count` turn messages: the first opens a turn, the rest wait behind it."""
        self.meters.started.add()
        turn = Turn(self.meters, owner, waiting=True)
        turn.queued = count - 1
        return turn

    def event(self, owner: Owner, code: int) -> State:
        if code != AGENT_STARTED or not self.opens_on_started:
            return self  # the rest of a turn that ended (a timeout, a duplicate end)
        self.meters.started.add()
        turn = Turn(self.meters, owner, waiting=False)
        turn.seen = 1
        return turn

    def ended(self, client_left: bool) -> None:
        """The connection ended: nothing was open."""


class Turn:
    """The open turn: what came of the golden path, and how many wait behind it."""

    __slots__ = ("began", "meters", "queued", "seen", "timer", "waiting")

    def __init__(self, meters: TurnMeters, owner: Owner, *, waiting: bool) -> None:
        self.meters = meters
        self.began = meters.clock.now()
        self.seen = 0  # golden-path types that came, one bit each
        self.queued = 0  # turn messages sent since, each a turn to come
        self.waiting = waiting  # a client request waiting for its first event
        self.timer = meters.clock.later(meters.timeout, owner, self)

    def request(self, owner: Owner, count: int = 1) -> State:
        self.queued += count
        return self

    def event(self, owner: Owner, code: int) -> State:
        meters = self.meters
        if self.waiting:
            self.waiting = False
            meters.first_event.observe(meters.clock.now() - self.began)
        if code == AGENT_COMPLETED:
            self.seen |= 1 << (AGENT_COMPLETED - 1)
            meters.duration.observe(meters.clock.now() - self.began)
            return self._end(owner, COMPLETED if self.seen == _GOLDEN_SEEN else INCOMPLETE)
        if code == AGENT_ERROR:
            return self._end(owner, ERRORED)
        if code == AGENT_STARTED and self.seen & 1:
            # The next turn began before this one completed.
            following = self._end(owner, INCOMPLETE)
            return following.event(owner, code)
        self.seen |= 1 << (code - 1)
        return self

    def expired(self, owner: Owner) -> State:
        """The turn's timer ran out: it timed out; the next one, if any, is open now."""
        following = self._end(owner, TIMED_OUT)
        return self.meters.quiet if following is self.meters.idle else following

    def ended(self, client_left: bool) -> None:
        """The connection ended with this turn open, and those queued behind it."""
        self.timer.cancel()
        outcome = ABANDONED if client_left else INTERRUPTED
        if self.queued:
            self.meters.started.add(self.queued)
        self.meters.outcomes[outcome].add(1 + self.queued)

    def _end(self, owner: Owner, outcome: int) -> State:
        meters = self.meters
        self.timer.cancel()
        meters.outcomes[outcome].add()
        if outcome == INCOMPLETE:
            seen = self.seen
            for i, missing in enumerate(meters.missing):
                if not seen & 1 << i:
                    missing.add()
        if not self.queued:
            return meters.idle
        meters.started.add()
        following = Turn(meters, owner, waiting=True)
        following.queued = self.queued - 1
        return following


State = Idle | Turn


# How a connection ended (metrics.OUTCOMES) when its client was the one to leave.
_CLIENT_ENDS = frozenset({"client_closed", "client_gone"})


def left_by_client(outcome: str, bad_input: str | None) -> bool:
    """Whether a connection that ended so (its outcome label after the proxy's own
    reasons, and the client's bad input that ended it, if any) was left by its client:
    its open turns are then abandoned, else interrupted."""
    return outcome in _CLIENT_ENDS or bad_input is not None


def each_code(codes: int) -> list[int]:
    """The codes a scanner packed into one int (wsframes.Scan.events), in frame order."""
    out = []
    while codes:
        out.append(codes & _CODE_MASK)
        codes >>= CODE_BITS
    out.reverse()
    return out


class TurnWatch:
    """A connection's turns on the per-frame relay (the tunnel keeps its state itself)."""

    __slots__ = ("state",)

    def __init__(self, meters: TurnMeters) -> None:
        self.state: State = meters.idle

    def request(self) -> None:
        self.state = self.state.request(self)

    def event(self, code: int) -> None:
        self.state = self.state.event(self, code)

    def turn_expired(self, turn: Turn) -> None:
        if self.state is turn:
            self.state = turn.expired(self)

    def ended(self, client_left: bool) -> None:
        self.state.ended(client_left)
        self.state = self.state.meters.idle
