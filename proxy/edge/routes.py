"""Which configured route a request path belongs to (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from strangler.proxy.config import Route


class RouteTable:
    """Literal paths are a dict lookup; `{param}` patterns are tried in configured order."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._literal = {r.path: r for r in routes if r.pattern is None}
        self._patterns = [r for r in routes if r.pattern is not None]

    def match(self, path: str) -> Route | None:
        """The route serving `path`, or None. A trailing slash is not a different route."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        route = self._literal.get(path)
        if route is not None:
            return route
        for candidate in self._patterns:
            assert candidate.pattern is not None
            if candidate.pattern.match(path):
                return candidate
        return None
