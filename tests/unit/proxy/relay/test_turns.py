"""The turn state machine, driven by hand: requests and events in, counts out."""

from __future__ import annotations

from dataclasses import dataclass, field

from strangler.proxy.relay import turnscan
from strangler.proxy.relay.turns import (
    OUTCOMES,
    Idle,
    Owner,
    Turn,
    TurnMeters,
    TurnWatch,
    each_code,
    left_by_client,
)
from strangler.proxy.relay.turnscan import CODE_BITS, EVENT_TYPES, GOLDEN_PATH, code_count
from strangler.proxy.telemetry import metrics

CODE = {t: i for i, t in enumerate(EVENT_TYPES, start=1)}


@dataclass
class Count:
    value: int = 0

    def add(self, amount: int = 1) -> None:
        self.value += amount


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def observe(self, amount: float) -> None:
        self.values.append(amount)


@dataclass
class Timer:
    owner: Owner
    turn: Turn
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeClock:
    t: float = 100.0
    timers: list[Timer] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def later(self, delay: float, owner: Owner, turn: Turn) -> Timer:
        assert delay == 30.0
        timer = Timer(owner, turn)
        self.timers.append(timer)
        return timer

    def fire(self) -> None:
        """The live timer runs out."""
        (live,) = [t for t in self.timers if not t.cancelled]
        live.cancelled = True
        live.owner.turn_expired(live.turn)


class Book:
    """Meters with readable counts."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.started = Count()
        self.outcomes = {o: Count() for o in OUTCOMES}
        self.missing = {e: Count() for e in GOLDEN_PATH}
        self.first = Samples()
        self.duration = Samples()
        self.meters = TurnMeters(
            started=self.started,
            outcomes=tuple(self.outcomes.values()),
            missing=tuple(self.missing.values()),
            first_event=self.first,
            duration=self.duration,
            timeout=30.0,
            clock=self.clock,
        )

    def counts(self) -> dict[str, int]:
        out = {"started": self.started.value}
        out |= {o: c.value for o, c in self.outcomes.items() if c.value}
        out |= {f"missing {e}": c.value for e, c in self.missing.items() if c.value}
        return out


def events(watch: TurnWatch, *types: str) -> None:
    for t in types:
        watch.event(CODE[t])


def test_all_five_types_complete_a_turn_and_time_it() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    book.clock.t += 0.5
    events(watch, "agent_started", "agent_thinking", "tool_executing")
    book.clock.t += 1.0
    events(watch, "tool_completed", "agent_completed")
    assert book.counts() == {"started": 1, "completed": 1}
    assert (book.first.values, book.duration.values) == ([0.5], [1.5])
    assert watch.state is book.meters.idle
    assert all(t.cancelled for t in book.clock.timers)


def test_a_turn_without_tools_is_incomplete_and_names_both_tool_types() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    events(watch, "agent_started", "agent_thinking", "agent_completed")
    assert book.counts() == {
        "started": 1,
        "incomplete": 1,
        "missing tool_executing": 1,
        "missing tool_completed": 1,
    }


def test_agent_error_errs_the_turn_whatever_came_before() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    events(watch, "agent_error")
    assert book.counts() == {"started": 1, "errored": 1}
    assert book.duration.values == []


def test_a_timeout_ends_the_turn_and_quiets_the_late_ones() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    events(watch, "agent_started")
    book.clock.fire()
    assert book.counts() == {"started": 1, "timed_out": 1}
    assert watch.state is book.meters.quiet
    events(watch, "agent_started", "agent_completed")  # late: opens nothing
    assert book.counts() == {"started": 1, "timed_out": 1}
    watch.request()  # the client asks again: a turn opens
    events(watch, *GOLDEN_PATH)
    assert book.counts() == {"started": 2, "timed_out": 1, "completed": 1}


def test_a_stale_timer_changes_nothing() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    (timer,) = book.clock.timers
    events(watch, *GOLDEN_PATH)
    watch.turn_expired(timer.turn)  # it raced the end and lost
    assert book.counts() == {"started": 1, "completed": 1}


def test_queued_turns_open_in_turn_and_end_with_the_connection() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    for _ in range(3):
        watch.request()
    assert book.counts() == {"started": 1}  # the others wait their turn
    events(watch, *GOLDEN_PATH)
    assert book.counts() == {"started": 2, "completed": 1}
    book.clock.fire()  # the second times out: the third is open
    assert isinstance(watch.state, Turn) and watch.state.queued == 0
    watch.ended(client_left=True)
    assert book.counts() == {"started": 3, "completed": 1, "timed_out": 1, "abandoned": 1}


def test_turn_messages_counted_together_are_turns_one_after_another() -> None:
    """The tunnel hands over the turn messages a client sent behind an open turn as one
    count (its scanner's `queued`): as many turns as one request each."""
    book = Book()
    owner = TurnWatch(book.meters)
    state = book.meters.idle.request(owner, 3)
    assert book.counts() == {"started": 1}
    assert isinstance(state, Turn) and state.queued == 2
    assert state.request(owner, 2) is state and state.queued == 4


def test_packed_codes_are_counted_without_unpacking() -> None:
    assert [code_count(c) for c in (0, 0x1, 0x11, 0x111, 0x6, 0x65, 0xF0F)] == [0, 1, 2, 3, 1, 2, 3]


def test_the_end_of_a_connection_interrupts_its_open_turns_unless_the_client_left() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    watch.request()
    watch.ended(client_left=False)
    assert book.counts() == {"started": 2, "interrupted": 2}
    assert all(t.cancelled for t in book.clock.timers)


def test_an_agent_started_with_no_turn_open_opens_one() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    events(watch, "agent_thinking", "agent_completed")  # no turn: nothing
    events(watch, *GOLDEN_PATH)
    assert book.counts() == {"started": 1, "completed": 1}
    assert book.first.values == []  # nobody waited for it


def test_the_next_agent_started_ends_a_turn_that_never_completed() -> None:
    book = Book()
    watch = TurnWatch(book.meters)
    watch.request()
    events(watch, "agent_started", "agent_thinking", "tool_executing", "tool_completed")
    events(watch, "agent_started")
    assert book.counts() == {"started": 2, "incomplete": 1, "missing agent_completed": 1}
    assert isinstance(watch.state, Turn) and watch.state.seen == 1


def test_idle_state_is_shared_and_holds_no_connection() -> None:
    book = Book()
    first, second = TurnWatch(book.meters), TurnWatch(book.meters)
    assert first.state is second.state is book.meters.idle
    assert isinstance(book.meters.idle, Idle)


def test_packed_codes_unpack_in_frame_order() -> None:
    packed = 0
    for code in (1, 6, 2, 5, 3):
        packed = packed << CODE_BITS | code
    assert each_code(packed) == [1, 6, 2, 5, 3]
    assert each_code(0) == []


def test_leaving_is_the_clients_when_it_closed_vanished_or_broke_the_rules() -> None:
    assert left_by_client("client_closed", None)
    assert left_by_client("client_gone", None)
    assert left_by_client("too_big", "too_big")
    assert left_by_client("backend_closed", "invalid_utf8")  # the backend's verdict on it
    for label in ("backend_closed", "backend_gone", "shutdown", "drained", "stalled"):
        assert not left_by_client(label, None)


def test_the_metric_labels_are_the_state_machines() -> None:
    assert metrics.TURN_OUTCOMES == OUTCOMES
    assert metrics.GOLDEN_PATH == turnscan.GOLDEN_PATH
