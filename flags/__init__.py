"""Feature flags: which mode (legacy, shadow, live, unified) a connection gets.

Modules, one concept each:

- ``flags.model``: the immutable flag file model (``Mode``, ``Reason``, ``Flag``, ``FlagSet``).
- ``flags.bucketing``: the deterministic user bucket shared by every proxy instance.
- ``flags.evaluate``: the pure, hot-path decision for one route and user.
- ``flags.load``: the YAML schema, its validation and ``FlagFileError``.
- ``flags.lint``: every problem in a flag file at its line (``strangler flags check``).
- ``flags.watch``: the reloader that follows the file on disk (asyncio, no aiohttp).
"""
