"""The ``factory`` dialect: ``/ws/factory``, or ``/ws`` picked by ``?mode=`` or User-Agent.

The main generation's envelope (events under ``data``); the greeting reports
``data.mode: "factory"`` and connection ids read ``factory_<hex>``, heartbeats included (a
route configured with ``greeting: system_message`` gets the older greeting and its
``ws_<ms>_<hex>`` id instead).
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter, Greeting
from strangler.legacy_adapters.nesting import DataNestingAdapter

NAME: Final = "factory"
MODE: Final = "factory"
ID_PREFIX: Final = "factory_"
# The first frame unless the route configures another (strangler.yaml `greeting:`).
GREETING: Final[Greeting] = "connection_established"
# Turn-event fields this dialect cannot carry: none, its events are canonical.
DROPPED_FIELDS: Final[frozenset[str]] = frozenset()

ADAPTER: Final[Adapter] = DataNestingAdapter(NAME, MODE, id_prefix=ID_PREFIX)
