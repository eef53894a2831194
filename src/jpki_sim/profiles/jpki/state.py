"""The JPKI card's state schema: everything the chip and its issuer keep, as plain data.

The holder's identity, the card's dates, both key pairs with their
certificates, the CA certificates, the PIN values and retry counters, and the
chip's own facts (:class:`ChipInfo`: serial, issuing municipality, the ATR
variant and token label, the 共通AP key 0019, the MF level's CV certificates).
The engine keeps only volatile state (current DF/EF, verified PINs) of its own.

Schema changes are additive: a card file written before a field existed still
loads, the field taking the value documented on it (docs/protocol.md, "The
card file").
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

#: the PIN keys of the card. The 住民基本台帳用暗証番号 is one holder secret kept
#: in two keys with their own counters: ``juki`` (住基AP 001C) and ``common``
#: (共通AP 001C); the counter writes the same value to both, the card changes
#: and counts each on its own.
PIN_NAMES = ("auth", "sign", "helper", "juki", "common")
#: PINs every card file has; files older than the 住基/共通 APs lack the others,
#: which then load as never set
REQUIRED_PIN_NAMES = ("auth", "sign", "helper")
#: retry limit of a PIN key absent from an old card file
LEGACY_PIN_MAX_TRIES = 3
CERT_NAMES = ("auth", "sign")
#: variant names and labels kept as written; checked by the profile when used
DEFAULT_ATR_VARIANT = "contact"
DEFAULT_TOKEN_LABEL = "JPKIAPICCTOKEN2"



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
class Municipality:
    """The issuing municipality: 5-digit 全国地方公共団体コード and its name."""

    code: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Municipality:
        code = _str(d, "code")
        if len(code) != 5 or not code.isdigit():
            raise CardFileError(f"municipality code must be 5 digits, got {code!r}")
        return cls(code, _str(d, "name"))


@dataclass
class ChipInfo:
    """What the chip holds outside the JPKI and helper applications.

    ``cv_certificates``: the card-verifiable certificates GET DATA answers at
    the MF level, by tag (0x00F8, 0x7F21), each as the CV CA issued it (a
    ``7F21`` template; the card answers the template's contents, as the real
    one does). In the file: ``{"00F8": base64, "7F21": base64}``.
    """

    #: 15-digit card serial (共通AP EF 0001 record 1, GET DATA 0045)
    serial: str
    municipality: Municipality
    #: ATR variant name (the profile's ATRS) or the ATR's hex
    atr: str = DEFAULT_ATR_VARIANT
    #: EF 0006's label
    token_label: str = DEFAULT_TOKEN_LABEL
    #: 共通AP key 0019 (INTERNAL AUTHENTICATE), PKCS#8 PEM; None in old card files
    internal_auth_key: str | None = None
    cv_certificates: dict[int, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "municipality": self.municipality.to_json(),
            "atr": self.atr,
            "token_label": self.token_label,
            "internal_auth_key": self.internal_auth_key,
            "cv_certificates": {
                f"{tag:04X}": base64.b64encode(der).decode()
                for tag, der in sorted(self.cv_certificates.items())
            },
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChipInfo:
        serial = _str(d, "serial")
        if len(serial) != 15 or not serial.isdigit():
            raise CardFileError(f"card serial must be 15 digits, got {serial!r}")
        key = d.get("internal_auth_key")
        if key is not None and (not isinstance(key, str) or "PRIVATE KEY" not in key):
            raise CardFileError("internal_auth_key is not a PEM private key")
        certs = d.get("cv_certificates", {})
        if not isinstance(certs, dict):
            raise CardFileError("cv_certificates must be an object")
        cv: dict[int, bytes] = {}
        for tag in certs:
            try:
                number = int(tag, 16)
            except ValueError:
                raise CardFileError(f"cv_certificates: {tag!r} is not a hex tag") from None
            cv[number] = _b64(certs, tag)
        return cls(
            serial=serial,
            municipality=Municipality.from_json(_obj(d, "municipality")),
            atr=_str(d, "atr") if "atr" in d else DEFAULT_ATR_VARIANT,
            token_label=_str(d, "token_label") if "token_label" in d else DEFAULT_TOKEN_LABEL,
            internal_auth_key=key,
            cv_certificates=cv,
        )

    @classmethod
    def legacy(cls, application_id: str) -> ChipInfo:
        """A card file from before the chip facts: derived from its application ID.

        The serial is a digest of the application ID (stable for the file), the
        municipality the ID's first five digits.
        """
        import hashlib

        digest = int.from_bytes(hashlib.sha256(application_id.encode()).digest(), "big")
        serial = f"{digest % 10**15:015d}"
        from jpki_sim.profiles.jpki.municipality import DEFAULT_CODE, name_of

        prefix = application_id[:5]
        code = prefix if len(prefix) == 5 and prefix.isdigit() else DEFAULT_CODE
        return cls(serial, Municipality(code, name_of(code) or ""))


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
    #: the chip's facts outside the JPKI application (None: derived for old files)
    chip: ChipInfo | None = None

    def __post_init__(self) -> None:
        if self.chip is None:
            self.chip = ChipInfo.legacy(self.application_id)

    @property
    def info(self) -> ChipInfo:
        """:attr:`chip`, never None (filled in when the state is made)."""
        assert self.chip is not None
        return self.chip

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
            "pins": {name: self.pins[name].to_json() for name in PIN_NAMES if name in self.pins},
            "ca_dir": self.ca_dir,
            "history": self.history,
            "chip": self.info.to_json(),
        }

    @classmethod
    def from_json(cls, d: Any) -> CardState:
        if not isinstance(d, dict):
            raise CardFileError("a card document is a JSON object")
        card = _obj(d, "card")
        certs = _obj(d, "certificates")
        cas = _obj(d, "ca_certificates")
        pins = _obj(d, "pins")
        missing = [p for p in REQUIRED_PIN_NAMES if p not in pins]
        if missing:
            raise CardFileError(f"card file has no PIN {missing[0]!r}")
        chip = d.get("chip")
        if chip is not None and not isinstance(chip, dict):
            raise CardFileError("missing or malformed 'chip'")
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
            pins={
                p: pin_state_from_json(_obj(pins, p)) if p in pins
                else PinState(None, LEGACY_PIN_MAX_TRIES, LEGACY_PIN_MAX_TRIES)
                for p in PIN_NAMES
            },
            ca_dir=ca_dir if isinstance(ca_dir, str) else None,
            history=history,
            chip=ChipInfo.from_json(chip) if chip is not None else None,
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
