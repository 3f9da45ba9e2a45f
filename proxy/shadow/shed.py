"""When shadow work gives way to the primary: the shedding levels and when to change them.

Pure code: no sockets, no asyncio, no clock. The shadow hub (proxy/shadow/hub.py) takes
a sample every ``sample_ms`` of three things: how late the event loop ran a timer (the
lag every primary frame waits as well), how much of the time since the last sample
the comparison took, and how much of its one core the event loop's thread used. The last
is what protects the primary by design: a process with no spare CPU queues the
primary's frames behind the secondary's, however small the comparison's own share
(the secondary's socket work is not the comparison's). `Shedder.sample` turns them
into a level, and at the last level into a number of secondaries to close.

The levels shed what loses the least first, so every verdict that is still given is
judged from whole data:

- ``refuse``: no new secondary opens (the connection is served as usual, uncompared);
- ``skip``: turns that start now are not compared; each says ``shed`` and nothing else
  (the turns already being compared finish as they would have);
- ``close``: every sample still over budget closes ``close_share`` of the open
  secondaries (the newest first: the oldest have the most comparison history), and a
  sample four times over the lag budget closes them all; their unfinished turns say
  ``shed``, and their connections go on uncompared.

Each level includes the ones before it. Shedding steps up one level after
``escalate_after`` samples over budget in a row, or at once on a sample whose lag is
four times its budget or more (a sudden load: waiting for a run of such samples at each
level let a queue of primary frames build for most of a second, which an open load
then has to drain), and back one level after
``recover_after`` calm samples in a row (lag and the comparison's share under half
their budget, the process under four fifths of its), so work only comes back once the
process has room for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from strangler.proxy.config.settings import ShedSettings

# A sample this many times over the lag budget steps shedding up without waiting.
FAR_OVER = 4


class Level(IntEnum):
    """How much shadow work is being shed; each level includes the ones below it."""

    NONE = 0
    REFUSE = 1
    SKIP = 2
    CLOSE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Reading:
    """What one sample decided."""

    level: Level
    over: bool
    """This sample was over budget."""
    close: int = 0
    """Open secondaries to close now (only at ``close``)."""


class Shedder:
    """The shedding level, moved by samples of loop lag and the comparison's time."""

    __slots__ = ("_calm", "_over", "_settings", "lag", "level", "process", "share")

    def __init__(self, settings: ShedSettings) -> None:
        self._settings = settings
        self.level = Level.NONE
        self._over = 0  # samples over budget in a row
        self._calm = 0  # calm samples in a row
        self.lag = 0.0  # the last sample's, for the status page
        self.share = 0.0
        self.process = 0.0

    def sample(
        self, lag: float, busy: float, cpu: float, elapsed: float, secondaries: int
    ) -> Reading:
        """One sample: ``lag`` seconds late; in the last ``elapsed`` seconds, ``busy``
        seconds of comparison and ``cpu`` seconds of the loop thread's CPU time;
        ``secondaries`` open now."""
        settings = self._settings
        if not settings.enabled:
            return Reading(Level.NONE, False)
        max_lag = settings.max_loop_lag_ms / 1000
        share = busy / elapsed if elapsed > 0 else 0.0
        # One thread uses at most its core: a reading over 1.0 is the clocks' jitter, and
        # a budget of 1.0 must mean "never shed for CPU".
        process = min(1.0, cpu / elapsed) if elapsed > 0 else 0.0
        self.lag, self.share, self.process = lag, share, process
        max_share, max_process = settings.max_shadow_cpu_share, settings.max_process_cpu_share
        over = lag > max_lag or share > max_share or process > max_process
        far = lag >= max_lag * FAR_OVER
        calm = lag < max_lag / 2 and share < max_share / 2 and process < max_process * 0.8
        if over:
            self._calm = 0
            self._over += 1
            if (far or self._over >= settings.escalate_after) and self.level < Level.CLOSE:
                self.level = Level(self.level + 1)
                self._over = 0
                # A step up takes effect from the next sample: what it sheds has not
                # had time to show yet, so nothing is closed on the step itself.
                return Reading(self.level, True)
        else:
            self._over = 0
            self._calm = self._calm + 1 if calm else 0
            if self._calm >= settings.recover_after and self.level > Level.NONE:
                self.level = Level(self.level - 1)
                self._calm = 0
        close = 0
        if over and self.level is Level.CLOSE and secondaries > 0:
            # Far behind at the last level, every secondary goes: a share per sample
            # left the rest costing the primary for several more samples.
            share = 1.0 if far else settings.close_share
            close = max(1, math.ceil(secondaries * share))
        return Reading(self.level, over, close)
