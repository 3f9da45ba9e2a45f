"""The ticket rule: a ticket goes only to a backend that redeems it, and to one only."""

from __future__ import annotations

import pytest

from strangler.flags.evaluate import Decision
from strangler.flags.model import Mode, Reason
from strangler.proxy.release.control import ticket_decision


def decided(mode: Mode) -> Decision:
    return Decision(mode, Reason.ROLLOUT, "f", 42, None)


@pytest.mark.parametrize("mode", list(Mode))
def test_without_a_redeeming_router_every_ticket_goes_to_legacy(mode: Mode) -> None:
    after = ticket_decision(decided(mode), redeems_tickets=False)
    assert after.mode is Mode.LEGACY
    assert after.reason is (Reason.ROLLOUT if mode is Mode.LEGACY else Reason.TICKET)


@pytest.mark.parametrize(
    ("mode", "served"),
    [
        (Mode.LEGACY, Mode.LEGACY),
        (Mode.UNIFIED, Mode.UNIFIED),
        (Mode.SHADOW, Mode.LEGACY),  # its primary alone: the secondary would redeem it again
        (Mode.LIVE, Mode.UNIFIED),
    ],
)
def test_with_a_redeeming_router_comparison_modes_keep_their_primary_alone(
    mode: Mode, served: Mode
) -> None:
    after = ticket_decision(decided(mode), redeems_tickets=True)
    assert after.mode is served
    assert after.reason is (Reason.TICKET if served is not mode else Reason.ROLLOUT)
