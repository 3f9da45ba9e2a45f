"""Which adapter serves a dialect, and which dialect a connection speaks (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from strangler.legacy_adapters import factory, flat, isolated, legacy, main, main_payload
from strangler.legacy_adapters.base import Adapter, Greeting

_MODULES: Final = (main, main_payload, flat, factory, isolated, legacy)
_ADAPTERS: Final[Mapping[str, Adapter]] = MappingProxyType(
    {module.NAME: module.ADAPTER for module in _MODULES}
)
_MODES: Final[Mapping[str, str]] = MappingProxyType(
    {module.NAME: module.MODE for module in _MODULES}
)
_GREETINGS: Final[Mapping[str, Greeting]] = MappingProxyType(
    {module.NAME: module.GREETING for module in _MODULES}
)

DIALECTS: Final = frozenset(_ADAPTERS)
BACKENDS: Final = frozenset({"legacy", "unified"})
# The dialect the unified router speaks: canonical is the newest main generation.
CANONICAL_DIALECT: Final = main.NAME

# The legacy /ws rule: ?mode= picks one of these (case-insensitive) ...
_MODE_PARAM_DIALECTS: Final = frozenset({"main", "factory", "isolated", "legacy"})
# ... else a User-Agent containing one of these words, tried in this order.
_USER_AGENT_DIALECTS: Final = ("factory", "isolated")


def adapter(dialect: str) -> Adapter:
    """The adapter of ``dialect``; ValueError for an unknown one."""
    try:
        return _ADAPTERS[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}") from None


def needs_translation(client_dialect: str, backend: str, greeting: Greeting | None = None) -> bool:
    """Whether frames between a client of ``client_dialect`` and ``backend`` need an adapter.

    The legacy backend speaks every dialect itself, in the greeting its route is set up
    with; the unified router speaks canonical, which is the ``main`` dialect with its
    default greeting. ``greeting`` is the route's configured one (None: the dialect's).
    """
    if client_dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {client_dialect!r}")
    if backend == "legacy":
        return False
    if backend == "unified":
        if client_dialect != CANONICAL_DIALECT:
            return True
        return greeting is not None and greeting != _GREETINGS[CANONICAL_DIALECT]
    raise ValueError(f"unknown backend {backend!r}")


def select_dialect(route_dialect: str, mode_param: str | None, user_agent: str | None) -> str:
    """The dialect a connection speaks: a ``main`` route's ``?mode=`` wins over its User-Agent.

    Routes of any other dialect keep theirs (legacy applied the rule on ``/ws`` only).
    """
    if route_dialect != main.NAME:
        return route_dialect
    if mode_param is not None:
        wanted = mode_param.lower()
        if wanted in _MODE_PARAM_DIALECTS:
            return wanted
    if user_agent:
        agent = user_agent.lower()
        for dialect in _USER_AGENT_DIALECTS:
            if dialect in agent:
                return dialect
    return route_dialect


def default_greeting(dialect: str) -> Greeting:
    """The greeting shape a route of ``dialect`` sends unless configured otherwise."""
    try:
        return _GREETINGS[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}") from None


def connection_mode(dialect: str) -> str:
    """The ``data.mode`` a connection_established of ``dialect`` reports."""
    try:
        return _MODES[dialect]
    except KeyError:
        raise ValueError(f"unknown dialect {dialect!r}") from None
