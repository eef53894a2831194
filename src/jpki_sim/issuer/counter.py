"""What the municipal counter does with a card: issue, renew, re-issue, reset a PIN, record a move.

Everything here works on :class:`jpki_sim.state.CardState` (through a
:class:`~jpki_sim.state.CardStore` when the change must reach the file), the way
the counter terminal writes onto the chip; it never touches the card engine.
Dates come from an injected :class:`jpki_sim.lifecycle.Clock`, keys from an
injected key source, so tests can put a card in any state of its life quickly.
"""

from __future__ import annotations

import copy
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from jpki_sim.card.pins import Attempt, RetryCounter
from jpki_sim.card.store import CardStore
from jpki_sim.errors import UserError
from jpki_sim.issuer import chip, kenmen, keystock, lifecycle
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.certprofile import Which
from jpki_sim.issuer.keystock import KeyPool as KeyPool
from jpki_sim.issuer.keystock import KeySource as KeySource
from jpki_sim.issuer.keystock import generate_key as generate_key
from jpki_sim.issuer.keystock import private_pem
from jpki_sim.issuer.lifecycle import Clock

# where a card stands: kept importable from here, as the counter's
from jpki_sim.issuer.status import Due as Due
from jpki_sim.issuer.status import is_revoked, renewal_due, revoked_serials
from jpki_sim.issuer.status import status as status
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki import mynumber
from jpki_sim.profiles.jpki.state import (
    SEX_CODES,
    CardState,
    Identity,
    KeySlot,
)

#: the seeds' sample My Number 0123 4567 8901 fails the check digit (it should end in 3)
DEFAULT_MY_NUMBER = "012345678903"
#: Otaru city hall's address (seed 003 is Otaru's leaflet): nobody lives there
DEFAULT_ADDRESS = "北海道小樽市花園２丁目１２番１号"
#: local government code of Otaru (JIS X 0402), the first five digits of an application ID
DEFAULT_MUNICIPALITY = "01203"

#: issue dates the test roots can cover (valid 2000-01-01 to 2099-12-31; a card
#: lives at most 10 years). Real cards exist since 2016, but simulated histories
#: (a card that expired long ago) may start earlier.
FIRST_ISSUE_DAY = date(2000, 1, 1)
LAST_ISSUE_DAY = date(2089, 12, 31)

#: minors under this age normally get no signature certificate (seeds: domain.md)
SIGN_CERT_FROM_AGE = 15

REASON_RENEWED = "superseded"
REASON_FACTS_CHANGED = "affiliationChanged"
REASON_CARD_RETURNED = "cessationOfOperation"


def default_identity() -> Identity:
    """The seeds' fictional holder: 番号　花子, born 平成5年3月31日, female."""
    return Identity(
        name="番号　花子",
        birthdate=date(1993, 3, 31),
        sex="2",
        address=DEFAULT_ADDRESS,
        my_number=DEFAULT_MY_NUMBER,
    )


# ---------------------------------------------------------------- keys (keystock's)




# ---------------------------------------------------------------- checking input


#: the longest name and address the issuer takes (characters)
MAX_NAME = 100
MAX_ADDRESS = 200


def check_name(name: str) -> str:
    if not name.strip():
        raise UserError("the holder's name is empty")
    if len(name) > MAX_NAME:
        raise UserError(f"a name has at most {MAX_NAME} characters")
    _check_text(name, "name")
    return name


def check_address(address: str) -> str:
    if not address.strip():
        raise UserError("the holder's address is empty")
    if len(address) > MAX_ADDRESS:
        raise UserError(f"an address has at most {MAX_ADDRESS} characters")
    _check_text(address, "address")
    return address


def _check_text(text: str, what: str) -> None:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise UserError(f"the {what} is not valid UTF-8 text")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise UserError(f"the {what} holds a control character")


def check_birthdate(born: date) -> date:
    """A birth date with an era code: from the first day of Meiji (1868-10-23) on."""
    if born < lifecycle.FIRST_ERA_DAY:
        raise UserError(
            f"birth date {born} is before the Meiji era ({lifecycle.FIRST_ERA_DAY}): "
            "the card's data has no era code for it"
        )
    return born


def check_sex(sex: str) -> str:
    if sex not in SEX_CODES:
        raise UserError(f"sex must be one of {', '.join(SEX_CODES)} (ISO 5218), got {sex!r}")
    return sex


def check_identity(identity: Identity) -> Identity:
    """Validate and normalise the holder's facts; bad input raises UserError."""
    try:
        number = mynumber.normalize(identity.my_number)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_sex(identity.sex)
    check_name(identity.name)
    check_address(identity.address)
    check_birthdate(identity.birthdate)
    identity.my_number = number
    return identity


def check_pin(which: str, pin: str) -> str:
    try:
        jpki.PIN_POLICIES[which].check(pin)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return pin


# ---------------------------------------------------------------- issue


def open_ca(ca: TestCA | str | os.PathLike[str] | None, state: CardState | None = None) -> TestCA:
    """The CA to work with: the one given, else the card's own, else the default one.

    With a card, the CA must be the one that issued it (same roots): renewing or
    revoking needs the issuer's records. A missing CA is not created for a card.
    """
    if isinstance(ca, TestCA):
        authority = ca
    elif ca is not None:
        authority = TestCA.open(ca, create=state is None)
    elif state is not None and state.ca_dir:
        authority = TestCA.open(state.ca_dir, create=False)
    else:
        authority = TestCA.open(create=state is None)
    if state is not None and (
        authority.auth.cert_der != state.auth_ca_der or authority.sign.cert_der != state.sign_ca_der
    ):
        raise UserError(
            f"the card was not issued by the test CA in {authority.directory} "
            "(its CA certificates differ): give the right one with --ca DIR"
        )
    return authority


def application_id(issued: date, municipality: str = DEFAULT_MUNICIPALITY) -> str:
    """A 23-digit application ID (申請書ID) shaped like the seeds' samples.

    The seeds' IDs read as a 5-digit local government code, the date
    (YYYYMMDD) and a 10-digit sequence number: 15586 20190927 0000003058.
    """
    if len(municipality) != 5 or not municipality.isdigit():
        raise UserError("a municipality code has 5 digits")
    return f"{municipality}{issued:%Y%m%d}{secrets.randbelow(10**10):010d}"


def issue_card(
    identity: Identity,
    issued: date | None = None,
    *,
    pins: Mapping[str, str] | None = None,
    with_auth: bool = True,
    with_sign: bool | None = None,
    ca: TestCA | str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    keys: KeySource | None = None,
    municipality: str = DEFAULT_MUNICIPALITY,
    municipality_name: str | None = None,
    atr: str | None = None,
    token_label: str | None = None,
    card_in_window: bool = False,
    cert_in_window: Mapping[str, bool] | None = None,
    photo: bytes | None = None,
    card_photo: bytes | None = None,
) -> CardState:
    """A new card from the test CA, with the lifecycle's dates.

    ``issued`` defaults to the clock's today. ``with_sign`` None follows the
    practice of the seeds: a signature certificate from age 15. A PIN whose
    certificate is absent is never set (``value`` None). ``pins`` name holder
    secrets; the chip's facts (serial, municipality, variant) are :mod:`.chip`'s.
    The card is returned, not saved: the caller decides where it lives. ``card_in_window`` (the card
    renews one inside its renewal window) and ``cert_in_window`` (per
    certificate: it renews one inside its window) count one birthday more.
    ``photo``: any image for the card face (else a synthetic face); ``card_photo``:
    one as the card stores it (the old card's, at renewal). Keys: ``keys``, else
    the CA's key stock (:mod:`.keystock`).
    """
    clock = clock or lifecycle.SystemClock()
    identity = check_identity(identity)
    day = issued or clock.today()
    if day < identity.birthdate:
        raise UserError(f"issue date {day} is before the birth date {identity.birthdate}")
    if not FIRST_ISSUE_DAY <= day <= LAST_ISSUE_DAY:
        raise UserError(
            f"issue date {day} is outside {FIRST_ISSUE_DAY} to {LAST_ISSUE_DAY}, "
            "the years the test CA's roots cover"
        )
    try:
        card_expires = lifecycle.card_expiry(
            identity.birthdate, day, identity.stay_until, in_window=card_in_window
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if card_expires <= day:
        raise UserError(
            f"the period of stay ends on {card_expires}: no card can be issued on {day}"
        )
    if with_sign is None:
        with_sign = lifecycle.age_on(identity.birthdate, day) >= SIGN_CERT_FROM_AGE
    chosen = chip.pin_values(pins)
    for which, value in chosen.items():
        check_pin(which, value)
    town = chip.municipality(municipality, municipality_name)
    chip.check_variant(atr, token_label)
    if photo is not None and card_photo is None:
        card_photo = kenmen.card_photo(photo)  # a bad image is refused before anything is issued
    authority = open_ca(ca)
    windows = cert_in_window or {}
    auth_expires = lifecycle.certificate_expiry(
        identity.birthdate, day, card_expires, in_window=windows.get("auth", False)
    )
    sign_expires = lifecycle.certificate_expiry(
        identity.birthdate, day, card_expires, in_window=windows.get("sign", False)
    )
    if with_auth:
        sign_expires = min(sign_expires, auth_expires)  # never past the auth certificate's
    keys = keystock.keys_for(keystock.KEYS_PER_CARD - (not with_auth) - (not with_sign),
                             source=keys, ca_directory=authority.directory)

    auth = _new_slot(authority, "auth", identity, day, auth_expires, keys) if with_auth else None
    sign = _new_slot(authority, "sign", identity, day, sign_expires, keys) if with_sign else None
    state = CardState(
        identity=identity,
        issued=day,
        expires=card_expires,
        application_id=application_id(day, town.code),
        security_code=f"{secrets.randbelow(10**4):04d}",
        auth=auth,
        sign=sign,
        auth_ca_der=authority.auth.cert_der,
        sign_ca_der=authority.sign.cert_der,
        pins=chip.initial_pins(chosen, auth=auth is not None, sign=sign is not None),
        ca_dir=str(authority.directory),
        chip=chip.new_chip(authority, day, keys=keys, town=town, atr=atr,
                           token_label=token_label),
    )
    kenmen.issue(state, str(authority.directory), keys, photo=card_photo, photo_source=photo)
    return state


def _new_slot(
    ca: TestCA, which: Which, identity: Identity, issued: date, expires: date, keys: KeySource
) -> KeySlot:
    key = keys()
    if which == "auth":
        der = ca.issue_auth(key.public_key(), issued=issued, expires=expires)
    else:
        der = ca.issue_sign(key.public_key(), identity, issued=issued, expires=expires)
    from cryptography import x509

    serial = x509.load_der_x509_certificate(der).serial_number
    return KeySlot(private_pem(key).decode(), der, serial, issued, expires)


# ---------------------------------------------------------------- PINs at the counter


class PinRefused(UserError):
    """The counter terminal's PIN check failed: wrong (with tries left) or blocked."""

    def __init__(self, pin: str, label: str, tries_left: int, *, blocked_before: bool) -> None:
        self.pin = pin
        self.tries_left = tries_left
        self.blocked = tries_left == 0
        if blocked_before:
            text = f"the {label} is blocked: reset it first (card reset-pin --pin {pin})"
        else:
            more = "blocked now" if tries_left == 0 else (
                f"{tries_left} {'try' if tries_left == 1 else 'tries'} left")
            text = f"wrong {label}: {more}"
        super().__init__(text)


def pin_counter(store: CardStore[CardState], which: str) -> RetryCounter:
    """PIN ``which``'s counter on the card: the one retry-counter rule, as the chip has it."""
    return RetryCounter(lambda: store.state.pins[which], store,
                        check_format=jpki.VERIFY_POLICIES[which].accepts, name=which)


def verify_pin(store: CardStore[CardState], which: str, candidate: str) -> None:
    """Check a holder's PIN against the card as the counter terminal does.

    The try is spent and saved before the comparison, so nothing (a crash, a
    kill) can give a free try; a match restores the counter. The counter is
    the card file's, read under its lock. Raises :class:`PinRefused` (with the
    tries left) on a blocked or wrong PIN.
    """
    check_pin(which, candidate)
    counter = pin_counter(store, which)
    label = jpki.PIN_POLICIES[which].label
    with store.transaction():
        if not counter.is_set:
            raise UserError(f"the card has no {label} (its certificate is not carried)")
        outcome = counter.attempt(candidate.encode())
    if outcome is Attempt.UNUSABLE:
        raise PinRefused(which, label, 0, blocked_before=True)
    if outcome is Attempt.WRONG:
        raise PinRefused(which, label, counter.tries_left, blocked_before=False)


def reset_pin(store: CardStore[CardState], which: str, new_pin: str | None) -> None:
    """Set a forgotten or blocked PIN to ``new_pin`` (``juki``: both 001C keys), as the counter.

    One transaction: every key of the secret is reset together under the card file's lock.
    A 照合番号 (``code-a``, ``code-b``, ``birthdate``, or one key of them) takes no new
    value: what the card face shows stays, the counters of its keys are full again.
    """
    keys = chip.reset_keys(which)
    if keys[0] in jpki.CODE_POLICIES:
        if new_pin is not None:
            raise UserError(f"{which} takes no new value: it is what the card's face shows")
        with store.transaction():
            for key in keys:
                pin_counter(store, key).reset(None)
        return
    if new_pin is None:
        raise UserError(f"the new {jpki.PIN_POLICIES[keys[0]].label} is needed")
    check_pin(keys[0], new_pin)  # the keys of one secret share a policy
    with store.transaction() as state:
        if which in ("auth", "sign") and state.slot(which) is None:
            raise UserError(f"the card carries no {which} certificate, so it has no {which} PIN")
        for key in keys:
            pin_counter(store, key).reset(new_pin)


# ---------------------------------------------------------------- renewal and re-issue


@dataclass
class Renewal:
    """What a renewal did."""

    at: date
    renewed: dict[str, KeySlot] = field(default_factory=dict)
    #: old serial per certificate, revoked at the CA (None: it had already expired)
    replaced: dict[str, int] = field(default_factory=dict)
    revoked: list[int] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)


def renewed_expiry(state: CardState, which: str, at: date, auth_expires: date | None) -> date:
    """Last day of a certificate renewed (or re-issued) on ``at``.

    The 5th birthday after ``at``; the 6th when the certificate it replaces is
    in force and inside its renewal window (fewer than 3 months left); never
    past the card's expiry, nor (a signature certificate) past the
    authentication certificate's.
    """
    slot = state.slot(which)
    in_window = (
        slot is not None
        and not is_revoked(state, which)
        and lifecycle.in_renewal_window(slot.expires, at)
    )
    expiry = lifecycle.certificate_expiry(
        state.identity.birthdate, at, state.expires, in_window=in_window
    )
    if which == "sign" and auth_expires is not None:
        expiry = min(expiry, auth_expires)
    return expiry


def renew(
    store: CardStore,
    *,
    pins: Mapping[str, str],
    ca: TestCA | str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    keys: KeySource | None = None,
) -> Renewal:
    """Renew (or, after expiry or revocation, re-issue) the card's due certificates.

    Refused outside the renewal window with the day it opens. The holder's
    current PINs are needed for each certificate renewed (auth PIN, sign PIN),
    each costing a try on the card when wrong. New key pairs, new certificates
    written to the card, then the old ones revoked at the CA. The whole
    operation holds the card file's lock.
    """
    clock = clock or lifecycle.SystemClock()
    at = clock.today()
    with store.transaction() as state:
        if at > state.expires:
            raise UserError(
                f"the card itself expired on {state.expires}: a new card is needed "
                "(card renew --new-card)"
            )
        due = renewal_due(state, at)
        if not due:
            raise UserError("the card carries no certificate to renew")
        todo = [w for w, d in due.items() if d.due]
        if not todo:
            if all(d.reason == "card's expiry" for d in due.values()):
                raise UserError(
                    f"the certificates already run to the card's expiry ({state.expires}): "
                    f"renew the card itself from {lifecycle.renewal_opens(state.expires)} "
                    "(card renew --new-card)"
                )
            opens = min(d.opens for d in due.values() if d.opens is not None)
            raise UserError(
                f"renewal opens on {opens} (certificates expire on {_expiry_text(state)})"
            )
        for which in todo:
            if which not in pins or not pins[which]:
                raise UserError(f"the current {jpki.PIN_POLICIES[which].label} is needed to renew")
            check_pin(which, pins[which])
        authority = open_ca(ca, state)
        for which in todo:
            verify_pin(store, which, pins[which])
        keys = keystock.keys_for(len(todo), source=keys, ca_directory=authority.directory)

        result = Renewal(at)
        auth_expires = None
        if "auth" in todo:
            auth_expires = renewed_expiry(state, "auth", at, None)
        elif state.auth is not None:
            auth_expires = state.auth.expires
        old: dict[str, KeySlot] = {}
        for which in todo:
            slot = state.slot(which)
            assert slot is not None
            old[which] = slot
            result.kinds[which] = due[which].reason
            expires = auth_expires if which == "auth" else renewed_expiry(
                state, which, at, auth_expires)
            assert expires is not None
            result.renewed[which] = _new_slot(authority, which, state.identity, at, expires, keys)  # type: ignore[arg-type]
        # the card first (what the counter writes), then the CA's revocations
        state.auth = result.renewed.get("auth", state.auth)
        state.sign = result.renewed.get("sign", state.sign)
        state.auth_ca_der = authority.auth.cert_der
        state.sign_ca_der = authority.sign.cert_der
        state.ca_dir = str(authority.directory)
        store.commit()
        when = clock.now()
        for which, slot in old.items():
            result.replaced[which] = slot.serial
            if slot.serial in revoked_serials(state) or lifecycle.is_expired(slot.expires, when):
                continue  # already revoked, or expired: an expired certificate is not listed
            _revoke(store, authority, which, slot, when, REASON_RENEWED)
            result.revoked.append(slot.serial)
    return result


def _expiry_text(state: CardState) -> str:
    dates = sorted({s.expires for s in (state.auth, state.sign) if s is not None})
    return ", ".join(d.isoformat() for d in dates)


def _revoke(
    store: CardStore, ca: TestCA, which: str, slot: KeySlot, when: datetime, reason: str
) -> None:
    rec = ca.revoke(slot.serial, at=when, reason=reason)
    assert rec.revoked_at is not None
    store.state.history.append(
        {
            "which": which,
            "serial": format(slot.serial, "x"),
            "revoked_at": rec.revoked_at.isoformat(),
            "reason": rec.reason,
            "expires": slot.expires.isoformat(),
        }
    )
    store.commit()


def renew_card(
    store: CardStore,
    *,
    pins: Mapping[str, str] | None = None,
    ca: TestCA | str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
    keys: KeySource | None = None,
    stay_until: date | None = None,
) -> list[int]:
    """Replace the card itself (カードの更新): a new card, the old one collected.

    Accepted from the day the card's renewal window opens, and at any time after
    its expiry. The new card gets new dates, keys, certificates and application
    ID; its PINs are set at hand-over (``pins``; by default the old values). The
    old card's certificates still in force are revoked (cessationOfOperation).
    A signature certificate comes with the new card if the old one had one, or
    else by the age rule. A foreign resident gives the new period of stay.
    Renewed inside the window, the new card runs to the 11th birthday (6th for a
    minor), and each certificate renewing one inside its own window to the 6th.
    Returns the revoked serials.
    """
    clock = clock or lifecycle.SystemClock()
    at = clock.today()
    with store.transaction() as state:
        opens = lifecycle.renewal_opens(state.expires)
        if at < opens:
            raise UserError(
                f"card renewal opens on {opens} (the card expires on {state.expires})"
            )
        # the holder's PINs carry over; the 照合番号 are the new card face's
        chosen = {n: p.value for n, p in state.pins.items()
                  if p.value is not None and n in jpki.PIN_POLICIES}
        chosen.update(pins or {})
        authority = open_ca(ca, state)
        town = state.info.municipality
        identity = copy.deepcopy(state.identity)
        if stay_until is not None:
            identity.stay_until = stay_until
        cert_in_window = {
            w: s is not None and not is_revoked(state, w)
            and lifecycle.in_renewal_window(s.expires, at)
            for w in ("auth", "sign") if (s := state.slot(w)) is not None
        }
        new = issue_card(
            identity,
            at,
            pins=chosen,
            with_auth=state.auth is not None,
            with_sign=True if state.sign is not None else None,
            ca=authority,
            clock=clock,
            keys=keys,
            municipality=town.code,
            municipality_name=town.name or town.code,
            atr=state.info.atr,
            token_label=state.info.token_label,
            card_in_window=lifecycle.in_renewal_window(state.expires, at),
            cert_in_window=cert_in_window,
            card_photo=state.kenmen.photo if state.kenmen is not None else None,
        )
        old = [(w, s) for w in ("auth", "sign") if (s := state.slot(w)) is not None]
        history = list(state.history)
        revoked_before = revoked_serials(state)
        store.state = new
        new.history = history
        store.commit()
        when = clock.now()
        revoked = []
        for which, slot in old:
            if slot.serial in revoked_before or lifecycle.is_expired(slot.expires, when):
                continue
            _revoke(store, authority, which, slot, when, REASON_CARD_RETURNED)
            revoked.append(slot.serial)
    return revoked


# ---------------------------------------------------------------- changes of the holder's facts

#: the four basic facts (基本4情報) a signature certificate carries
FACTS = ("name", "address", "birthdate", "sex")


def change_facts(
    store: CardStore,
    *,
    name: str | None = None,
    address: str | None = None,
    birthdate: date | None = None,
    sex: str | None = None,
    ca: TestCA | str | os.PathLike[str] | None = None,
    clock: Clock | None = None,
) -> int | None:
    """Record a change of any of the four facts: helper data updated, sign certificate revoked.

    A move, a new name, a corrected birth date or a change of sex: the
    signature certificate carries all four facts, so it is revoked (reason
    affiliationChanged); the user-authentication certificate carries none and
    stays valid. Returns the revoked serial, if any. The revoked certificate
    stays on the chip until a new one is issued (``renew``).
    """
    clock = clock or lifecycle.SystemClock()
    if name is None and address is None and birthdate is None and sex is None:
        raise UserError("nothing to change: give a new name, address, birth date or sex")
    if name is not None:
        check_name(name)
    if address is not None:
        check_address(address)
    if sex is not None:
        check_sex(sex)
    if birthdate is not None:
        check_birthdate(birthdate)
    with store.transaction() as state:
        if clock.today() > state.expires:
            raise UserError(f"the card expired on {state.expires}")
        if birthdate is not None and birthdate > state.issued:
            raise UserError(f"birth date {birthdate} is after the card's issue date {state.issued}")
        slot = state.sign
        in_force = not (
            slot is None or is_revoked(state, "sign")
            or lifecycle.is_expired(slot.expires, clock.now())
        )
        # find the issuing CA before changing anything, so a wrong CA leaves the card as it was
        authority = open_ca(ca, state) if in_force else None
        ident = state.identity
        if name is not None:
            ident.name = name
        if address is not None:
            ident.address = address
        if birthdate is not None:
            ident.birthdate = birthdate
        if sex is not None:
            ident.sex = sex
        # the images, the helper data and every record of the 券面 applications, again
        kenmen.rewrite(state, authority.directory if authority else None)
        store.commit()
        if authority is None or slot is None:
            return None
        _revoke(store, authority, "sign", slot, clock.now(), REASON_FACTS_CHANGED)
    return slot.serial


def change_address(store: CardStore, address: str, **kw: Any) -> int | None:
    return change_facts(store, address=address, **kw)


def change_name(store: CardStore, name: str, **kw: Any) -> int | None:
    return change_facts(store, name=name, **kw)


def change_birthdate(store: CardStore, birthdate: date, **kw: Any) -> int | None:
    return change_facts(store, birthdate=birthdate, **kw)


def change_sex(store: CardStore, sex: str, **kw: Any) -> int | None:
    return change_facts(store, sex=sex, **kw)
