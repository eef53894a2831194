"""RSA public keys, key identifiers and card-verifiable certificates in the card's layout.

Both 券面 applications keep their card-verifiable (CV) certificate in EF 0004; the
master file's GET DATA hands out two more (F8 and 7F21), forming a chain whose root
key is on no card. The layouts are soltia48/myna-card's (``src/data.rs``), read off a
J-LIS test card, and are what every 券面 record embeds::

    RSA public key (DF12, DF24, DF42, DF51, A1 and the end of a CV body):
      90 03 01 00 01            public exponent, big-endian
      91 82 01 00 <256 bytes>   modulus, big-endian (RSA-2048)

    key identifier (証明者鍵ID, 被証明者鍵ID), 16 bytes:
      7 ASCII digits (the key's number) | 08 05 | 3 ASCII digits (group) | 4 bytes padding
      printed "9000023/001"

    CV certificate, 568 bytes:
      7F 21 82 02 33
        5F 4E 82 01 29   issuer key id (16) | subject key id (16) | public key (265)
        5F 37 82 01 00   signature over the 297 bytes of the 5F4E value

GET DATA returns a certificate's contents without the ``7F 21 82 02 33`` header
(:func:`cv_contents`); :func:`decode_cv_certificate` reads both forms. The signature
scheme (PKCS#1 v1.5 with SHA-256 over the 5F4E value) is the issuer's business
(:mod:`jpki_sim.issuer.cv`); checking it is :mod:`jpki_sim.profiles.jpki.cv_verify`'s.

Test vectors: ``records_cv.vectors.json`` beside this module.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict

from construct import (
    Bytes,
    Const,
    ConstructError,
    GreedyBytes,
    Prefixed,
    RawCopy,
    Struct,
    Terminated,
)
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.profiles.jpki.records import CardLength, RecordError, is_filler, primitive

__all__ = [
    "CV_CERTIFICATE",
    "CV_CERTIFICATE_SIZE",
    "KEY_ID_SIZE",
    "RSA_PUBLIC_KEY",
    "CvCertificate",
    "RsaPublicKey",
    "cv_body",
    "cv_contents",
    "decode_cv_certificate",
    "decode_rsa_public_key",
    "encode_cv_certificate",
    "encode_rsa_public_key",
    "key_id",
    "key_fields",
    "key_id_text",
    "key_object",
    "key_of",
]

TAG_CV_CERTIFICATE = b"\x7f\x21"
TAG_CV_BODY = b"\x5f\x4e"
TAG_CV_SIGNATURE = b"\x5f\x37"
TAG_EXPONENT = b"\x90"
TAG_MODULUS = b"\x91"
KEY_ID_SIZE = 16
KEY_ID_MARKER = b"\x08\x05"
#: the card's keys are RSA-2048 with e = 65537: 297-byte body, 256-byte signature
KEY_BITS = 2048
CV_BODY_SIZE = 2 * KEY_ID_SIZE + 265
CV_CERTIFICATE_SIZE = 568


class RsaPublicKey(NamedTuple):
    """An RSA public key as the card stores it (tags 90 and 91)."""

    exponent: int
    modulus: int

    @property
    def bits(self) -> int:
        return self.modulus.bit_length()

    def to_cryptography(self) -> rsa.RSAPublicKey:
        return rsa.RSAPublicNumbers(self.exponent, self.modulus).public_key()

    @classmethod
    def of(cls, key: rsa.RSAPublicKey | rsa.RSAPrivateKey | RsaPublicKey) -> RsaPublicKey:
        """The card form of a ``cryptography`` key (public, or the public half of a private)."""
        if isinstance(key, RsaPublicKey):
            return key
        public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
        numbers = public.public_numbers()
        return cls(numbers.e, numbers.n)


#: an RSA public key: the exponent object, then the modulus object
RSA_PUBLIC_KEY = Struct(
    "exponent" / primitive(TAG_EXPONENT),
    "modulus" / primitive(TAG_MODULUS),
    Terminated,
)


def key_object(tag: bytes) -> Struct:
    """``tag`` + card length + an RSA public key (DF12, DF24, DF42, DF51, A1)."""
    return Struct("tag" / Const(tag), "key" / Prefixed(CardLength(), RSA_PUBLIC_KEY))


KEY_ID = Struct(
    "number" / Bytes(7),
    "marker" / Const(KEY_ID_MARKER),
    "group" / Bytes(3),
    "padding" / Bytes(4),
)

CV_BODY = Struct(
    "issuer" / Bytes(KEY_ID_SIZE),
    "subject" / Bytes(KEY_ID_SIZE),
    "key" / RSA_PUBLIC_KEY,
)

#: what GET DATA returns: the 7F21 template's contents
CV_CONTENTS = Struct(
    "body_tag" / Const(TAG_CV_BODY),
    "body" / Prefixed(CardLength(), RawCopy(CV_BODY)),
    "signature" / primitive(TAG_CV_SIGNATURE),
)

#: EF 0004 of the 券面 applications: the certificate, then FF filler
CV_CERTIFICATE = Struct(
    "tag" / Const(TAG_CV_CERTIFICATE),
    "contents" / Prefixed(CardLength(), Struct("cert" / CV_CONTENTS, Terminated)),
    "filler" / GreedyBytes,
)


# ---------------------------------------------------------------- keys


def _unsigned(n: int, size: int | None = None) -> bytes:
    if n <= 0:
        raise ValueError("RSA key numbers are positive")
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


def key_fields(key: RsaPublicKey) -> dict[str, dict[str, bytes]]:
    """The build fields of :data:`RSA_PUBLIC_KEY` for ``key``."""
    return {
        "exponent": {"value": _unsigned(key.exponent)},
        "modulus": {"value": _unsigned(key.modulus, (key.bits + 7) // 8)},
    }


def encode_rsa_public_key(key: rsa.RSAPublicKey | rsa.RSAPrivateKey | RsaPublicKey) -> bytes:
    """``90 Le exponent 91 82 01 00 modulus``: the exponent minimal, the modulus in full."""
    return bytes(RSA_PUBLIC_KEY.build(key_fields(RsaPublicKey.of(key))))


def key_of(parsed: Any) -> RsaPublicKey:
    """The key of a parsed :data:`RSA_PUBLIC_KEY`."""
    exponent = bytes(parsed.exponent.value)
    modulus = bytes(parsed.modulus.value)
    if not exponent or not modulus:
        raise RecordError("an RSA key number is empty")
    return RsaPublicKey(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big"))


def decode_rsa_public_key(data: bytes) -> RsaPublicKey:
    """The key from its 90/91 objects (nothing may follow them)."""
    try:
        parsed = RSA_PUBLIC_KEY.parse(bytes(data))
    except ConstructError as exc:
        raise RecordError(f"not an RSA public key in 90/91 form ({exc})") from None
    return key_of(parsed)


# ---------------------------------------------------------------- key identifiers


def key_id(number: str, group: str = "001", padding: bytes = bytes(4)) -> bytes:
    """A 16-byte key identifier: 7 digits, ``08 05``, 3 digits, 4 bytes of padding."""
    if len(number) != 7 or not number.isascii() or not number.isdigit():
        raise ValueError(f"a key number is 7 ASCII digits, got {number!r}")
    if len(group) != 3 or not group.isascii() or not group.isdigit():
        raise ValueError(f"a key group is 3 ASCII digits, got {group!r}")
    if len(padding) != 4:
        raise ValueError("a key identifier's padding is 4 bytes")
    return number.encode() + KEY_ID_MARKER + group.encode() + bytes(padding)


def key_id_text(raw: bytes) -> str:
    """``9000023/001`` for a well-formed identifier (RecordError otherwise)."""
    if len(raw) != KEY_ID_SIZE:
        raise RecordError(f"a key identifier is {KEY_ID_SIZE} bytes, not {len(raw)}")
    parsed = KEY_ID.parse(raw) if raw[7:9] == KEY_ID_MARKER else None
    if parsed is None or not (parsed.number + parsed.group).isdigit():
        raise RecordError(f"{raw.hex().upper()} is not a key identifier")
    return f"{parsed.number.decode()}/{parsed.group.decode()}"


# ---------------------------------------------------------------- CV certificates


class CvCertificate(TypedDict):
    """A card-verifiable certificate, decoded."""

    issuer_key_id: bytes
    subject_key_id: bytes
    public_key: RsaPublicKey
    signature: bytes
    #: exactly the bytes the signature covers: the 5F4E value
    body: bytes


def cv_body(issuer: bytes, subject: bytes, key: rsa.RSAPublicKey | RsaPublicKey) -> bytes:
    """The 297 bytes a CV certificate's signature covers (the 5F4E value)."""
    for ident in (issuer, subject):
        key_id_text(ident)  # refuses a malformed identifier
    card_key = RsaPublicKey.of(key)
    if card_key.bits != KEY_BITS:
        raise ValueError(f"the card's CV certificates carry RSA-{KEY_BITS} keys")
    body = bytes(issuer) + bytes(subject) + encode_rsa_public_key(card_key)
    if len(body) != CV_BODY_SIZE:
        raise ValueError(f"a CV body is {CV_BODY_SIZE} bytes (e = 65537), not {len(body)}")
    return body


def encode_cv_certificate(
    issuer: bytes, subject: bytes, key: rsa.RSAPublicKey | RsaPublicKey, signature: bytes
) -> bytes:
    """``7F 21 82 02 33 { 5F 4E 82 01 29 body, 5F 37 82 01 00 signature }`` (568 bytes)."""
    body = cv_body(issuer, subject, key)
    if len(signature) != KEY_BITS // 8:
        raise ValueError(f"an RSA-{KEY_BITS} signature is {KEY_BITS // 8} bytes")
    return bytes(
        CV_CERTIFICATE.build(
            {
                "contents": {"cert": {"body": {"data": body}, "signature": {"value": signature}}},
                "filler": b"",
            }
        )
    )


def decode_cv_certificate(data: bytes) -> CvCertificate:
    """A CV certificate from EF 0004 (7F21 template, maybe FF filler) or GET DATA (contents)."""
    raw = bytes(data)
    try:
        if raw.startswith(TAG_CV_CERTIFICATE):
            parsed = CV_CERTIFICATE.parse(raw)
            if not is_filler(parsed.filler):
                raise RecordError("CV certificate EF has data after the certificate")
            cert = parsed.contents.cert
        else:
            cert = Struct("cert" / CV_CONTENTS, "rest" / GreedyBytes).parse(raw)
            if not is_filler(cert.rest):
                raise RecordError("CV certificate has data after its signature")
            cert = cert.cert
    except ConstructError as exc:
        raise RecordError(f"not a CV certificate in the card's layout ({exc})") from None
    body = cert.body.value
    for ident in (body.issuer, body.subject):
        key_id_text(bytes(ident))
    return CvCertificate(
        issuer_key_id=bytes(body.issuer),
        subject_key_id=bytes(body.subject),
        public_key=key_of(body.key),
        signature=bytes(cert.signature.value),
        body=bytes(cert.body.data),
    )


def cv_contents(certificate: bytes) -> bytes:
    """What GET DATA answers for a CV certificate: its 7F21 template's contents."""
    decoded = decode_cv_certificate(certificate)
    return bytes(
        CV_CONTENTS.build({"body": {"data": decoded["body"]},
                           "signature": {"value": decoded["signature"]}})
    )  # fmt: skip
