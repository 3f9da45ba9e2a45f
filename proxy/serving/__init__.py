"""Serving one admitted connection: dial the backend its mode names (falling back to
legacy when allowed), then run the byte tunnel or the per-frame relay, with the shadow
tee in the comparison modes.
"""
