"""Feature flags: which mode (legacy, shadow, live, unified) a connection gets.

Modules, one concept each:

- ``flags.model``: the immutable flag file model (``Mode``, ``Reason``, ``Flag``, ``FlagSet``).
- ``flags.bucketing``: the deterministic user bucket shared by every proxy instance.
- ``flags.evaluate``: the pure, hot-path decision for one route and user.
- ``flags.schema``: the flag file's schema, the reference release managers read.
- ``flags.load``: bytes or a path in, a validated ``FlagSet`` out (or ``FlagFileError``),
  over ``flags.yaml_source`` (YAML with line marks), ``flags.validate`` (with
  ``validate_rules`` and ``validate_values``), ``flags.report`` (how problems are told)
  and ``flags.instants`` (``effective_at`` times).
- ``flags.lint``: every problem in a flag file at its line (``strangler flags check``).
- ``flags.watch``: the reloader that follows the file on disk (asyncio, no aiohttp).
"""
