"""Named checks: expectations on response data that exact bytes cannot state.

A check is a string ``NAME`` or ``NAME:ARG``. Each returns None when it holds,
else a one-line reason (shown in the runner's diff).

=========================== ==================================================
``any``                     data not checked
``len:N``                   exactly N bytes of data
``tries-left:N``            the status word is 63CN
``filler``                  non-empty, every byte FF
``der-certificate``         a DER X.509 certificate, optionally followed by FF filler
``der-certificate:WHICH``   that, and the card's own ``auth``/``sign``/``auth-ca``/``sign-ca``
``certificate-valid``       a DER certificate valid on the vector's date
``certificate-expired``     a DER certificate expired on the vector's date
``signature-verifies:KEY``  a 256-byte signature by the card's ``auth``/``sign`` key over the
                            data the command sent, in the command's scheme (P1 00-05)
``token-info``              EF 0006: 160 bytes, label ``JPKIAPICCTOKEN2`` padded to 32
``my-number``               helper EF 0001: ``FF 10 0C``, 12 digits with a valid check digit
``basic-info``              helper EF 0002: the four facts in the card's TLV layout
=========================== ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

CERT_NAMES = ("auth", "sign", "auth-ca", "sign-ca")
KEY_NAMES = ("auth", "sign")
SIGNATURE_LENGTH = 256


@dataclass
class CardFacts:
    """What the checks need to know about the card under test: its certificates (DER)."""

    certificates: dict[str, bytes | None] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: Any) -> CardFacts:
        return cls(
            {
                "auth": state.auth.cert_der if state.auth else None,
                "sign": state.sign.cert_der if state.sign else None,
                "auth-ca": state.auth_ca_der,
                "sign-ca": state.sign_ca_der,
            }
        )


@dataclass
class CheckContext:
    data: bytes
    sw: int
    command: bytes
    facts: CardFacts
    on: date


Check = Callable[[CheckContext, str | None], str | None]


def _split(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def validate(spec: str) -> None:
    """Raise ValueError when ``spec`` is not a known check with a valid argument."""
    name, arg = _split(spec)
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r} (known: {', '.join(CHECKS)})")
    allowed = ARGUMENTS[name]
    if allowed is None:
        if arg is not None:
            raise ValueError(f"check {name!r} takes no argument")
    elif allowed == "int":
        if arg is None or not arg.isdigit():
            raise ValueError(f"check {name!r} needs a number: {name}:N")
    elif allowed == "optional-cert":
        if arg is not None and arg not in CERT_NAMES:
            raise ValueError(f"check {name!r}: certificate must be one of {', '.join(CERT_NAMES)}")
    elif arg not in allowed:
        raise ValueError(f"check {name!r} needs one of {', '.join(allowed)}: {name}:{allowed[0]}")


def run(spec: str, ctx: CheckContext) -> str | None:
    name, arg = _split(spec)
    try:
        return CHECKS[name](ctx, arg)
    except Exception as exc:  # a check must report, never crash the runner
        return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- the checks


def _any(ctx: CheckContext, arg: str | None) -> str | None:
    return None


def _len(ctx: CheckContext, arg: str | None) -> str | None:
    want = int(arg or 0)
    if len(ctx.data) != want:
        return f"{len(ctx.data)} bytes of data, want {want}"
    return None


def _tries_left(ctx: CheckContext, arg: str | None) -> str | None:
    want = int(arg or 0)
    if ctx.sw & 0xFFF0 != 0x63C0:
        return f"status word {ctx.sw:04X} reports no tries left count (want 63C{want:X})"
    if ctx.sw & 0x0F != want:
        return f"{ctx.sw & 0x0F} tries left, want {want}"
    return None


def _filler(ctx: CheckContext, arg: str | None) -> str | None:
    if not ctx.data:
        return "no data (want FF filler)"
    if ctx.data.strip(b"\xff"):
        return "not all FF filler"
    return None


def split_certificate(data: bytes) -> tuple[Any, bytes]:
    """(the parsed certificate, its exact DER) from data that starts with one."""
    from cryptography import x509

    from jpki_sim.profiles.jpki.client import der_length

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
    from jpki_sim.profiles.jpki import ids as jpki

    if len(ctx.data) != 160:
        return f"{len(ctx.data)} bytes, want 160"
    label = jpki.TOKEN_LABEL.encode().ljust(32, b" ")
    if ctx.data[:32] != label:
        return f"label {ctx.data[:32]!r}, want {label!r}"
    return None


def _my_number(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.iso7816 import tlv
    from jpki_sim.profiles.jpki import mynumber

    try:
        number = tlv.decode_helper_my_number(ctx.data)
    except ValueError as exc:
        return str(exc)
    if not mynumber.is_valid(number):
        return f"My Number {number} has a wrong check digit"
    return None


def _basic_info(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.iso7816 import tlv

    try:
        info = tlv.decode_helper_basic_info(ctx.data)
    except ValueError as exc:
        return f"not the four-facts TLV: {exc}"
    if not info["name"] or info["sex"] not in ("0", "1", "2", "9"):
        return f"implausible facts: {info}"
    return None


CHECKS: dict[str, Check] = {
    "any": _any,
    "len": _len,
    "tries-left": _tries_left,
    "filler": _filler,
    "der-certificate": _der_certificate,
    "certificate-valid": _certificate_valid,
    "certificate-expired": _certificate_expired,
    "signature-verifies": _signature_verifies,
    "token-info": _token_info,
    "my-number": _my_number,
    "basic-info": _basic_info,
}

#: what each check takes after the colon: None nothing, "int" a number, else the choices
ARGUMENTS: dict[str, Any] = {
    "any": None,
    "len": "int",
    "tries-left": "int",
    "filler": None,
    "der-certificate": "optional-cert",
    "certificate-valid": None,
    "certificate-expired": None,
    "signature-verifies": KEY_NAMES,
    "token-info": None,
    "my-number": None,
    "basic-info": None,
}
