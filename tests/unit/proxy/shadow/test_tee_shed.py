"""A shed tee lets go of its connection even while the client keeps talking.

No sockets: the tee's comparison runs on the test's event loop, fed through the taps the
relays call. Under a steady load the primary's side of the comparison is never empty;
the shed marker must still be taken before that backlog, or a connection whose secondary
was closed to shed work would go on paying for the comparison as long as it is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from strangler.proxy.config.settings import ShadowSettings
from strangler.proxy.shadow.hub import ShadowHub
from strangler.proxy.shadow.tee import Tee
from strangler.proxy.shadow.verdict import Side
from strangler.proxy.telemetry.metrics import Metrics

TURN = b'{"type": "user_message", "payload": {"message": "hi"}}'
STARTED = b'{"type": "agent_started", "payload": {"run_id": "r"}}'


async def test_a_shed_tee_detaches_ahead_of_the_primarys_backlog() -> None:
    tasks: list[asyncio.Task[None]] = []

    def spawn(work: Coroutine[Any, Any, None]) -> None:
        tasks.append(asyncio.ensure_future(work))

    hub = ShadowHub(ShadowSettings(), Metrics(), spawn=spawn)
    tee = Tee(
        hub,
        route="main",
        mode="shadow",
        dialect="main",
        primary=Side.LEGACY,
        client_to_secondary=None,
    )
    comparing = asyncio.ensure_future(tee._compare_loop())
    try:
        # A busy connection: many batches wait (within the queues' bounds, so nothing
        # overflows: an overflowed secondary has failed, and is not shed).
        for _ in range(200):
            tee.client_text(TURN)
            for _ in range(3):
                tee.primary_text(STARTED)
        tee.shed()
        for _ in range(5):
            await asyncio.sleep(0)
        assert tee.detached
        # Detached: what the client and the primary send now is not even queued.
        tee.client_text(TURN)
        tee.primary_text(STARTED)
        assert comparing.done()
    finally:
        comparing.cancel()
        for task in tasks:
            task.cancel()
