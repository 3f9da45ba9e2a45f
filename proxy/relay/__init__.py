"""The only code that pumps sockets: the byte tunnel, the per-frame relay, the upstream
handshakes, plain-HTTP passthrough, and the set of open connections.

No business rule lives here: what to relay, and to whom, is decided above.
"""
