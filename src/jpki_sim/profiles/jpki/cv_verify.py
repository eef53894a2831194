"""Checking the 券面 applications' signatures against a trusted CV root, from the layout alone.

A verifier for clients (tests, the shell, anyone holding the roots `jpki-sim ca
export-cv` writes): it reads the bytes with a BER reader of its own and checks the
RSA signatures with ``cryptography``, sharing no code with the encoders of
:mod:`records_cv`, :mod:`records_helper` and :mod:`records_surface`, so an encoder's
mistake cannot hide here. What it checks, from soltia48/myna-card's reading of a
J-LIS test card (``src/data.rs``, ``src/ap/text.rs``, ``src/ap/surface.rs``):

- a CV certificate (``7F21 { 5F4E issuer id | subject id | 90 e | 91 n, 5F37 sig }``,
  with or without the 7F21 header) is signed with PKCS#1 v1.5 / SHA-256 over the
  5F4E value by the key its issuer key identifier names;
- the integrity record, the signed key, the age record and the My Number image are
  signed (PKCS#1 v1.5 / SHA-256) over every object before the signature, as written,
  by the key the application's CV certificate certifies;
- the card face is signed over a DigestInfo holding three SHA-256 digests
  (DF22 DF23 DF24 | DF25 DF26 | DF27);
- a challenge is signed by the card's own key (the one inside the records) with
  PKCS#1 v1.5 over the challenge's SHA-256 DigestInfo.

Every failure raises :class:`VerifyError` with a one-line reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "CvCert",
    "VerifyError",
    "card_face_signed_digest_info",
    "load_roots",
    "parse_cv",
    "read_objects",
    "record_key",
    "rsa_key",
    "same_key",
    "verify_card_face",
    "verify_challenge",
    "verify_cv",
    "verify_cv_chain",
    "verify_integrity",
    "verify_record",
]

SHA256_DIGEST_INFO_HEAD = bytes.fromhex("300D06096086480165030402010500")


class VerifyError(ValueError):
    """A signature, digest or layout that does not check out."""


# ---------------------------------------------------------------- a small BER reader


@dataclass(frozen=True)
class Obj:
    tag: int
    value: bytes
    #: the whole object, header included, as written
    raw: bytes


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, length, position of the value) of the object at ``pos``."""
    start = pos
    if pos >= len(data):
        raise VerifyError("truncated object")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # multi-byte tag number
        while True:
            if pos >= len(data):
                raise VerifyError(f"truncated tag at offset {start}")
            tag = tag << 8 | data[pos]
            pos += 1
            if not data[pos - 1] & 0x80:
                break
    if pos >= len(data):
        raise VerifyError(f"no length at offset {start}")
    first = data[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 1 <= n <= 3 or pos + n > len(data):
            raise VerifyError(f"bad length at offset {start}")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise VerifyError(f"object at offset {start} runs past the data")
    return tag, length, pos


def read_objects(data: bytes) -> list[Obj]:
    """The objects one after the other, up to the end or to FF/00 filler."""
    out: list[Obj] = []
    pos = 0
    while pos < len(data):
        rest = data[pos:]
        if not rest.strip(b"\xff") or not rest.strip(b"\x00"):
            break  # filler (a lone FF may also start the card's FF xx tags: only all-FF ends)
        tag, length, at = _header(data, pos)
        out.append(Obj(tag, data[at : at + length], data[pos : at + length]))
        pos = at + length
    return out


def _only(data: bytes, tag: int, what: str) -> Obj:
    objects = read_objects(bytes(data))
    if not objects or objects[0].tag != tag:
        raise VerifyError(f"{what} does not start with tag {tag:X}")
    if len(objects) != 1:
        raise VerifyError(f"{what} has more than its one {tag:X} object")
    return objects[0]


def _find(objects: Iterable[Obj], tag: int, what: str) -> Obj:
    for obj in objects:
        if obj.tag == tag:
            return obj
    raise VerifyError(f"{what} has no {tag:X} object")


def rsa_key(value: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from its ``90`` (exponent) and ``91`` (modulus) objects."""
    objects = read_objects(value)
    if [o.tag for o in objects] != [0x90, 0x91]:
        raise VerifyError("a public key is a 90 object then a 91 object")
    e, n = (int.from_bytes(o.value, "big") for o in objects)
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise VerifyError(f"unusable RSA key ({exc})") from None


# ---------------------------------------------------------------- signatures


def _verify_sha256(key: rsa.RSAPublicKey, signature: bytes, data: bytes, what: str) -> None:
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerifyError(f"{what}: the signature does not verify") from None


def _verify_raw_pkcs1(key: rsa.RSAPublicKey, signature: bytes, payload: bytes, what: str) -> None:
    """PKCS#1 v1.5 type 1 over ``payload`` as given, padding checked in full."""
    numbers = key.public_numbers()
    k = (numbers.n.bit_length() + 7) // 8
    s = int.from_bytes(signature, "big")
    if len(signature) != k or s >= numbers.n:
        raise VerifyError(f"{what}: the signature is not {k} bytes below the modulus")
    em = pow(s, numbers.e, numbers.n).to_bytes(k, "big")
    want = b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload
    if len(payload) > k - 11 or em != want:
        raise VerifyError(f"{what}: the signature does not verify")


# ---------------------------------------------------------------- CV certificates


@dataclass(frozen=True)
class CvCert:
    issuer_key_id: bytes
    subject_key_id: bytes
    public_key: rsa.RSAPublicKey
    signature: bytes
    #: the 5F4E value the signature covers
    body: bytes


def parse_cv(data: bytes) -> CvCert:
    """A CV certificate, with its 7F21 header (EF 0004) or without it (GET DATA)."""
    raw = bytes(data)
    contents = _only(raw, 0x7F21, "CV certificate").value if raw[:2] == b"\x7f\x21" else raw
    objects = read_objects(contents)
    if [o.tag for o in objects] != [0x5F4E, 0x5F37]:
        raise VerifyError("a CV certificate is a 5F4E body then a 5F37 signature")
    body = objects[0].value
    if len(body) < 33:
        raise VerifyError("CV body shorter than its two key identifiers")
    return CvCert(body[:16], body[16:32], rsa_key(body[32:]), objects[1].value, body)


def verify_cv(cert: CvCert | bytes, issuer_key: rsa.RSAPublicKey) -> CvCert:
    """Check ``cert``'s signature with ``issuer_key``; returns the parsed certificate."""
    parsed = cert if isinstance(cert, CvCert) else parse_cv(cert)
    _verify_sha256(issuer_key, parsed.signature, parsed.body, "CV certificate")
    return parsed


def load_roots(data: bytes) -> dict[bytes, rsa.RSAPublicKey]:
    """The trusted roots from ``jpki-sim ca export-cv``'s file: self-signed CV certificates.

    Each must name itself as issuer and verify under its own key.
    """
    roots: dict[bytes, rsa.RSAPublicKey] = {}
    for obj in read_objects(bytes(data)):
        if obj.tag != 0x7F21:
            raise VerifyError(f"a root file holds 7F21 objects, not {obj.tag:X}")
        cert = parse_cv(obj.raw)
        if cert.issuer_key_id != cert.subject_key_id:
            raise VerifyError("a root certificate names another key as its issuer")
        verify_cv(cert, cert.public_key)
        roots[cert.subject_key_id] = cert.public_key
    if not roots:
        raise VerifyError("no root certificates in the file")
    return roots


def verify_cv_chain(
    chain: Sequence[CvCert | bytes], roots: Mapping[bytes, rsa.RSAPublicKey]
) -> rsa.RSAPublicKey:
    """Check a chain root-side first; returns the key the last certificate certifies.

    The first certificate's issuer must be a trusted root; each later one must be
    issued by the key the one before certifies.
    """
    if not chain:
        raise VerifyError("an empty chain verifies nothing")
    certs = [c if isinstance(c, CvCert) else parse_cv(c) for c in chain]
    issuer = roots.get(certs[0].issuer_key_id)
    if issuer is None:
        raise VerifyError("the chain's first issuer is not a trusted root")
    previous: CvCert | None = None
    for cert in certs:
        if previous is not None:
            if cert.issuer_key_id != previous.subject_key_id:
                raise VerifyError("the chain is broken: an issuer the one above does not certify")
            issuer = previous.public_key
        verify_cv(cert, issuer)
        previous = cert
    assert previous is not None
    return previous.public_key


# ---------------------------------------------------------------- records


def verify_record(
    ef: bytes, outer_tag: int, signature_tag: int, issuer_key: rsa.RSAPublicKey
) -> list[Obj]:
    """Check a record signed over every object before its signature object.

    For helper EF 0003 (FF30, DF33) and EF 0007 (FF50, DF52), surface EF 0001
    (FF10, DF13) and EF 0005 (FF40, DF43). Returns the record's objects.
    """
    objects = read_objects(_only(bytes(ef), outer_tag, f"{outer_tag:X} record").value)
    tags = [o.tag for o in objects]
    if signature_tag not in tags:
        raise VerifyError(f"{outer_tag:X} record has no {signature_tag:X} signature")
    at = tags.index(signature_tag)
    signed = b"".join(o.raw for o in objects[:at])
    _verify_sha256(issuer_key, objects[at].value, signed, f"{outer_tag:X} record")
    return objects


def card_face_signed_digest_info(ef: bytes) -> bytes:
    """The DigestInfo the card face's signature should sign, recomputed from the EF."""
    objects = read_objects(_only(bytes(ef), 0xFF20, "card face").value)
    by_tag = {o.tag: o for o in objects}
    groups = ((0xDF22, 0xDF23, 0xDF24), (0xDF25, 0xDF26), (0xDF27,))
    digests = b""
    for group in groups:
        missing = [t for t in group if t not in by_tag]
        if missing:
            raise VerifyError(f"card face has no {missing[0]:X} object")
        digests += hashlib.sha256(b"".join(by_tag[t].raw for t in group)).digest()
    inner = SHA256_DIGEST_INFO_HEAD + b"\x04" + bytes((len(digests),)) + digests
    return b"\x30" + bytes((len(inner),)) + inner


def verify_card_face(ef: bytes, issuer_key: rsa.RSAPublicKey) -> list[Obj]:
    """Check the card face's signature (DF28) over its three digests."""
    payload = card_face_signed_digest_info(ef)
    objects = read_objects(_only(bytes(ef), 0xFF20, "card face").value)
    signature = _find(objects, 0xDF28, "card face").value
    _verify_raw_pkcs1(issuer_key, signature, payload, "card face")
    return objects


def verify_integrity(
    integrity_ef: bytes, my_number_ef: bytes, basic_info_ef: bytes, issuer_key: rsa.RSAPublicKey
) -> None:
    """Check helper EF 0003: its signature, and that its digests match EF 0001 and EF 0002.

    ``my_number_ef`` is EF 0001 as stored (all 17 bytes, filler included);
    DF32 hashes EF 0002's outer value after its DF21 offset table.
    """
    objects = verify_record(integrity_ef, 0xFF30, 0xDF33, issuer_key)
    if hashlib.sha256(bytes(my_number_ef)).digest() != _find(objects, 0xDF31, "EF 0003").value:
        raise VerifyError("EF 0003's DF31 is not the SHA-256 of EF 0001 as stored")
    facts = read_objects(_only(bytes(basic_info_ef), 0xFF20, "EF 0002").value)
    if not facts or facts[0].tag != 0xDF21:
        raise VerifyError("EF 0002 does not start with its DF21 offset table")
    source = b"".join(o.raw for o in facts[1:])
    if hashlib.sha256(source).digest() != _find(objects, 0xDF32, "EF 0003").value:
        raise VerifyError("EF 0003's DF32 is not the SHA-256 of EF 0002 after its offsets")


def verify_challenge(card_key: rsa.RSAPublicKey, challenge: bytes, signature: bytes) -> None:
    """Check the card's ``80 2A`` answer: PKCS#1 v1.5 over the challenge's SHA-256 DigestInfo."""
    _verify_sha256(card_key, signature, challenge, "challenge")


def record_key(ef: bytes, outer_tag: int, key_tag: int) -> rsa.RSAPublicKey:
    """The card's own key carried in a record (DF12, DF24, DF42) or EF 0007's DF51."""
    objects = read_objects(_only(bytes(ef), outer_tag, f"{outer_tag:X} record").value)
    return rsa_key(_find(objects, key_tag, f"{outer_tag:X} record").value)


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()
