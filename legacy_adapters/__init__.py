"""Dialect adapters: translation between each legacy route's wire format and the
canonical event model the unified router speaks.

A route whose client dialect equals its backend's speaks through the identity: the
relay passes its frames without parsing them, so it costs nothing.
"""
