"""A shadow user's id never reaches /shadow or the mismatch log, whatever key or text
carries it: the connection's identities travel from the handshake to the redactor.
The rules one by one: tests/unit/proxy/shadow/test_redact.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from tests.functional.conftest import StartProxy, token, wait_for

pytestmark = pytest.mark.timeout(30)

SHADOW_FLAGS = """
flags:
  unified_router:
    routes: [main, main_user]
    targets: {shadow: [samantha]}
"""

# The scriptable backends echo every client frame, so the transcript holds what the
# client sent: its user id under the keys and texts the old exact-name rule missed.
LEAKY = {
    "type": "user_message",
    "payload": {
        "userId": "samantha",
        "USER_ID": "samantha",
        "user-id": "samantha",
        "sub": "samantha",
        "username": "samantha",
        "user": {"name": "Samantha"},
        "note": "samantha's session at /users/samantha/",
        "samantha": "a key that is the id",
        "path_id": "u-4711",
    },
}


async def test_shadow_transcripts_hold_no_user_id_under_any_key(
    start_proxy: StartProxy, tmp_path: Path
) -> None:
    log = tmp_path / "mismatches.jsonl"
    proxy = await start_proxy(
        SHADOW_FLAGS,
        extra=f"shadow: {{compare: {{timeout_floor: 0.2}}, mismatch_log: {{path: {log}}}}}",
    )
    admin = f"http://127.0.0.1:{proxy.running.admin_port}"
    headers = {"Authorization": f"Bearer {token('samantha')}"}
    async with aiohttp.ClientSession() as s:
        # /ws/{user_id}: the id in the path is one of the connection's identities too.
        async with s.ws_connect(proxy.url("/ws/u-4711"), headers=headers) as ws:
            await ws.send_str(json.dumps(LEAKY))
            echoed = json.loads((await ws.receive()).data)
            assert "samantha" in json.dumps(echoed)  # the client itself gets its frames

        async def recorded() -> bool:
            async with s.get(f"{admin}/shadow") as r:
                return bool((await r.json())["recent_mismatches"])

        await wait_for(recorded)
        async with s.get(f"{admin}/shadow") as r:
            state = await r.text()
    assert "[redacted]" in state  # the sample is there, with the frame in it
    assert re.search("samantha|u-4711", state, re.IGNORECASE) is None, state
    await proxy.running.stop()  # flushes the mismatch log
    written = log.read_text()
    assert "[redacted]" in written
    assert re.search("samantha|u-4711", written, re.IGNORECASE) is None, written
