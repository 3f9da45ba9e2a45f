"""The ``main`` dialect (``/ws``, ``/api/v1/websocket``): the canonical protocol itself.

Events pass unchanged; only connection_established reports the connection's data.mode.
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter
from strangler.legacy_adapters.nesting import DataNestingAdapter

NAME: Final = "main"
MODE: Final = "main"
# Turn-event fields this dialect cannot carry: none, it is canonical.
DROPPED_FIELDS: Final[frozenset[str]] = frozenset()

ADAPTER: Final[Adapter] = DataNestingAdapter(NAME, id_prefix=None)
