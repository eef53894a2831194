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
validates everything first, field by field (types, PIN forms, dates, sizes,
base64, DER certificates, unencrypted RSA keys matching their certificates), so
a corrupt, hand-edited or foreign file is refused with one clear message naming
the field, and never gives a half-loaded card or a failure later. Messages
never quote a PIN or a key.
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
from jpki_sim.profiles.jpki.ids import CODE_EFS
from jpki_sim.profiles.jpki.kenmen_state import Kenmen

#: ISO 5218 sex codes, as the helper application stores them
SEX_CODES = {"1": "male", "2": "female", "9": "not applicable", "0": "not known"}

#: the PIN keys of the card. The 住民基本台帳用暗証番号 is one holder secret kept
#: in two keys with their own counters: ``juki`` (住基AP 001C) and ``common``
#: (共通AP 001C); the counter writes the same value to both, the card changes
#: and counts each on its own.
#: the 照合番号 keys of the 券面 applications (their values are what the card
#: face shows; the issuer writes them): ``helper-a``, ``helper-b``, ``birthdate``,
#: ``surface-b``, ``surface-a``
CODE_NAMES = tuple(CODE_EFS)
PIN_NAMES = ("auth", "sign", "helper", "juki", "common", *CODE_NAMES)
#: PINs every card file has; files older than the 住基/共通 APs lack the others,
#: which then load as never set
REQUIRED_PIN_NAMES = ("auth", "sign", "helper")
#: retry limit of a PIN key absent from an old card file
LEGACY_PIN_MAX_TRIES = 3
CERT_NAMES = ("auth", "sign")
#: variant names and labels kept as written; checked by the profile when used
DEFAULT_ATR_VARIANT = "contact"
DEFAULT_TOKEN_LABEL = "JPKIAPICCTOKEN2"

#: limits of a card file's fields (the issuer's too)
MAX_NAME = 100
MAX_ADDRESS = 200
#: the first day with a Japanese era code (明治, proclaimed 1868-10-23): birth dates
#: before it cannot be written in the signature certificate's era form
EARLIEST_BIRTHDATE = date(1868, 10, 23)
#: a certificate EF holds at most this many bytes (DER + FF filler)
MAX_CERT_DER = 2048
MAX_KEY_PEM = 8192
MAX_HISTORY = 1000
MAX_CA_DIR = 4096
#: the revocation reasons a card's history may name (RFC 5280 names)
HISTORY_REASONS = ("superseded", "affiliationChanged", "keyCompromise",
                   "cessationOfOperation", "unspecified")



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
    def from_json(cls, d: dict[str, Any], where: str = "identity") -> Identity:
        from jpki_sim.profiles.jpki import mynumber

        born = _date(d, "birthdate", where)
        if born < EARLIEST_BIRTHDATE:
            raise CardFileError(
                f"{where}.birthdate: before the Meiji era ({EARLIEST_BIRTHDATE}), which has "
                "no era code"
            )
        number = _str(d, "my_number", where, limit=12)
        if not mynumber.is_valid(number):
            raise CardFileError(f"{where}.my_number: not 12 digits with a valid check digit")
        return cls(
            name=_text(d, "name", where, MAX_NAME),
            birthdate=born,
            sex=_choice(d, "sex", tuple(SEX_CODES), where),
            address=_text(d, "address", where, MAX_ADDRESS),
            my_number=number,
            stay_until=_date(d, "stay_until", where) if d.get("stay_until") is not None
            else None,
        )


def pin_state_from_json(d: Any, where: str = "PIN", name: str | None = None) -> PinState:
    """A PIN's state; with ``name`` the value must have that PIN's form.

    Messages never quote the value or the counters (a counter could be any size).
    """
    if not isinstance(d, dict):
        raise CardFileError(f"{where}: must be an object")
    value = d.get("value")
    if value is not None and not isinstance(value, str):
        raise CardFileError(f"{where}.value: must be a string or null")
    if value is not None and name is not None:
        from jpki_sim.profiles.jpki.ids import VERIFY_POLICIES

        policy = VERIFY_POLICIES.get(name)
        if policy is not None and not policy.accepts(value.encode("utf-8", "replace")):
            raise CardFileError(f"{where}.value: not a {policy.label} ({policy.describe()})")
    max_tries = _int(d, "max_tries", where)
    tries = _int(d, "tries_left", where)
    if not 1 <= max_tries <= MAX_TRIES_LIMIT:
        raise CardFileError(f"{where}.max_tries: must be 1 to {MAX_TRIES_LIMIT}")
    if not 0 <= tries <= max_tries:
        raise CardFileError(f"{where}.tries_left: must be 0 to max_tries")
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
    def from_json(cls, d: Any, where: str = "certificate") -> KeySlot:
        if not isinstance(d, dict):
            raise CardFileError(f"{where}: must be an object or null")
        key = _str(d, "key", where, limit=MAX_KEY_PEM)
        der = _b64(d, "cert", where, limit=MAX_CERT_DER)
        cert = _certificate(der, f"{where}.cert")
        private = _private_key(key, f"{where}.key")
        if private.public_key().public_numbers() != cert.public_key().public_numbers():
            raise CardFileError(f"{where}.key: does not belong to the certificate")
        serial_text = _str(d, "serial", where, limit=40)
        if not serial_text or any(c not in "0123456789abcdefABCDEF" for c in serial_text):
            raise CardFileError(f"{where}.serial: must be hexadecimal")
        serial = int(serial_text, 16)
        if serial != cert.serial_number:
            raise CardFileError(f"{where}.serial: not the certificate's serial number")
        not_before = _date(d, "not_before", where)
        expires = _date(d, "expires", where)
        if expires < not_before:
            raise CardFileError(f"{where}.expires: before not_before")
        return cls(key, der, serial, not_before, expires)


@dataclass
class Municipality:
    """The issuing municipality: 5-digit 全国地方公共団体コード and its name."""

    code: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name}

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "chip.municipality") -> Municipality:
        code = _digits(d, "code", 5, where)
        name = _str(d, "name", where, limit=MAX_NAME)
        if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in name):
            raise CardFileError(f"{where}.name: holds a control character")
        return cls(code, name)


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
    def from_json(cls, d: dict[str, Any], where: str = "chip") -> ChipInfo:
        serial = _digits(d, "serial", 15, where)
        key = d.get("internal_auth_key")
        if key is not None:
            if not isinstance(key, str) or len(key) > MAX_KEY_PEM:
                raise CardFileError(f"{where}.internal_auth_key: not a PEM private key")
            _private_key(key, f"{where}.internal_auth_key")
        certs = d.get("cv_certificates", {})
        if not isinstance(certs, dict) or len(certs) > 8:
            raise CardFileError(f"{where}.cv_certificates: must be an object")
        cv: dict[int, bytes] = {}
        for tag in certs:
            if not (1 <= len(tag) <= 4 and all(c in "0123456789abcdefABCDEF" for c in tag)):
                raise CardFileError(f"{where}.cv_certificates: {tag[:8]!r} is not a hex tag")
            cv[int(tag, 16)] = _b64(certs, tag, f"{where}.cv_certificates", limit=MAX_CERT_DER)
        atr = _str(d, "atr", where, limit=2 * 33) if "atr" in d else DEFAULT_ATR_VARIANT
        label = (_str(d, "token_label", where, limit=32) if "token_label" in d
                 else DEFAULT_TOKEN_LABEL)
        if not label.isascii() or not label.isprintable():
            raise CardFileError(f"{where}.token_label: printable ASCII only")
        return cls(
            serial=serial,
            municipality=Municipality.from_json(_obj(d, "municipality", where)),
            atr=atr,
            token_label=label,
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
    #: the 券面 applications' keys, photo and EFs (None: a card file from before them)
    kenmen: Kenmen | None = None

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
            **({"kenmen": self.kenmen.to_json()} if self.kenmen is not None else {}),
        }

    @classmethod
    def from_json(cls, d: Any) -> CardState:
        if not isinstance(d, dict):
            raise CardFileError("a card document is a JSON object")
        identity = Identity.from_json(_obj(d, "identity"))
        card = _obj(d, "card")
        issued = _date(card, "issued", "card")
        expires = _date(card, "expires", "card")
        if expires < issued:
            raise CardFileError("card.expires: before card.issued")
        if issued < identity.birthdate:
            raise CardFileError("card.issued: before identity.birthdate")
        certs = _obj(d, "certificates")
        cas = _obj(d, "ca_certificates")
        pins = _obj(d, "pins")
        missing = [p for p in REQUIRED_PIN_NAMES if p not in pins]
        if missing:
            raise CardFileError(f"card file has no PIN {missing[0]!r}")
        chip = d.get("chip")
        if chip is not None and not isinstance(chip, dict):
            raise CardFileError("missing or malformed 'chip'")
        ca_dir = d.get("ca_dir")
        if ca_dir is not None and (not isinstance(ca_dir, str) or len(ca_dir) > MAX_CA_DIR):
            raise CardFileError("ca_dir: must be a folder name or null")
        slots = {}
        for which in CERT_NAMES:
            raw = certs.get(which)
            slots[which] = (
                KeySlot.from_json(raw, f"certificates.{which}") if raw is not None else None
            )
        auth_ca = _b64(cas, "auth", "ca_certificates", limit=MAX_CERT_DER)
        sign_ca = _b64(cas, "sign", "ca_certificates", limit=MAX_CERT_DER)
        for which, der in (("auth", auth_ca), ("sign", sign_ca)):
            _certificate(der, f"ca_certificates.{which}")
        return cls(
            identity=identity,
            issued=issued,
            expires=expires,
            application_id=_digits(card, "application_id", 23, "card"),
            security_code=_digits(card, "security_code", 4, "card"),
            auth=slots["auth"],
            sign=slots["sign"],
            auth_ca_der=auth_ca,
            sign_ca_der=sign_ca,
            pins={
                p: pin_state_from_json(pins[p], f"pins.{p}", p) if p in pins
                else PinState(None, LEGACY_PIN_MAX_TRIES, LEGACY_PIN_MAX_TRIES)
                for p in PIN_NAMES
            },
            ca_dir=ca_dir,
            history=_history(d.get("history", [])),
            chip=ChipInfo.from_json(chip) if chip is not None else None,
            kenmen=_kenmen(d.get("kenmen")),
        )


def _kenmen(doc: Any) -> Kenmen | None:
    """The 券面 applications' data, its keys checked as the JPKI keys are."""
    if doc is None:
        return None
    kenmen = Kenmen.from_json(doc)
    for name, pem in kenmen.keys.items():
        _private_key(pem, f"kenmen.keys.{name}")
    return kenmen


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
#
# Each names the field it refuses as a dotted path (``certificates.auth.key``).


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _obj(d: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise CardFileError(f"missing or malformed {_name(where, key)!r}")
    return v


def _str(d: dict[str, Any], key: str, where: str = "", *, limit: int | None = None) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise CardFileError(f"missing or malformed {_name(where, key)!r}")
    if limit is not None and len(v) > limit:
        raise CardFileError(f"{_name(where, key)}: longer than {limit} characters")
    return v


def _text(d: dict[str, Any], key: str, where: str, limit: int) -> str:
    v = _str(d, key, where, limit=limit)
    if not v.strip():
        raise CardFileError(f"{_name(where, key)}: empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in v):
        raise CardFileError(f"{_name(where, key)}: holds a control character")
    return v


def _digits(d: dict[str, Any], key: str, count: int, where: str) -> str:
    v = _str(d, key, where, limit=count)
    if len(v) != count or not v.isascii() or not v.isdigit():
        raise CardFileError(f"{_name(where, key)}: must be {count} digits")
    return v


def _int(d: dict[str, Any], key: str, where: str = "") -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise CardFileError(f"missing or malformed {_name(where, key)!r}")
    return v


def _date(d: dict[str, Any], key: str, where: str = "") -> date:
    v = _str(d, key, where, limit=10)
    try:
        if len(v) != 10:
            raise ValueError
        return date.fromisoformat(v)
    except ValueError:
        raise CardFileError(f"{_name(where, key)!r} is not a YYYY-MM-DD date: {v!r}") from None


def _b64(d: dict[str, Any], key: str, where: str = "", *, limit: int | None = None) -> bytes:
    v = _str(d, key, where, limit=None if limit is None else 4 * (limit // 3 + 1))
    try:
        raw = base64.b64decode(v, validate=True)
    except ValueError:
        raise CardFileError(f"{_name(where, key)!r} is not base64") from None
    if limit is not None and len(raw) > limit:
        raise CardFileError(f"{_name(where, key)}: more than {limit} bytes")
    return raw


def _choice(d: dict[str, Any], key: str, allowed: tuple[str, ...], where: str = "") -> str:
    v = _str(d, key, where, limit=max(len(a) for a in allowed))
    if v not in allowed:
        raise CardFileError(
            f"{_name(where, key)!r} must be one of {', '.join(allowed)}, got {v!r}"
        )
    return v


def _certificate(der: bytes, where: str) -> Any:
    """The X.509 certificate in ``der`` (exact DER, nothing after it)."""
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise CardFileError(f"{where}: not a DER X.509 certificate") from None


def _private_key(pem: str, where: str) -> Any:
    """The unencrypted RSA-2048 private key in ``pem`` (what the chip's key EF holds)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if "PRIVATE KEY" not in pem:
        raise CardFileError(f"{where}: not a PEM private key")
    try:
        # OpenSSL's full check (primality) costs ~50 ms a key; the cheap
        # consistency checks below catch a damaged key just as well
        key = load_pem_private_key(pem.encode("utf-8", "replace"), password=None,
                                   unsafe_skip_rsa_key_validation=True)
    except TypeError:
        raise CardFileError(f"{where}: encrypted (the card holds its keys in clear)") from None
    except (ValueError, Exception):  # noqa: B014 (cryptography raises its own types too)
        raise CardFileError(f"{where}: not a readable PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != 2048:
        raise CardFileError(f"{where}: not an RSA-2048 key")
    n = key.private_numbers()
    pub = n.public_numbers
    from math import lcm

    if not (
        n.p > 1 and n.q > 1 and n.p * n.q == pub.n
        and (pub.e * n.d) % lcm(n.p - 1, n.q - 1) == 1
        and n.dmp1 == n.d % (n.p - 1) and n.dmq1 == n.d % (n.q - 1)
        and (n.iqmp * n.q) % n.p == 1
    ):
        raise CardFileError(f"{where}: a damaged RSA key (its numbers do not agree)")
    return key


def _history(items: Any) -> list[dict[str, Any]]:
    """The issuer's record: revoked certificates of this card."""
    if not isinstance(items, list):
        raise CardFileError("history must be a list")
    if len(items) > MAX_HISTORY:
        raise CardFileError(f"history: more than {MAX_HISTORY} entries")
    from datetime import datetime

    for i, h in enumerate(items):
        where = f"history[{i}]"
        if not isinstance(h, dict):
            raise CardFileError(f"{where}: must be an object")
        _choice(h, "which", CERT_NAMES, where)
        serial = _str(h, "serial", where, limit=40)
        if not serial or any(c not in "0123456789abcdefABCDEF" for c in serial):
            raise CardFileError(f"{where}.serial: must be hexadecimal")
        at = _str(h, "revoked_at", where, limit=40)
        try:
            if datetime.fromisoformat(at).tzinfo is None:
                raise ValueError
        except ValueError:
            raise CardFileError(f"{where}.revoked_at: not a date and time with a zone") from None
        _choice(h, "reason", HISTORY_REASONS, where)
        _date(h, "expires", where)
    return items
