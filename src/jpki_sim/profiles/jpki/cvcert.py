"""Card-verifiable certificates (CV certificates) as the My Number card stores them.

Layout, read off J-LIS test cards (MC ``src/data.rs``, ``tests/fixtures``)::

    7F 21 82 02 33                     the certificate (template)
      5F 4E 82 01 29                   body, 297 bytes:
        16 bytes  issuer key id          (証明者鍵ID: which key signed it)
        16 bytes  subject key id         (被証明者鍵ID: which key it certifies)
        90 03 01 00 01                   RSA public exponent
        91 82 01 00 <256 bytes>          RSA-2048 modulus
      5F 37 82 01 00 <256 bytes>       PKCS#1 v1.5 SHA-256 signature over the body

A key id is ``NNNNNNN 08 05 GGG`` + 4 bytes of padding: a 7-digit number, two
fixed bytes, a 3-digit group (ASCII). Production ids begin with 5, the J-LIS test
hierarchy's with 6. An EF holds the whole template; GET DATA at the MF level
answers the template's contents (``5F4E ... 5F37 ...``) without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki_sim.iso7816 import tlv

TAG_CERTIFICATE = 0x7F21
TAG_BODY = 0x5F4E
TAG_SIGNATURE = 0x5F37
TAG_EXPONENT = 0x90
TAG_MODULUS = 0x91
KEY_ID_SIZE = 16
BODY_SIZE = 297
#: the two bytes between a key id's number and its group
KEY_ID_MIDDLE = b"\x08\x05"


class CvError(ValueError):
    """Bytes that are not a CV certificate of the card's layout."""


def key_id(number: str, group: str = "001", padding_bytes: bytes = b"\x00" * 4) -> bytes:
    """A 16-byte key id: 7 digits, ``08 05``, 3 digits, 4 bytes of padding."""
    if len(number) != 7 or not number.isdigit() or len(group) != 3 or not group.isdigit():
        raise ValueError("a key id is a 7-digit number and a 3-digit group")
    if len(padding_bytes) != 4:
        raise ValueError("a key id ends in 4 bytes of padding")
    return number.encode() + KEY_ID_MIDDLE + group.encode() + padding_bytes


def show_key_id(raw: bytes) -> str:
    """``6000020/001``, as readers print a key id."""
    return f"{raw[:7].decode('ascii', 'replace')}/{raw[9:12].decode('ascii', 'replace')}"


def public_key_objects(key: rsa.RSAPublicKey) -> bytes:
    """``90`` exponent + ``91`` modulus, as the card writes an RSA public key."""
    numbers = key.public_numbers()
    size = (key.key_size + 7) // 8
    exponent = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return (tlv.Tlv.primitive(TAG_EXPONENT, exponent).to_bytes()
            + tlv.Tlv.primitive(TAG_MODULUS, numbers.n.to_bytes(size, "big")).to_bytes())


def issue(issuer_key: rsa.RSAPrivateKey, issuer_id: bytes, subject_id: bytes,
          subject_key: rsa.RSAPublicKey) -> bytes:
    """A CV certificate (the whole ``7F21`` template) signed by ``issuer_key``."""
    if len(issuer_id) != KEY_ID_SIZE or len(subject_id) != KEY_ID_SIZE:
        raise ValueError("key ids are 16 bytes")
    body = issuer_id + subject_id + public_key_objects(subject_key)
    signature = issuer_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return tlv.Tlv.constructed(TAG_CERTIFICATE, [
        tlv.Tlv.primitive(TAG_BODY, body),
        tlv.Tlv.primitive(TAG_SIGNATURE, signature),
    ]).to_bytes()


def contents(certificate: bytes) -> bytes:
    """What GET DATA answers for a certificate: the template's value (or the bytes as given)."""
    if certificate[:2] == TAG_CERTIFICATE.to_bytes(2, "big"):
        nodes = tlv.parse(certificate)
        if len(nodes) != 1:
            raise CvError("a CV certificate is one 7F21 object")
        return nodes[0].value
    return certificate


@dataclass(frozen=True)
class CvCertificate:
    issuer_id: bytes
    subject_id: bytes
    public_key: rsa.RSAPublicKey
    signature: bytes
    body: bytes

    def verify(self, issuer_public: rsa.RSAPublicKey) -> None:
        """Raise ``cryptography.exceptions.InvalidSignature`` unless ``issuer_public`` signed it."""
        issuer_public.verify(self.signature, self.body, padding.PKCS1v15(), hashes.SHA256())


def parse(data: bytes) -> CvCertificate:
    """A CV certificate with or without its ``7F21`` template."""
    try:
        nodes = tlv.parse(contents(data))
    except tlv.TlvError as exc:
        raise CvError(f"not BER-TLV: {exc}") from None
    body = tlv.find(nodes, TAG_BODY)
    signature = tlv.find(nodes, TAG_SIGNATURE)
    if body is None or signature is None:
        raise CvError("a CV certificate has a 5F4E body and a 5F37 signature")
    raw = body.value
    if len(raw) != BODY_SIZE:
        raise CvError(f"the body is {BODY_SIZE} bytes, not {len(raw)}")
    key_nodes = tlv.parse(raw[2 * KEY_ID_SIZE :])
    exponent = tlv.find(key_nodes, TAG_EXPONENT)
    modulus = tlv.find(key_nodes, TAG_MODULUS)
    if exponent is None or modulus is None:
        raise CvError("the body's key has no 90 exponent or 91 modulus")
    public = rsa.RSAPublicNumbers(
        int.from_bytes(exponent.value, "big"), int.from_bytes(modulus.value, "big")
    ).public_key()
    return CvCertificate(raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE : 2 * KEY_ID_SIZE], public,
                         signature.value, raw)
