"""The JPKI card's part of the vectors: its checks, what they know of a card, reader probing.

The JPKI profile names this module as its ``vector_checks`` hook.

=========================== ==================================================
``der-certificate``         a DER X.509 certificate, optionally followed by FF filler
``der-certificate:WHICH``   that, and the card's own ``auth``/``sign``/``auth-ca``/``sign-ca``
``certificate-valid``       a DER certificate valid on the vector's date
``certificate-expired``     a DER certificate expired on the vector's date
``signature-verifies:KEY``  a 256-byte signature by the card's ``auth``/``sign`` key over the
                            data the command sent, in the command's scheme (P1 00-05)
``token-info``              EF 0006: 160 bytes, label ``JPKIAPICCTOKEN2`` padded to 32
``token-info:LABEL``        that, with the label ``LABEL`` (``JPKIAPICCTOKEN``: the old card)
``my-number``               helper EF 0001: ``FF 10 0C``, 12 digits with a valid check digit
``basic-info``              helper EF 0002: the four facts in the card's TLV layout
``card-info``               共通AP EF 0001 record 1: ``01 1C`` + serial, municipality, expiry
                            (the card's own, when the card under test is known)
``cv-certificate``          a CV certificate as GET DATA answers it (5F4E 297-byte body, 5F37)
``cv-chain``                two such certificates, the second issued by the key the first
                            certifies, its signature checked with that key
``internal-auth-verifies``  256 bytes: sha256WithRSAEncryption over the command's data by the
                            card's 共通AP key 0019 (emulated cards: the key is on no EF)
``contact-atr``             an ATR without its TS byte whose check byte TCK is right
=========================== ==================================================

The 券面 applications' checks (``cv-ef``, ``signed-record``, ``integrity``,
``app-signature``) are :mod:`.jpki_kenmen`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jpki_sim.iso7816.sw import tries_left
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.vectors.checks import CheckContext, register
from jpki_sim.vectors.jpki_kenmen import KenmenFacts, kenmen_facts

PROFILE = "jpki"
CERT_NAMES = ("auth", "sign", "auth-ca", "sign-ca")
KEY_NAMES = ("auth", "sign")
SIGNATURE_LENGTH = 256


@dataclass
class CardFacts:
    """What the checks need to know about the card under test: its certificates (DER),
    and of an emulated card its 共通AP record and key 0019's public half."""

    certificates: dict[str, bytes | None] = field(default_factory=dict)
    #: {"serial", "municipality", "expires"} as the 共通AP record gives them
    card_info: dict[str, str] | None = None
    #: PEM of 共通AP key 0019 (its private half: the checks take the public one)
    internal_auth_key: str | None = None
    #: the 券面 applications' roots, EFs and keys (:mod:`.jpki_kenmen`; emulated cards)
    kenmen: KenmenFacts | None = None

    @classmethod
    def from_state(cls, state: Any) -> CardFacts:
        info = state.info
        return cls(
            {
                "auth": state.auth.cert_der if state.auth else None,
                "sign": state.sign.cert_der if state.sign else None,
                "auth-ca": state.auth_ca_der,
                "sign-ca": state.sign_ca_der,
            },
            {"serial": info.serial, "municipality": info.municipality.code,
             "expires": state.expires.isoformat()},
            info.internal_auth_key,
            kenmen_facts(state),
        )


def card_facts(state: Any) -> CardFacts:
    """The hook the vector targets call for an emulated card's facts."""
    return CardFacts.from_state(state)


def split_certificate(data: bytes) -> tuple[Any, bytes]:
    """(the parsed certificate, its exact DER) from data that starts with one."""
    from cryptography import x509

    from jpki_sim.iso7816.client import der_length

    total = der_length(data[:6])
    if total > len(data):
        raise ValueError(f"DER header says {total} bytes, only {len(data)} read")
    der = data[:total]
    if data[total:].strip(b"\xff"):
        raise ValueError(f"bytes after the {total}-byte certificate are not FF filler")
    return x509.load_der_x509_certificate(der), der


def _der_certificate(ctx: CheckContext, arg: str | None) -> str | None:
    try:
        _cert, der = split_certificate(ctx.data)
    except ValueError as exc:
        return f"not a DER certificate: {exc}"
    if arg is not None:
        own = ctx.facts.certificates.get(arg)
        if own is None:
            return f"the card has no {arg} certificate to compare with"
        if der != own:
            return f"a certificate, but not the card's {arg} certificate"
    return None


def _validity(ctx: CheckContext) -> tuple[bool, str]:
    from jpki_sim.issuer import lifecycle

    cert, _der = split_certificate(ctx.data)
    expiry = cert.not_valid_after_utc.astimezone(lifecycle.JST).date()
    starts = cert.not_valid_before_utc.astimezone(lifecycle.JST).date()
    expired = lifecycle.is_expired(expiry, ctx.on)
    return (not expired and ctx.on >= starts), f"valid {starts} to {expiry}, checked on {ctx.on}"


def _certificate_valid(ctx: CheckContext, arg: str | None) -> str | None:
    try:
        ok, text = _validity(ctx)
    except ValueError as exc:
        return f"not a DER certificate: {exc}"
    return None if ok else f"certificate not valid: {text}"


def _certificate_expired(ctx: CheckContext, arg: str | None) -> str | None:
    try:
        ok, text = _validity(ctx)
    except ValueError as exc:
        return f"not a DER certificate: {exc}"
    return f"certificate not expired: {text}" if ok else None


def signed_input(command: bytes) -> tuple[int, bytes]:
    """(scheme P1, data field) of a COMPUTE DIGITAL SIGNATURE command."""
    from jpki_sim.iso7816.apdu import CommandApdu

    apdu = CommandApdu.parse(command)
    return apdu.p1, apdu.data


def verify_signature(public_key: Any, scheme: int, data: bytes, signature: bytes) -> str | None:
    """None when ``signature`` is the card's scheme ``scheme`` signature over ``data``."""
    import hashlib

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX

    if len(signature) != SIGNATURE_LENGTH:
        return f"{len(signature)} bytes, want a {SIGNATURE_LENGTH}-byte RSA-2048 signature"
    # what the card signs with PKCS#1 v1.5 type 1 padding, per scheme
    pkcs1_payload = {
        0x00: data,
        0x01: hashlib.sha256(data).digest(),
        0x02: SHA256_DIGEST_INFO_PREFIX + data,
        0x03: SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest(),
    }
    if scheme in pkcs1_payload:
        # recover the encoded message with the public operation and compare it
        # whole: this checks the exact padding over arbitrary data, DigestInfo or not
        nums = public_key.public_numbers()
        k = (public_key.key_size + 7) // 8
        s = int.from_bytes(signature, "big")
        if s >= nums.n:
            return "signature representative out of range"
        em = pow(s, nums.e, nums.n).to_bytes(k, "big")
        payload = pkcs1_payload[scheme]
        want = b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload
        if em != want:
            return f"does not verify (PKCS#1 v1.5, scheme {scheme:02X}) with the card's key"
        return None
    if scheme in (0x04, 0x05):
        digest = data if scheme == 0x04 else hashlib.sha256(data).digest()
        try:
            public_key.verify(
                signature,
                digest,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                utils.Prehashed(hashes.SHA256()),
            )
        except InvalidSignature:
            return f"does not verify (PSS SHA-256 salt 32, scheme {scheme:02X}) with the card's key"
        return None
    return f"unknown signing scheme {scheme:02X}"


def _signature_verifies(ctx: CheckContext, arg: str | None) -> str | None:
    from cryptography import x509

    assert arg is not None
    der = ctx.facts.certificates.get(arg)
    if der is None:
        return f"the card has no {arg} certificate to verify with"
    key = x509.load_der_x509_certificate(der).public_key()
    scheme, data = signed_input(ctx.command)
    return verify_signature(key, scheme, data, ctx.data)


def _token_info(ctx: CheckContext, arg: str | None) -> str | None:
    if len(ctx.data) != 160:
        return f"{len(ctx.data)} bytes, want 160"
    label = (arg or jpki.TOKEN_LABEL).encode().ljust(32, b" ")
    if ctx.data[:32] != label:
        return f"label {ctx.data[:32]!r}, want {label!r}"
    return None


def _my_number(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki import mynumber, records

    try:
        number = records.decode_helper_my_number(ctx.data)
    except ValueError as exc:
        return str(exc)
    if not mynumber.is_valid(number):
        return f"My Number {number} has a wrong check digit"
    return None


def _basic_info(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki import records

    try:
        info = records.decode_helper_basic_info(ctx.data)
    except ValueError as exc:
        return f"not the four-facts TLV: {exc}"
    if not info["name"] or info["sex"] not in ("0", "1", "2", "9"):
        return f"implausible facts: {info}"
    return None

# ---------------------------------------------------------------- the chip outside the JPKI AP


def _card_info(ctx: CheckContext, arg: str | None) -> str | None:
    from datetime import date as _date

    from jpki_sim.profiles.jpki.chipdata import decode_card_info

    try:
        info = decode_card_info(ctx.data)
        _date.fromisoformat(info["expires"])
    except ValueError as exc:
        return f"not the card info record: {exc}"
    known = getattr(ctx.facts, "card_info", None)
    if known is not None and info != known:
        return f"card info {info}, the card's is {known}"
    return None


def _cv_certificates(data: bytes) -> list[Any]:
    """The CV certificates GET DATA answered, one after the other (a verifier's own reader)."""
    from jpki_sim.profiles.jpki.cv_verify import parse_cv, read_objects

    objects = read_objects(data)
    if [o.tag for o in objects][:1] == [0x7F21]:
        raise ValueError("GET DATA answers the certificate without its 7F21 template")
    if len(objects) % 2 or not objects:
        raise ValueError(f"{len(objects)} objects: a certificate is a 5F4E and a 5F37")
    certs = [parse_cv(objects[i].raw + objects[i + 1].raw) for i in range(0, len(objects), 2)]
    for cert in certs:
        if len(cert.body) != 297:
            raise ValueError(f"a body of {len(cert.body)} bytes, not 297")
    return certs


def _cv_certificate(ctx: CheckContext, arg: str | None) -> str | None:
    try:
        certs = _cv_certificates(ctx.data)
    except ValueError as exc:
        return f"not a CV certificate: {exc}"
    if len(certs) != 1:
        return f"{len(certs)} certificates, want 1"
    return None


def _cv_chain(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki.cv_verify import VerifyError, verify_cv
    from jpki_sim.profiles.jpki.records_cv import key_id_text

    try:
        certs = _cv_certificates(ctx.data)
    except ValueError as exc:
        return f"not CV certificates: {exc}"
    if len(certs) < 2:
        return f"{len(certs)} certificate, a chain needs 2"
    for upper, lower in zip(certs, certs[1:], strict=False):
        if lower.issuer_key_id != upper.subject_key_id:
            return (f"broken chain: issued by {key_id_text(lower.issuer_key_id)}, but the "
                    f"certificate above certifies {key_id_text(upper.subject_key_id)}")
        try:
            verify_cv(lower, upper.public_key)
        except VerifyError:
            return f"{key_id_text(lower.subject_key_id)}'s certificate does not verify"
    return None


def _internal_auth_verifies(ctx: CheckContext, arg: str | None) -> str | None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from jpki_sim.iso7816.apdu import CommandApdu

    pem = getattr(ctx.facts, "internal_auth_key", None)
    if pem is None:
        return "the card's key 0019 is not known (its public half is on no EF)"
    if len(ctx.data) != SIGNATURE_LENGTH:
        return f"{len(ctx.data)} bytes, want {SIGNATURE_LENGTH}"
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        return "the card's key 0019 is not an RSA key"
    challenge = CommandApdu.parse(ctx.command).data
    try:
        private.public_key().verify(ctx.data, challenge, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return "does not verify (sha256WithRSAEncryption) with the card's key 0019"
    return None


def _contact_atr(ctx: CheckContext, arg: str | None) -> str | None:
    if len(ctx.data) < 2:
        return f"{len(ctx.data)} bytes: too short for an ATR"
    tck = 0
    for b in ctx.data[:-1]:
        tck ^= b
    if tck != ctx.data[-1]:
        return f"TCK {ctx.data[-1]:02X}, the bytes give {tck:02X}"
    return None


# ---------------------------------------------------------------- a card in a reader


@dataclass(frozen=True)
class Fingerprint:
    """What tells card profiles apart from the outside, without changing the card."""

    presence: bytes  # EF 0008
    tries: tuple[int, int, int]  # auth, sign, helper tries left (empty VERIFY)
    auth_expired: bool | None  # the auth certificate expired (None: no auth certificate)

    def describe(self) -> str:
        exp = {None: "no auth cert", True: "auth cert expired", False: "auth cert valid"}
        return (f"EF0008 {self.presence.hex().upper()}, tries auth/sign/helper "
                f"{'/'.join(map(str, self.tries))}, {exp[self.auth_expired]}")


def preset_fingerprint(state: Any, on: date) -> Fingerprint:
    from jpki_sim.issuer import lifecycle
    from jpki_sim.profiles.jpki.build import cert_presence

    tries = tuple(p.tries_left if p.value is not None else 0
                  for p in (state.pins["auth"], state.pins["sign"], state.pins["helper"]))
    expired = None if state.auth is None else lifecycle.is_expired(state.auth.expires, on)
    return Fingerprint(cert_presence(state), tries, expired)  # type: ignore[arg-type]


def _apdu(transport: Any, hex_text: str) -> tuple[bytes, int]:
    r = transport.transmit(bytes.fromhex(hex_text))
    return r[:-2], r[-2] << 8 | r[-1]


def _read_cert(transport: Any, fid: str) -> bytes | None:
    from jpki_sim.iso7816.client import der_length
    from jpki_sim.profiles.jpki.client import JpkiClient

    client = JpkiClient(transport)
    try:
        client.select_jpki()
        client.select_ef(int(fid, 16))
        header = client.read_binary(0, 4)
        return client.read_ef(der_length(header))
    except Exception:
        return None


def probe_reader(
    transport: Any, pins: dict[str, str], today: date
) -> tuple[CardFacts, Fingerprint]:
    """What a JPKI card in a reader is, read without changing it (no PIN guessed)."""
    from jpki_sim.issuer import lifecycle
    from jpki_sim.vectors.targets import TargetError

    facts = CardFacts()
    transport.reset()
    jp = jpki.JPKI_AID.hex().upper()
    hp = jpki.HELPER_AID.hex().upper()
    _apdu(transport, f"00A4040C0A{jp}")
    _apdu(transport, "00A4020C020008")
    presence, sw = _apdu(transport, "00B0000003")
    if sw != 0x9000:
        presence = b""
    tries = []
    for aid, fid in ((jp, "0018"), (jp, "001B"), (hp, "0011")):
        _apdu(transport, f"00A4040C0A{aid}")
        _apdu(transport, f"00A4020C02{fid}")
        _d, sw = _apdu(transport, "00200080")
        left = tries_left(sw)
        tries.append(-1 if left is None else left)
    transport.reset()
    for name, fid in (("auth", "000A"), ("auth-ca", "000B"), ("sign-ca", "0002")):
        facts.certificates[name] = _read_cert(transport, fid)
    sign_pin = pins.get("sign")
    if sign_pin and presence[:1] == b"\x8f":
        from jpki_sim.profiles.jpki.client import JpkiClient

        client = JpkiClient(transport)  # one client: no re-SELECT between the two
        try:
            client.verify_pin("sign", sign_pin)
            facts.certificates["sign"] = client.read_certificate("sign")
        except Exception as exc:
            raise TargetError(f"cannot read the signature certificate: {exc}") from None
    transport.reset()
    auth = facts.certificates.get("auth")
    expired: bool | None = None
    if auth:
        cert, _der = split_certificate(auth)
        expiry = cert.not_valid_after_utc.astimezone(lifecycle.JST).date()
        expired = lifecycle.is_expired(expiry, today)
    return facts, Fingerprint(presence, tuple(tries), expired)  # type: ignore[arg-type]


register("der-certificate", _der_certificate, ("optional", CERT_NAMES), PROFILE)
register("certificate-valid", _certificate_valid, None, PROFILE)
register("certificate-expired", _certificate_expired, None, PROFILE)
register("signature-verifies", _signature_verifies, KEY_NAMES, PROFILE)
register("token-info", _token_info, ("optional", jpki.TOKEN_LABELS), PROFILE)
register("my-number", _my_number, None, PROFILE)
register("basic-info", _basic_info, None, PROFILE)
register("card-info", _card_info, None, PROFILE)
register("cv-certificate", _cv_certificate, None, PROFILE)
register("cv-chain", _cv_chain, None, PROFILE)
register("internal-auth-verifies", _internal_auth_verifies, None, PROFILE)
register("contact-atr", _contact_atr, None, PROFILE)
