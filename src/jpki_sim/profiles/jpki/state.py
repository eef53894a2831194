"""The JPKI card's state schema: everything the chip and its issuer keep, as plain data.

The holder's identity, the card's dates, both key pairs with their
certificates, the CA certificates, the PIN values and retry counters. The
engine keeps only volatile state (current DF/EF, verified PINs) of its own.
The file around it (envelope, atomic writes, owner-only mode) is
:mod:`jpki_sim.card.store`'s; :data:`CODEC` is this profile's part. Loading
validates everything first, so a corrupt or foreign file is refused with one
clear message and never gives a half-loaded card.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jpki_sim.card import store as card_store
from jpki_sim.card.pins import MAX_TRIES_LIMIT, PinState
from jpki_sim.card.store import CardStore
from jpki_sim.errors import CardFileError

#: ISO 5218 sex codes, as the helper application stores them
SEX_CODES = {"1": "male", "2": "female", "9": "not applicable", "0": "not known"}

PIN_NAMES = ("auth", "sign", "helper")
CERT_NAMES = ("auth", "sign")


@dataclass
class Identity:
    """The four basic facts (基本4情報) plus the My Number."""

    name: str
    birthdate: date
    sex: str  # ISO 5218 code: "1" male, "2" female, "9" not applicable, "0" not known
    address: str
    my_number: str
    #: end of a foreign resident's period of stay, when it bounds the card's validity
    stay_until: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "birthdate": self.birthdate.isoformat(),
            "sex": self.sex,
            "address": self.address,
            "my_number": self.my_number,
            "stay_until": self.stay_until.isoformat() if self.stay_until else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Identity:
        return cls(
            name=_str(d, "name"),
            birthdate=_date(d, "birthdate"),
            sex=_choice(d, "sex", tuple(SEX_CODES)),
            address=_str(d, "address"),
            my_number=_str(d, "my_number"),
            stay_until=_date(d, "stay_until") if d.get("stay_until") else None,
        )


def pin_state_from_json(d: dict[str, Any]) -> PinState:
    value = d.get("value")
    if value is not None and not isinstance(value, str):
        raise CardFileError("PIN value must be a string or null")
    max_tries = _int(d, "max_tries")
    tries = _int(d, "tries_left")
    if not 1 <= max_tries <= MAX_TRIES_LIMIT or not 0 <= tries <= max_tries:
        raise CardFileError(f"PIN counter {tries}/{max_tries} out of range")
    return PinState(value, tries, max_tries)


@dataclass
class KeySlot:
    """One JPKI key pair with its certificate, as written onto the card."""

    key_pem: str  # PKCS#8 PEM, unencrypted: the card file is the chip
    cert_der: bytes
    serial: int
    not_before: date
    expires: date  # last valid day (Japan time)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key_pem,
            "cert": base64.b64encode(self.cert_der).decode(),
            "serial": format(self.serial, "x"),
            "not_before": self.not_before.isoformat(),
            "expires": self.expires.isoformat(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeySlot:
        key = _str(d, "key")
        if "PRIVATE KEY" not in key:
            raise CardFileError("key is not a PEM private key")
        try:
            serial = int(_str(d, "serial"), 16)
        except ValueError:
            raise CardFileError("certificate serial is not hex") from None
        return cls(key, _b64(d, "cert"), serial, _date(d, "not_before"), _date(d, "expires"))


@dataclass
class CardState:
    identity: Identity
    issued: date
    expires: date
    #: 23-digit application ID (申請書ID)
    application_id: str
    #: 4-digit security code printed on the card face (used in 照合番号B)
    security_code: str
    auth: KeySlot | None
    sign: KeySlot | None
    #: CA certificates written on the card (EF 000B and 0002)
    auth_ca_der: bytes
    sign_ca_der: bytes
    pins: dict[str, PinState]
    #: where the card's CA lives, so lifecycle commands find it again
    ca_dir: str | None = None
    #: revoked serials of this card's own certificates, kept for `card status`
    history: list[dict[str, Any]] = field(default_factory=list)

    def slot(self, which: str) -> KeySlot | None:
        return self.auth if which == "auth" else self.sign

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity.to_json(),
            "card": {
                "issued": self.issued.isoformat(),
                "expires": self.expires.isoformat(),
                "application_id": self.application_id,
                "security_code": self.security_code,
            },
            "certificates": {
                "auth": self.auth.to_json() if self.auth else None,
                "sign": self.sign.to_json() if self.sign else None,
            },
            "ca_certificates": {
                "auth": base64.b64encode(self.auth_ca_der).decode(),
                "sign": base64.b64encode(self.sign_ca_der).decode(),
            },
            "pins": {name: self.pins[name].to_json() for name in PIN_NAMES},
            "ca_dir": self.ca_dir,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, d: Any) -> CardState:
        if not isinstance(d, dict):
            raise CardFileError("a card document is a JSON object")
        card = _obj(d, "card")
        certs = _obj(d, "certificates")
        cas = _obj(d, "ca_certificates")
        pins = _obj(d, "pins")
        missing = [p for p in PIN_NAMES if p not in pins]
        if missing:
            raise CardFileError(f"card file has no PIN {missing[0]!r}")
        history = d.get("history", [])
        if not isinstance(history, list):
            raise CardFileError("history must be a list")
        ca_dir = d.get("ca_dir")
        return cls(
            identity=Identity.from_json(_obj(d, "identity")),
            issued=_date(card, "issued"),
            expires=_date(card, "expires"),
            application_id=_str(card, "application_id"),
            security_code=_str(card, "security_code"),
            auth=KeySlot.from_json(certs["auth"]) if certs.get("auth") else None,
            sign=KeySlot.from_json(certs["sign"]) if certs.get("sign") else None,
            auth_ca_der=_b64(cas, "auth"),
            sign_ca_der=_b64(cas, "sign"),
            pins={p: pin_state_from_json(_obj(pins, p)) for p in PIN_NAMES},
            ca_dir=ca_dir if isinstance(ca_dir, str) else None,
            history=history,
        )


# ---------------------------------------------------------------- the card file


class JpkiCodec:
    """The JPKI card's fields of the card document (:class:`~jpki_sim.card.store.StateCodec`)."""

    profile = "jpki"

    def decode(self, doc: dict[str, Any]) -> CardState:
        return CardState.from_json(doc)

    def encode(self, state: CardState) -> dict[str, Any]:
        return state.to_json()


CODEC = JpkiCodec()


def new_store(state: CardState, path: str | os.PathLike[str] | None = None) -> CardStore[CardState]:
    """A store for a JPKI card state (in memory when ``path`` is None)."""
    return CardStore(CODEC, state, path)


def open_store(path: str | os.PathLike[str]) -> CardStore[CardState]:
    return CardStore.open(CODEC, path)


def dumps(state: CardState) -> bytes:
    return card_store.dumps(CODEC, state)


def save(state: CardState, path: str | os.PathLike[str]) -> None:
    card_store.save(CODEC, state, path)


def load(path: str | os.PathLike[str]) -> CardState:
    return card_store.load(CODEC, path)


# ---------------------------------------------------------------- field readers


def _obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise CardFileError(f"missing or malformed {key!r}")
    return v


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise CardFileError(f"missing or malformed {key!r}")
    return v


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise CardFileError(f"missing or malformed {key!r}")
    return v


def _date(d: dict[str, Any], key: str) -> date:
    v = _str(d, key)
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise CardFileError(f"{key!r} is not a YYYY-MM-DD date: {v!r}") from None


def _b64(d: dict[str, Any], key: str) -> bytes:
    v = _str(d, key)
    try:
        return base64.b64decode(v, validate=True)
    except ValueError:
        raise CardFileError(f"{key!r} is not base64") from None


def _choice(d: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    v = _str(d, key)
    if v not in allowed:
        raise CardFileError(f"{key!r} must be one of {', '.join(allowed)}, got {v!r}")
    return v
