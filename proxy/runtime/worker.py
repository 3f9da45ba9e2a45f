"""A worker of `strangler run --workers N`: the proxy on the shared public port, its admin
on a private loopback port, announced to the supervisor once both are bound."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import warnings

from strangler.proxy.config import Address, Config
from strangler.proxy.runtime.server import Running, serve_forever

log = logging.getLogger("strangler.workers")

# A worker announces itself on stdout with this line once both listeners are bound.
READY_PREFIX = "strangler-worker-ready "


def worker_config(config: Config) -> Config:
    """A worker's config: its own admin listener on a free loopback port."""
    return dataclasses.replace(config, admin_listen=Address("127.0.0.1", 0))


async def run_worker(config: Config, index: int) -> None:
    """Serve as worker `index`: shared public port, private admin port, announced."""
    # Removing or clearing a labelled series cannot reach the shared files, so its
    # last value stays in the aggregate (README, "Multiple workers"); said once there,
    # not on every flag change.
    warnings.filterwarnings(
        "ignore", r"(Removal of|Clearing) labels has not been implemented", UserWarning
    )
    parent = os.getppid()
    watchers: set[asyncio.Task[None]] = set()

    def started(running: Running) -> None:
        announce = {"worker": index, "pid": os.getpid(), "admin_port": running.admin_port}
        print(READY_PREFIX + json.dumps(announce), flush=True)
        watchers.add(asyncio.create_task(_stop_when_orphaned(parent)))

    await serve_forever(worker_config(config), reuse_port=True, on_started=started)
    for task in watchers:
        task.cancel()


async def _stop_when_orphaned(parent: int) -> None:
    # A worker whose supervisor was killed would hold the port with nobody to restart
    # or stop it: drain and exit as on SIGTERM.
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of the parent's death
        await asyncio.sleep(1.0)
    log.warning("supervisor gone, draining")
    os.kill(os.getpid(), signal.SIGTERM)
