"""Revoking one of a card's certificates at the test CA, as a relying party's tester asks.

The counter revokes certificates as a side effect (renewal, a move, a returned
card: :mod:`.counter`); this is the direct act: the holder reports the card
lost or its key compromised. The CA records the revocation (OCSP and CRLs say
so from then on) and the card file keeps it in its history, as the counter's
revocations are kept.
"""

from __future__ import annotations

import os

from jpki_sim.card.store import CardStore
from jpki_sim.errors import UserError
from jpki_sim.issuer import lifecycle
from jpki_sim.issuer.ca import REASONS, TestCA
from jpki_sim.issuer.counter import open_ca, revoked_serials
from jpki_sim.issuer.lifecycle import Clock
from jpki_sim.profiles.jpki.state import CardState


def revoke_certificate(
    store: CardStore[CardState],
    which: str,
    *,
    reason: str = "keyCompromise",
    ca: TestCA | str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
) -> int:
    """Revoke the card's ``which`` certificate (``auth`` or ``sign``) now; its serial.

    Refused when the card carries no such certificate or it is revoked already.
    """
    if which not in ("auth", "sign"):
        raise UserError(f"no certificate {which!r} (auth or sign)")
    if reason not in REASONS:
        raise UserError(f"unknown revocation reason {reason!r} (one of {', '.join(REASONS)})")
    clock = clock or lifecycle.SystemClock()
    # one transaction: the certificate revoked is the one the card file holds now
    with store.transaction() as state:
        slot = state.slot(which)
        if slot is None:
            raise UserError(f"the card carries no {which} certificate")
        if slot.serial in revoked_serials(state):
            raise UserError(f"the {which} certificate ({slot.serial:x}) is revoked already")
        authority = open_ca(ca, state)
        rec = authority.revoke(slot.serial, at=clock.now(), reason=reason)
        assert rec.revoked_at is not None
        state.history.append(
            {
                "which": which,
                "serial": format(slot.serial, "x"),
                "revoked_at": rec.revoked_at.isoformat(),
                "reason": rec.reason,
                "expires": slot.expires.isoformat(),
            }
        )
    return slot.serial
