"""Where a card stands on a day: due renewals and the ``card status --json`` document.

Pure functions of a :class:`~jpki_sim.profiles.jpki.state.CardState` and a
date, by the rules of :mod:`jpki_sim.issuer.lifecycle`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timezone
from typing import Any

from jpki_sim.issuer import chip, lifecycle
from jpki_sim.profiles.jpki.state import CardState

#: what ``card status`` says of anything on a day before it was issued
NOT_YET_VALID = "not yet valid"


def revoked_serials(state: CardState) -> set[int]:
    return {int(h["serial"], 16) for h in state.history if isinstance(h, dict) and "serial" in h}


def is_revoked(state: CardState, which: str) -> bool:
    slot = state.slot(which)
    return slot is not None and slot.serial in revoked_serials(state)


@dataclass(frozen=True)
class Due:
    """Why a certificate may (or may not yet) be renewed at the counter on a day."""

    which: str
    due: bool
    reason: str  # "renewal", "re-issue", "revoked", "not yet", "card's expiry"
    opens: date | None


def renewal_due(state: CardState, at: date) -> dict[str, Due]:
    out: dict[str, Due] = {}
    for which in ("auth", "sign"):
        slot = state.slot(which)
        if slot is None:
            continue
        opens = lifecycle.renewal_opens(slot.expires)
        if is_revoked(state, which):
            out[which] = Due(which, True, "revoked", None)
        elif slot.expires >= state.expires:
            # a new certificate could not outlive this one: the card must be renewed
            out[which] = Due(which, False, "card's expiry", opens)
        elif at > slot.expires:
            out[which] = Due(which, True, "re-issue", opens)
        elif at >= opens:
            out[which] = Due(which, True, "renewal", opens)
        else:
            out[which] = Due(which, False, "not yet", opens)
    return out


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def status(state: CardState, at: date) -> dict[str, Any]:
    """Where the card stands on ``at``: the stable ``card status --json`` document.

    On a day before the card was issued every dated item says so: the card and
    each certificate ``not_yet_valid``, the renewal window ``not yet valid``,
    health insurance ``not_yet_valid``.
    """
    revoked = revoked_serials(state)
    before_issue = at < state.issued
    certs: dict[str, Any] = {}
    for which in ("auth", "sign"):
        slot = state.slot(which)
        if slot is None:
            certs[which] = {
                "present": False,
                "expires": None,
                "expired": None,
                "not_yet_valid": None,
                "revoked": None,
                "serial": None,
                "not_before": None,
                "renewal_opens": None,
            }
            continue
        certs[which] = {
            "present": True,
            "serial": format(slot.serial, "x"),
            "not_before": slot.not_before.isoformat(),
            "expires": slot.expires.isoformat(),
            "expires_at": lifecycle.expires_at(slot.expires).astimezone(timezone.utc).isoformat(),
            "expired": lifecycle.is_expired(slot.expires, at),
            "not_yet_valid": at < slot.not_before,
            "revoked": slot.serial in revoked,
            "renewal_opens": lifecycle.renewal_opens(slot.expires).isoformat(),
        }
    cert_expiries = [s.expires for s in (state.auth, state.sign) if s is not None]
    due = renewal_due(state, at)
    card_opens = lifecycle.renewal_opens(state.expires)
    if cert_expiries and any(d.reason != "card's expiry" for d in due.values()):
        renewal_for = "certificates"
        opens = lifecycle.renewal_opens(min(cert_expiries))
    else:
        renewal_for = "card"
        opens = card_opens
    if before_issue:
        window = NOT_YET_VALID
    elif at > state.expires:
        window = "card expired"
    elif any(d.due for d in due.values()):
        window = "open"
    elif renewal_for == "card" and at >= card_opens:
        window = "open"
    else:
        window = "not yet"
    earliest = min([*cert_expiries, state.expires])
    concerns = []
    if cert_expiries and min(cert_expiries) == earliest:
        concerns.append("certificates")
    if state.expires == earliest:
        concerns.append("card")
    notice_for = " and ".join(concerns)
    auth = state.auth
    hi = lifecycle.health_insurance(
        auth.expires if auth else None,
        at,
        revoked=auth is not None and auth.serial in revoked,
        card_expires=state.expires,
        valid_from=auth.not_before if auth else None,
    )
    return {
        "as_of": at.isoformat(),
        "holder": {
            "name": state.identity.name,
            "birthdate": state.identity.birthdate.isoformat(),
            "sex": state.identity.sex,
            "address": state.identity.address,
            "age": lifecycle.age_on(state.identity.birthdate, at)
            if at >= state.identity.birthdate
            else None,
        },
        "card": {
            "issued": state.issued.isoformat(),
            "expires": state.expires.isoformat(),
            "expired": at > state.expires,
            "not_yet_valid": before_issue,
            "renewal_opens": card_opens.isoformat(),
            "application_id": state.application_id,
            "security_code": state.security_code,
            "stay_until": state.identity.stay_until.isoformat()
            if state.identity.stay_until
            else None,
        },
        "certificates": certs,
        "chip": chip.status(state),
        "renewal": {
            "for": renewal_for,
            "opens": opens.isoformat(),
            "window": window,
            "due": [] if before_issue else sorted(w for w, d in due.items() if d.due),
        },
        "notice": {
            "from": lifecycle.notice_from(earliest).isoformat(),
            "for": notice_for,
            "expiry": earliest.isoformat(),
        },
        "health_insurance": {
            "state": hi.state.value,
            "expiring_soon_from": _iso(hi.expiring_soon_from),
            "grace_ends": _iso(hi.grace_ends),
        },
        "pins": {
            name: {
                "set": pin.value is not None,
                "tries_left": pin.tries_left if pin.value is not None else None,
                "max_tries": pin.max_tries,
                "blocked": pin.blocked,
            }
            for name, pin in state.pins.items()
        },
        "revoked": list(state.history),
    }
