"""Dialect adapters: translation between each legacy route's wire format and the
canonical event model the unified router speaks.

A route whose client dialect equals its backend's speaks through the identity: the
relay passes its frames without parsing them, so it costs nothing.

Modules: ``canonical`` (the model), ``base`` (the Adapter protocol and Context),
``nesting`` (the envelope transforms the dialects share), one module per dialect
(``main``, ``main_payload``, ``flat``, ``factory``, ``isolated``, ``legacy``, each
exporting ``ADAPTER``), ``registry`` (dialect selection) and ``translate`` (the
per-connection, bytes-level Translator). See docs/PROTOCOL.md.
"""
