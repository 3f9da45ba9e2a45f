"""strangler: a feature-flagged strangler proxy for WebSocket traffic."""

__version__ = "0.1.0"
