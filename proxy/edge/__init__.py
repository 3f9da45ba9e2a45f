"""What a client meets first, before any backend is dialled: the route its path matches,
the upgrade checks, admission (connection limits, then who the client is), and each
legacy route's own way of saying no.
"""
