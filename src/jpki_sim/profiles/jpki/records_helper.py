"""The card-info input helper application's (券面事項入力補助AP) records beyond the four facts.

EF 0001 (the My Number) and EF 0002 (the four basic facts) are in
:mod:`jpki_sim.profiles.jpki.records`; EF 0004, the application's CV certificate, in
:mod:`jpki_sim.profiles.jpki.records_cv`. This module has the rest, in the layouts
soltia48/myna-card read off a J-LIS test card (``src/ap/text.rs``,
``tests/fixtures/text-000[3-7].bin``)::

    EF 0003  integrity record, 336 bytes
      FF 30 82 01 4B
        DF 31 20 <SHA-256 of EF 0001 as stored, 17 bytes with its FF FF>
        DF 32 20 <SHA-256 of EF 0002's outer value after the DF21 offset table>
        DF 33 82 01 00 <signature over the DF31 and DF32 objects>
    EF 0005  application basic info, 164 bytes
      FF 40 82 00 9F
        DF 41 04 01 03 0E 01        spec version, extended Lc/Le, vendor, vendor byte
        DF 42 10 <key identifier>   names a key; not the one EF 0004 certifies
        DF 43 82 00 80 <128 bytes>  on cards: 32 opaque bytes, then 96 FF
    EF 0006  public key for session-key delivery (secure messaging), 269 bytes
      A1 82 01 09 <RSA public key: 90 exponent, 91 modulus>
    EF 0007  the application's own signing key, signed, 536 bytes
      FF 50 82 02 13
        DF 51 82 01 09 <RSA public key>
        DF 52 82 01 00 <signature over the DF51 object>
    EF 0008  sixteen FF bytes (purpose unknown)

Signatures are the issuer's (:mod:`jpki_sim.issuer.cv`); the ``*_signed_part``
functions give the bytes they cover. Test vectors: ``records_helper.vectors.json``.
"""

from __future__ import annotations

import hashlib
from typing import Any, TypedDict

from construct import (
    Const,
    ConstructError,
    GreedyBytes,
    Prefixed,
    RawCopy,
    Struct,
    Terminated,
)

from jpki_sim.iso7816 import tlv
from jpki_sim.profiles.jpki.records import (
    TAG_BASIC_INFO,
    TAG_OFFSETS,
    CardLength,
    RecordError,
    is_filler,
    pad,
    primitive,
)
from jpki_sim.profiles.jpki.records_cv import (
    RSA_PUBLIC_KEY,
    RsaPublicKey,
    encode_rsa_public_key,
    key_fields,
    key_id_text,
    key_object,
    key_of,
)

__all__ = [
    "AP_IDENTIFICATION",
    "HELPER_AP_INFO",
    "HELPER_INTEGRITY",
    "HELPER_SESSION_KEY",
    "HELPER_SIGNED_KEY",
    "UNKNOWN_EF",
    "basic_info_digest_source",
    "decode_helper_ap_info",
    "decode_helper_integrity",
    "decode_helper_session_key",
    "decode_helper_signed_key",
    "encode_helper_ap_info",
    "encode_helper_integrity",
    "encode_helper_session_key",
    "encode_helper_signed_key",
    "helper_integrity_digests",
    "helper_integrity_signed_part",
    "helper_signed_key_signed_part",
]

TAG_INTEGRITY = b"\xff\x30"
TAG_AP_INFO = b"\xff\x40"
TAG_SESSION_KEY = b"\xa1"
TAG_SIGNED_KEY = b"\xff\x50"
#: DF41 of EF 0005 on every card examined: spec version 01, extended Lc/Le 03, vendor 0E, 01
AP_IDENTIFICATION = bytes.fromhex("01030E01")
AP_INFO_TRAILING_SIZE = 128
DIGEST_SIZE = 32
SIGNATURE_SIZE = 256
#: helper EF 0008 and surface EF 0006: sixteen FF bytes on every card examined
UNKNOWN_EF = b"\xff" * 16


def _parse(construct: Struct, data: bytes, what: str) -> Any:
    try:
        parsed = construct.parse(bytes(data))
    except ConstructError as exc:
        raise RecordError(f"{what} is not in the card's layout ({exc})") from None
    if not is_filler(parsed.filler):
        raise RecordError(f"{what} has data after its object")
    return parsed


def _signature(signature: bytes) -> bytes:
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"an RSA-2048 signature is {SIGNATURE_SIZE} bytes, not {len(signature)}")
    return bytes(signature)


# ---------------------------------------------------------------- EF 0003


HELPER_INTEGRITY = Struct(
    "tag" / Const(TAG_INTEGRITY),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "signed" / RawCopy(Struct(
                "my_number_digest" / primitive(b"\xdf\x31"),
                "basic_info_digest" / primitive(b"\xdf\x32"),
            )),
            "signature" / primitive(b"\xdf\x33"),
            Terminated,
        ),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def basic_info_digest_source(basic_info_ef: bytes) -> bytes:
    """What DF32 of EF 0003 hashes: EF 0002's outer value after its DF21 offset table.

    Neither the ``FF 20`` header nor the offset table nor the filler is covered
    (soltia48/myna-card ``Attributes::digest_source``, checked against a test card).
    """
    try:
        root, _filler = tlv.parse_with_filler(bytes(basic_info_ef))
    except tlv.TlvError as exc:
        raise RecordError(f"basic info EF: {exc}") from None
    if len(root) != 1 or root[0].raw_tag != TAG_BASIC_INFO:
        raise RecordError("basic info EF is not one FF20 object")
    value = root[0].value
    table = tlv.parse(value)[0] if value else None
    if table is None or table.raw_tag != TAG_OFFSETS:
        raise RecordError("basic info EF does not start with its DF21 offset table")
    return value[len(table.to_bytes()) :]


def helper_integrity_digests(my_number_ef: bytes, basic_info_ef: bytes) -> tuple[bytes, bytes]:
    """(DF31, DF32): SHA-256 of EF 0001 as stored, filler included, and of EF 0002's source."""
    return (
        hashlib.sha256(bytes(my_number_ef)).digest(),
        hashlib.sha256(basic_info_digest_source(basic_info_ef)).digest(),
    )


def _digests(my_number_digest: bytes, basic_info_digest: bytes) -> dict[str, Any]:
    for d in (my_number_digest, basic_info_digest):
        if len(d) != DIGEST_SIZE:
            raise ValueError(f"a SHA-256 digest is {DIGEST_SIZE} bytes")
    return {
        "my_number_digest": {"value": bytes(my_number_digest)},
        "basic_info_digest": {"value": bytes(basic_info_digest)},
    }


def helper_integrity_signed_part(my_number_digest: bytes, basic_info_digest: bytes) -> bytes:
    """The bytes EF 0003's signature covers: ``DF 31 20 ..  DF 32 20 ..``."""
    signed = Struct("my_number_digest" / primitive(b"\xdf\x31"),
                    "basic_info_digest" / primitive(b"\xdf\x32"))  # fmt: skip
    return bytes(signed.build(_digests(my_number_digest, basic_info_digest)))


def encode_helper_integrity(
    my_number_digest: bytes, basic_info_digest: bytes, signature: bytes, size: int | None = None
) -> bytes:
    """EF 0003: ``FF 30 82 01 4B { DF31, DF32, DF33 signature }``."""
    ef = HELPER_INTEGRITY.build({
        "body": {"signed": {"value": _digests(my_number_digest, basic_info_digest)},
                 "signature": {"value": _signature(signature)}},
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class HelperIntegrity(TypedDict):
    my_number_digest: bytes
    basic_info_digest: bytes
    signature: bytes
    #: exactly the bytes the signature covers
    signed: bytes


def decode_helper_integrity(ef: bytes) -> HelperIntegrity:
    body = _parse(HELPER_INTEGRITY, ef, "integrity record EF").body
    digests = body.signed.value
    for d in (digests.my_number_digest, digests.basic_info_digest):
        if len(d.value) != DIGEST_SIZE:
            raise RecordError("an integrity digest is not 32 bytes")
    return HelperIntegrity(
        my_number_digest=bytes(digests.my_number_digest.value),
        basic_info_digest=bytes(digests.basic_info_digest.value),
        signature=bytes(body.signature.value),
        signed=bytes(body.signed.data),
    )


# ---------------------------------------------------------------- EF 0005


HELPER_AP_INFO = Struct(
    "tag" / Const(TAG_AP_INFO),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "identification" / primitive(b"\xdf\x41"),
            "key_id" / primitive(b"\xdf\x42"),
            "trailing" / primitive(b"\xdf\x43"),
            Terminated,
        ),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def encode_helper_ap_info(
    key_id: bytes,
    opaque: bytes,
    *,
    identification: bytes = AP_IDENTIFICATION,
    size: int | None = None,
) -> bytes:
    """EF 0005: ``FF 40 82 00 9F { DF41 04, DF42 10 key id, DF43 82 00 80 opaque + FF }``.

    ``opaque`` is what DF43 holds before its FF filler (32 bytes on cards, meaning unknown).
    """
    key_id_text(key_id)
    if len(identification) != 4:
        raise ValueError("DF41 is 4 bytes")
    if len(opaque) > AP_INFO_TRAILING_SIZE:
        raise ValueError(f"DF43 holds {AP_INFO_TRAILING_SIZE} bytes")
    trailing = pad(bytes(opaque), AP_INFO_TRAILING_SIZE)
    ef = HELPER_AP_INFO.build({
        "body": {"identification": {"value": bytes(identification)},
                 "key_id": {"value": bytes(key_id)}, "trailing": {"value": trailing}},
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class HelperApInfo(TypedDict):
    identification: bytes
    key_id: bytes
    #: the 128 bytes of DF43, filler included
    trailing: bytes


def decode_helper_ap_info(ef: bytes) -> HelperApInfo:
    body = _parse(HELPER_AP_INFO, ef, "AP basic info EF").body
    key_id_text(bytes(body.key_id.value))
    return HelperApInfo(
        identification=bytes(body.identification.value),
        key_id=bytes(body.key_id.value),
        trailing=bytes(body.trailing.value),
    )


# ---------------------------------------------------------------- EF 0006


HELPER_SESSION_KEY = Struct(
    "tag" / Const(TAG_SESSION_KEY),
    "key" / Prefixed(CardLength(), RSA_PUBLIC_KEY),
    "filler" / GreedyBytes,
)


def encode_helper_session_key(key: Any, size: int | None = None) -> bytes:
    """EF 0006: ``A1 82 01 09 { 90 exponent, 91 modulus }``."""
    ef = HELPER_SESSION_KEY.build({"key": key_fields(RsaPublicKey.of(key)), "filler": b""})
    return pad(bytes(ef), size)


def decode_helper_session_key(ef: bytes) -> RsaPublicKey:
    return key_of(_parse(HELPER_SESSION_KEY, ef, "session key EF").key)


# ---------------------------------------------------------------- EF 0007


HELPER_SIGNED_KEY = Struct(
    "tag" / Const(TAG_SIGNED_KEY),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "signed" / RawCopy(key_object(b"\xdf\x51")),
            "signature" / primitive(b"\xdf\x52"),
            Terminated,
        ),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def helper_signed_key_signed_part(key: Any) -> bytes:
    """The bytes EF 0007's signature covers: the ``DF 51 82 01 09 ..`` object."""
    return b"\xdf\x51" + tlv.card_length(len(raw := encode_rsa_public_key(key))) + raw


def encode_helper_signed_key(key: Any, signature: bytes, size: int | None = None) -> bytes:
    """EF 0007: ``FF 50 82 02 13 { DF51 the application's public key, DF52 signature }``."""
    ef = HELPER_SIGNED_KEY.build({
        "body": {"signed": {"value": {"key": key_fields(RsaPublicKey.of(key))}},
                 "signature": {"value": _signature(signature)}},
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class HelperSignedKey(TypedDict):
    public_key: RsaPublicKey
    signature: bytes
    signed: bytes


def decode_helper_signed_key(ef: bytes) -> HelperSignedKey:
    body = _parse(HELPER_SIGNED_KEY, ef, "signed key EF").body
    return HelperSignedKey(
        public_key=key_of(body.signed.value.key),
        signature=bytes(body.signature.value),
        signed=bytes(body.signed.data),
    )
