"""Settings shared by every test directory."""

import os

from hypothesis import settings

# Property tests explore new examples on every local run; CI replays a fixed sequence so
# that a landing is decided by the change, not by the draw. A failure found locally is
# printed with its example, to be pinned with @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
