"""The ``factory`` dialect: ``/ws/factory``, or ``/ws`` picked by ``?mode=`` or User-Agent.

The main generation's envelope (events under ``data``); the greeting reports
``data.mode: "factory"`` and connection ids read ``factory_<hex>``, heartbeats included.
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter
from strangler.legacy_adapters.nesting import DataNestingAdapter

NAME: Final = "factory"
MODE: Final = "factory"
ID_PREFIX: Final = "factory_"
# Turn-event fields this dialect cannot carry: none, its events are canonical.
DROPPED_FIELDS: Final[frozenset[str]] = frozenset()

ADAPTER: Final[Adapter] = DataNestingAdapter(NAME, id_prefix=ID_PREFIX)
