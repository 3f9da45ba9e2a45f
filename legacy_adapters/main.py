"""The ``main`` dialect (``/ws``, ``/api/v1/websocket``): the canonical protocol itself.

Events pass unchanged; only the greeting differs: connection_established reports the
connection's data.mode, and a route configured with ``greeting: system_message`` gets
the older greeting instead (heartbeats then repeat its ``ws_<ms>_<hex>`` id).
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter, Greeting
from strangler.legacy_adapters.nesting import DataNestingAdapter

NAME: Final = "main"
MODE: Final = "main"
# The first frame unless the route configures another (strangler.yaml `greeting:`).
GREETING: Final[Greeting] = "connection_established"
# Turn-event fields this dialect cannot carry: none, it is canonical.
DROPPED_FIELDS: Final[frozenset[str]] = frozenset()

ADAPTER: Final[Adapter] = DataNestingAdapter(NAME, MODE, id_prefix=None)
