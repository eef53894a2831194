"""The card's life through the issuer, for the control API: status, issue, renew, revoke, expire.

Every operation is the issuer's own (:mod:`jpki_sim.issuer.counter`,
:mod:`jpki_sim.issuer.revocation`), run under the served card's lock with the
service's status date as the clock; a change of the card's contents (new
keys, new certificates) is a new card in the reader: it is removed, changed
and inserted again, so PC/SC clients see it go and come back.

Only JPKI cards have this life; for another profile the state holds the
reader, the PINs and the faults.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

from jpki_sim.control.served import ServedCard
from jpki_sim.errors import UserError
from jpki_sim.issuer import lifecycle
from jpki_sim.issuer.lifecycle import Clock, FixedClock, SystemClock


class StatusDate:
    """The service's status date: the machine's clock, or a fixed day (noon Japan time).

    It is the date card states are given at, renewals and re-issues happen at,
    and OCSP answers and CRLs are signed as of.
    """

    def __init__(self, day: date | None = None) -> None:
        self._lock = threading.Lock()
        self.day = day
        #: bumped at each change (the OCSP cache keys on it)
        self.generation = 0

    @property
    def clock(self) -> Clock:
        day = self.day
        return SystemClock() if day is None else FixedClock(day)

    def set(self, day: date | None) -> None:
        with self._lock:
            self.day = day
            self.generation += 1

    def to_json(self) -> dict[str, Any]:
        clock = self.clock
        return {"date": self.day.isoformat() if self.day else None,
                "today": clock.today().isoformat(), "fixed": self.day is not None}


def parse_day(value: Any, what: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{what}: a YYYY-MM-DD date or null, not {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{what}: {value!r} is not a YYYY-MM-DD date") from None


def _jpki_state(served: ServedCard) -> Any:
    from jpki_sim.profiles.jpki.state import CardState

    state = served.store.state
    if not isinstance(state, CardState):
        raise UserError(f"the {served.profile.name} card has no issuer here (JPKI cards only)")
    return state


def is_jpki(served: ServedCard) -> bool:
    from jpki_sim.profiles.jpki.state import CardState

    return isinstance(served.store.state, CardState)


# ---------------------------------------------------------------- state


def status(served: ServedCard, clock: Clock) -> dict[str, Any]:
    """The card's state for the API: the reader part and, for JPKI, where the card stands."""
    out = served.state_json()
    if not is_jpki(served):
        return out
    from cryptography import x509

    from jpki_sim.issuer import counter

    with served.lock:
        state = served.store.state
        doc = counter.status(state, clock.today())
        for which in ("auth", "sign"):
            cert = doc["certificates"][which]
            slot = state.slot(which)
            if slot is None:
                cert["subject"] = cert["issuer"] = cert["not_before_at"] = None
                cert["grace_ends"] = None
                continue
            parsed = x509.load_der_x509_certificate(slot.cert_der)
            cert["subject"] = parsed.subject.rfc4514_string()
            cert["issuer"] = parsed.issuer.rfc4514_string()
            cert["not_before_at"] = parsed.not_valid_before_utc.isoformat()
            # the eligibility-only grace of health insurance follows the auth certificate
            # (and never outlives the card: the status computed it so)
            cert["grace_ends"] = (doc["health_insurance"]["grace_ends"]
                                  if which == "auth" else None)
    out.update({k: doc[k] for k in ("as_of", "holder", "card", "certificates", "renewal",
                                    "notice", "health_insurance", "revoked")})
    out["ca_dir"] = state.ca_dir
    # the card's front (GET it with the token); the version changes with what it shows
    out["face_image"] = f"/api/cards/{served.index}/face.png?v={face_version(state)}"
    return out


def face_version(state: Any) -> str:
    """A short digest of everything the card's front shows (it names the picture's URL)."""
    import hashlib

    ident = state.identity
    kenmen = state.kenmen
    facts = "\0".join((ident.name, ident.address, ident.birthdate.isoformat(), ident.sex,
                       state.expires.isoformat(), state.security_code, ident.my_number,
                       state.info.municipality.name))
    photo = kenmen.photo if kenmen is not None else b""
    return hashlib.sha256(facts.encode() + b"\0" + photo).hexdigest()[:16]


def face_png(served: ServedCard) -> tuple[str, bytes]:
    """(version, the front of the card as a PNG), drawn from the card's data."""
    from jpki_sim.profiles.jpki.cardfront import FrontData, draw_front

    with served.lock:
        state = _jpki_state(served)
        version = face_version(state)
        data = FrontData.of_state(state)
    return version, draw_front(data)


# ---------------------------------------------------------------- the issuer's operations


def _current_pins(state: Any) -> dict[str, str]:
    return {n: p.value for n, p in state.pins.items() if p.value is not None}


def _pins(body: dict[str, Any], state: Any) -> dict[str, str]:
    pins = body.get("pins")
    if pins is None:
        return _current_pins(state)  # the holder types the right PINs
    if not isinstance(pins, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in pins.items()):
        raise UserError('pins: an object of PIN values, e.g. {"auth": "1234", "sign": "ABC123"}')
    return {**_current_pins(state), **pins}


def _new_card(served: ServedCard, make: Any) -> Any:
    """Remove the card, let ``make`` change it (under the lock), rebuild, insert it again."""
    was_present = served.present
    if was_present:
        served.remove()
    try:
        with served.lock:
            result = make()
            served.rebuild()
    finally:
        if was_present:
            served.insert()
    return result


def renew(served: ServedCard, body: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """Renew (or re-issue) the due certificates at the status date, as ``card renew``."""
    from jpki_sim.issuer import counter

    state = _jpki_state(served)
    pins = _pins(body, state)
    if body.get("new_card"):
        revoked = _new_card(served, lambda: counter.renew_card(served.store, pins=pins,
                                                               clock=clock))
        return {"renewed": "card", "revoked": [format(s, "x") for s in revoked]}
    done = _new_card(served, lambda: counter.renew(served.store, pins=pins, clock=clock))
    return {
        "renewed": {w: {"kind": done.kinds[w], "serial": format(s.serial, "x"),
                        "expires": s.expires.isoformat()} for w, s in done.renewed.items()},
        "revoked": [format(s, "x") for s in done.revoked],
    }


def revoke(served: ServedCard, body: dict[str, Any], clock: Clock) -> dict[str, Any]:
    from jpki_sim.issuer.revocation import revoke_certificate

    _jpki_state(served)
    which = body.get("which")
    reason = body.get("reason", "keyCompromise")
    if not isinstance(which, str) or not isinstance(reason, str):
        raise UserError('revoke: {"which": "auth" or "sign", "reason": "keyCompromise"}')
    with served.lock:
        serial = revoke_certificate(served.store, which, reason=reason, clock=clock)
    served.trace.add("control", None, None, note=f"{which} certificate revoked ({reason})")
    return {"revoked": format(serial, "x"), "which": which, "reason": reason}


def issue(served: ServedCard, body: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """A new card for the same holder (or the one given), issued on ``issued``."""

    state = _jpki_state(served)
    unknown = set(body) - {"issued", "name", "birthdate", "address", "pins", "with_sign"}
    if unknown:
        raise UserError(f"issue: unknown field {sorted(unknown)[0]!r}")
    issued = parse_day(body.get("issued"), "issued") or clock.today()
    pins = _pins(body, state)
    with_sign = body.get("with_sign", state.sign is not None)
    if not isinstance(with_sign, bool):
        raise UserError("with_sign: true or false")
    made = _reissue(served, issued, pins, with_sign, clock, body)
    return {"issued": made.issued.isoformat(), "expires": made.expires.isoformat(),
            "certificates_expire": made.auth.expires.isoformat() if made.auth else None}


def _reissue(served: ServedCard, issued: date, pins: dict[str, str], with_sign: bool,
             clock: Clock, changes: dict[str, Any] | None = None) -> Any:
    import copy

    from jpki_sim.issuer import counter

    state = _jpki_state(served)
    identity = copy.deepcopy(state.identity)
    for key in ("name", "address"):
        if changes and key in changes:
            if not isinstance(changes[key], str):
                raise UserError(f"{key}: a string")
            setattr(identity, key, changes[key])
    if changes and "birthdate" in changes:
        born = parse_day(changes["birthdate"], "birthdate")
        if born is None:
            raise UserError("birthdate: a YYYY-MM-DD date")
        identity.birthdate = born

    def make() -> Any:
        new = counter.issue_card(identity, issued, pins=pins,
                                 with_auth=state.auth is not None, with_sign=with_sign,
                                 ca=state.ca_dir, clock=clock)
        new.history = list(state.history)
        with served.store.transaction():
            served.store.state = new
        return new

    # the CA and the holder are checked before the card leaves the reader
    counter.check_identity(copy.deepcopy(identity))
    return _new_card(served, make)


def expire(served: ServedCard, body: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """Re-issue the card back-dated so its certificates (or the card too) expired by today.

    ``{"what": "certificates"}`` (default): certificates expired, the card still
    valid, as a card whose holder missed the renewal; ``{"what": "card"}``: the
    card expired as well. Same holder and PINs; renew brings it back.
    """
    state = _jpki_state(served)
    what = body.get("what", "certificates")
    if what not in ("certificates", "card"):
        raise UserError('expire: {"what": "certificates"} or {"what": "card"}')
    today = clock.today()
    issued = _backdated(state.identity, today, what)
    made = _reissue(served, issued, _current_pins(state), state.sign is not None, clock)
    return {"issued": issued.isoformat(), "expires": made.expires.isoformat(),
            "certificates_expire": made.auth.expires.isoformat() if made.auth else None}


def _backdated(identity: Any, today: date, what: str) -> date:
    """The latest issue day whose certificates (and card, for ``card``) are expired by ``today``."""
    from jpki_sim.issuer.counter import FIRST_ISSUE_DAY

    born = identity.birthdate
    day = today - timedelta(days=365 * (5 if what == "certificates" else 10) - 400)
    last = max(FIRST_ISSUE_DAY, born)
    while day >= last:
        try:
            card_end = lifecycle.card_expiry(born, day, identity.stay_until)
        except ValueError:
            break
        cert_end = lifecycle.certificate_expiry(born, day, card_end)
        if cert_end < today and (card_end < today if what == "card" else card_end >= today):
            return day
        day -= timedelta(days=1)
    if what == "certificates":
        raise UserError("no earlier card of this holder has expired certificates on a valid "
                        "card (a minor's certificates run to the card's end): expire the card")
    raise UserError("the holder is too young for an expired card")
