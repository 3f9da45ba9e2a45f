"""The adapter interface every dialect module implements, and its per-connection context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from strangler.legacy_adapters.canonical import Message

# The two generations of a route's first frame (LEGACY_SURFACE.md): the newer
# ``connection_established`` and the older ``system_message``. Which one a route sends
# is its dialect's default unless the route's configuration names one.
Greeting = Literal["connection_established", "system_message"]
GREETINGS: Final[frozenset[str]] = frozenset(get_args(Greeting))


@dataclass(frozen=True, slots=True)
class Context:
    """What an adapter needs to know about the connection it renders for."""

    route: str  # the route name, as sent in X-Strangler-Route
    user_id: str | None  # the verified user id; None for an anonymous connection
    mode: str  # the data.mode this dialect's connection_established reports
    # The dialect's own connection id once its greeting has been rendered: heartbeats
    # repeat it, and the older ``ws_<ms>_<id>`` form cannot be derived from them alone.
    connection_id: str | None = None
    # The greeting shape the route is configured with; None: the dialect's default.
    greeting: Greeting | None = None


class Adapter(Protocol):
    """Translation between one dialect and the canonical protocol (all methods pure)."""

    name: str

    def client_to_canonical(self, msg: Message) -> Message:
        """A client message in this dialect as a canonical client message."""
        ...

    def event_from_canonical(self, event: Message, ctx: Context) -> Message:
        """A canonical server event as legacy would have sent it in this dialect.

        Returns ``event`` itself when the dialect sends it unchanged.
        """
        ...

    def event_to_canonical(self, frame: Message) -> Message:
        """A server frame of this dialect as the canonical event (to compare streams)."""
        ...

    def invalid_frame_reply(self, problem: str) -> Message | None:
        """What the legacy route answered to a frame it could not parse (None: nothing)."""
        ...
