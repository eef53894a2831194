"""The card-surface application's (券面事項確認AP) records, byte for byte.

Layouts as soltia48/myna-card read them off a J-LIS test card (``src/ap/surface.rs``,
``tests/fixtures/surface-000[1-5].bin``); EF 0004, the CV certificate, is
:mod:`jpki_sim.profiles.jpki.records_cv`'s::

    EF 0001  age record (birth-date key 0011), 547 bytes
      FF 10 82 02 1E
        DF 11 08 YYYYMMDD               birth date, Gregorian
        DF 12 82 01 09 <public key>     the card's own key (signs challenges)
        DF 13 82 01 00 <signature over DF11 and DF12>
    EF 0002  card face (照合番号A or B)
      FF 20 82 LL LL
        DF 21 12 <nine u16: offsets of DF22..DF2A from the EF start>
        DF 22 08 YYYYMMDD               birth date
        DF 23 01 s                      sex, one ASCII digit
        DF 24 82 01 09 <public key>     the card's own key
        DF 25 L  <name as a 1-bit PNG>
        DF 26 L  <address as a 1-bit PNG>
        DF 27 L  <photo, greyscale JPEG 2000 (JP2)>
        DF 28 82 01 00 <signature>
        DF 29 08 YYYYMMDD               card expiry: after the signature, not covered
        DF 2A L  <security code as a 1-bit PNG>: likewise not covered
    EF 0003  basic info (free)
      FF 30 82 01 3B
        DF 31 04 <identification>   06 03 0E 01 on cards
        DF 32 10 <key identifier>   names a key; not the one EF 0004 certifies
        DF 33 01 <version>          00
        DF 34 05 <全国地方公共団体コード, 5 ASCII digits>
        DF 35 82 01 10 <key identifier (16) + 256 opaque bytes>
    EF 0005  My Number image (照合番号A only)
      FF 40 82 LL LL
        DF 41 L  <the My Number as a 1-bit PNG>
        DF 42 82 01 09 <public key>
        DF 43 82 01 00 <signature over DF41 and DF42>
    EF 0006  sixteen FF bytes (purpose unknown)

Every signature is PKCS#1 v1.5 over a SHA-256 DigestInfo of the objects before it,
except the card face's: its DigestInfo holds three SHA-256 digests, one of each group
(DF22 DF23 DF24 | DF25 DF26 | DF27), concatenated, 96 bytes
(:func:`card_face_digest_info`). Test vectors: ``records_surface.vectors.json``.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any, TypedDict

from construct import (
    Array,
    Const,
    ConstructError,
    GreedyBytes,
    Int16ub,
    Prefixed,
    RawCopy,
    Struct,
    Tell,
    Terminated,
)

from jpki_sim.profiles.jpki.records import (
    SEX_CODES,
    CardLength,
    RecordError,
    is_filler,
    pad,
    primitive,
)
from jpki_sim.profiles.jpki.records_cv import (
    RsaPublicKey,
    key_fields,
    key_id_text,
    key_object,
    key_of,
)

__all__ = [
    "CARD_FACE",
    "SURFACE_AGE_RECORD",
    "SURFACE_BASIC_INFO",
    "SURFACE_IDENTIFICATION",
    "SURFACE_MY_NUMBER_IMAGE",
    "card_face_digest_info",
    "card_face_segments",
    "decode_age_record",
    "decode_card_face",
    "decode_my_number_image",
    "decode_surface_basic_info",
    "encode_age_record",
    "encode_card_face",
    "encode_my_number_image",
    "encode_surface_basic_info",
    "age_record_signed_part",
    "my_number_image_signed_part",
]

TAG_AGE_RECORD = b"\xff\x10"
TAG_CARD_FACE = b"\xff\x20"
TAG_BASIC_INFO = b"\xff\x30"
TAG_MY_NUMBER_IMAGE = b"\xff\x40"
#: DF31 of EF 0003 on the cards examined
SURFACE_IDENTIFICATION = bytes.fromhex("06030E01")
SURFACE_VERSION = 0x00
SIGNATURE_SIZE = 256
OPAQUE_SIZE = 256
#: DER of a DigestInfo for SHA-256 holding 96 bytes (three digests): 30 71 .. 04 60
_SHA256_ALGORITHM = bytes.fromhex("300D06096086480165030402010500")
FACE_FIELDS = ("birthdate", "sex", "key", "name", "address", "photo", "signature", "expiry",
               "security_code")  # fmt: skip


def _ymd(d: date | str) -> bytes:
    text = d.strftime("%Y%m%d") if isinstance(d, date) else d
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"a date is 8 digits YYYYMMDD, got {d!r}")
    return text.encode()


def _signature(signature: bytes) -> bytes:
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"an RSA-2048 signature is {SIGNATURE_SIZE} bytes, not {len(signature)}")
    return bytes(signature)


def _parse(construct: Struct, data: bytes, what: str) -> Any:
    try:
        parsed = construct.parse(bytes(data))
    except ConstructError as exc:
        raise RecordError(f"{what} is not in the card's layout ({exc})") from None
    if not is_filler(parsed.filler):
        raise RecordError(f"{what} has data after its object")
    return parsed


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise RecordError(f"{what} is not ASCII") from None


# ---------------------------------------------------------------- EF 0001


_AGE_SIGNED = Struct("birthdate" / primitive(b"\xdf\x11"), "key" / key_object(b"\xdf\x12"))

SURFACE_AGE_RECORD = Struct(
    "tag" / Const(TAG_AGE_RECORD),
    "body" / Prefixed(
        CardLength(),
        Struct("signed" / RawCopy(_AGE_SIGNED), "signature" / primitive(b"\xdf\x13"), Terminated),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def _age_fields(born: date | str, key: Any) -> dict[str, Any]:
    return {"birthdate": {"value": _ymd(born)}, "key": {"key": key_fields(RsaPublicKey.of(key))}}


def age_record_signed_part(born: date | str, card_key: Any) -> bytes:
    """What EF 0001's signature covers: ``DF 11 08 YYYYMMDD  DF 12 82 01 09 key``."""
    return bytes(_AGE_SIGNED.build(_age_fields(born, card_key)))


def encode_age_record(
    born: date | str, card_key: Any, signature: bytes, size: int | None = None
) -> bytes:
    """EF 0001: ``FF 10 82 02 1E { DF11 birth date, DF12 the card's key, DF13 signature }``."""
    ef = SURFACE_AGE_RECORD.build({
        "body": {"signed": {"value": _age_fields(born, card_key)},
                 "signature": {"value": _signature(signature)}},
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class AgeRecord(TypedDict):
    birthdate_text: str
    public_key: RsaPublicKey
    signature: bytes
    signed: bytes


def decode_age_record(ef: bytes) -> AgeRecord:
    body = _parse(SURFACE_AGE_RECORD, ef, "age record EF").body
    return AgeRecord(
        birthdate_text=_text(bytes(body.signed.value.birthdate.value), "DF11"),
        public_key=key_of(body.signed.value.key.key),
        signature=bytes(body.signature.value),
        signed=bytes(body.signed.data),
    )


# ---------------------------------------------------------------- EF 0002

_FACE_TAGS = {
    "birthdate": b"\xdf\x22", "sex": b"\xdf\x23", "name": b"\xdf\x25", "address": b"\xdf\x26",
    "photo": b"\xdf\x27", "signature": b"\xdf\x28", "expiry": b"\xdf\x29",
    "security_code": b"\xdf\x2a",
}  # fmt: skip


def _face_object(field: str) -> Struct:
    return key_object(b"\xdf\x24") if field == "key" else primitive(_FACE_TAGS[field])


CARD_FACE = Struct(
    "tag" / Const(TAG_CARD_FACE),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "offsets_tag" / Const(b"\xdf\x21"),
            "offsets" / Prefixed(CardLength(), Array(len(FACE_FIELDS), Int16ub)),
            *[item for f in FACE_FIELDS
              for item in (f"at_{f}" / Tell, f / RawCopy(_face_object(f)))],
            Terminated,
        ),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def _face_values(
    born: date | str, sex: str, card_key: Any, name_png: bytes, address_png: bytes,
    photo: bytes, signature: bytes, expires: date | str, security_code_png: bytes,
) -> dict[str, Any]:  # fmt: skip
    if sex not in SEX_CODES:
        raise ValueError(f"sex must be an ISO 5218 code ({', '.join(SEX_CODES)}), got {sex!r}")
    return {
        "birthdate": {"value": {"value": _ymd(born)}},
        "sex": {"value": {"value": sex.encode()}},
        "key": {"value": {"key": key_fields(RsaPublicKey.of(card_key))}},
        "name": {"value": {"value": bytes(name_png)}},
        "address": {"value": {"value": bytes(address_png)}},
        "photo": {"value": {"value": bytes(photo)}},
        "signature": {"value": {"value": signature}},
        "expiry": {"value": {"value": _ymd(expires)}},
        "security_code": {"value": {"value": bytes(security_code_png)}},
    }


def card_face_segments(
    born: date | str, sex: str, card_key: Any, name_png: bytes, address_png: bytes, photo: bytes
) -> tuple[bytes, bytes, bytes]:
    """The three groups the card face's signature covers, each as written on the card.

    (DF22 DF23 DF24 objects, DF25 DF26 objects, DF27 object.)
    """
    values = _face_values(born, sex, card_key, name_png, address_png, photo, bytes(256),
                          "00000000", b"")  # fmt: skip

    def objects(*fields: str) -> bytes:
        return b"".join(bytes(_face_object(f).build(values[f]["value"])) for f in fields)

    return objects("birthdate", "sex", "key"), objects("name", "address"), objects("photo")


def card_face_digest_info(
    born: date | str, sex: str, card_key: Any, name_png: bytes, address_png: bytes, photo: bytes
) -> bytes:
    """What the card face's signature signs (PKCS#1 v1.5, no further hashing).

    ``30 71 30 0D 06 09 <sha256> 05 00 04 60`` + three SHA-256 digests, one per
    :func:`card_face_segments` group (soltia48/myna-card ``CardFace::verify``).
    """
    segments = card_face_segments(born, sex, card_key, name_png, address_png, photo)
    digests = b"".join(hashlib.sha256(s).digest() for s in segments)
    inner = _SHA256_ALGORITHM + b"\x04" + bytes((len(digests),)) + digests
    return b"\x30" + bytes((len(inner),)) + inner


def encode_card_face(
    born: date | str,
    sex: str,
    card_key: Any,
    name_png: bytes,
    address_png: bytes,
    photo: bytes,
    signature: bytes,
    expires: date | str,
    security_code_png: bytes,
    size: int | None = None,
) -> bytes:
    """EF 0002, with its DF21 table of where each of the nine objects starts."""
    values = _face_values(born, sex, card_key, name_png, address_png, photo,
                          _signature(signature), expires, security_code_png)  # fmt: skip
    # two passes, as for the helper's EF 0002: the offsets depend on the outer length
    draft = CARD_FACE.build({"body": {"offsets": [0] * len(FACE_FIELDS), **values}, "filler": b""})
    parsed = CARD_FACE.parse(draft).body
    offsets = [parsed[f"at_{f}"] for f in FACE_FIELDS]
    if max(offsets) > 0xFFFF:
        raise ValueError("card face too long for 16-bit offsets")
    ef = CARD_FACE.build({"body": {"offsets": offsets, **values}, "filler": b""})
    return pad(bytes(ef), size)


class CardFace(TypedDict):
    birthdate_text: str
    sex: str
    public_key: RsaPublicKey
    name_png: bytes
    address_png: bytes
    photo: bytes
    signature: bytes
    expiry_text: str
    security_code_png: bytes
    offsets: tuple[int, ...]
    #: the three groups the signature covers, as read
    segments: tuple[bytes, bytes, bytes]


def decode_card_face(ef: bytes) -> CardFace:
    """The card face, its DF21 table checked against where the objects really are."""
    body = _parse(CARD_FACE, ef, "card face EF").body
    offsets = tuple(body.offsets)
    for i, field in enumerate(FACE_FIELDS):
        if offsets[i] != body[f"at_{field}"]:
            raise RecordError(
                f"offset {i} in DF21 says {offsets[i]}, {field} is at {body[f'at_{field}']}"
            )

    def raw(*fields: str) -> bytes:
        return b"".join(bytes(body[f].data) for f in fields)

    return CardFace(
        birthdate_text=_text(bytes(body.birthdate.value.value), "DF22"),
        sex=_text(bytes(body.sex.value.value), "DF23"),
        public_key=key_of(body.key.value.key),
        name_png=bytes(body.name.value.value),
        address_png=bytes(body.address.value.value),
        photo=bytes(body.photo.value.value),
        signature=bytes(body.signature.value.value),
        expiry_text=_text(bytes(body.expiry.value.value), "DF29"),
        security_code_png=bytes(body.security_code.value.value),
        offsets=offsets,
        segments=(raw("birthdate", "sex", "key"), raw("name", "address"), raw("photo")),
    )


# ---------------------------------------------------------------- EF 0003

SURFACE_BASIC_INFO = Struct(
    "tag" / Const(TAG_BASIC_INFO),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "identification" / primitive(b"\xdf\x31"),
            "key_id" / primitive(b"\xdf\x32"),
            "version" / primitive(b"\xdf\x33"),
            "municipality" / primitive(b"\xdf\x34"),
            "reference" / primitive(b"\xdf\x35"),
            Terminated,
        ),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def encode_surface_basic_info(
    key_id: bytes,
    municipality_code: str,
    reference_key_id: bytes,
    opaque: bytes,
    *,
    identification: bytes = SURFACE_IDENTIFICATION,
    version: int = SURFACE_VERSION,
    size: int | None = None,
) -> bytes:
    """EF 0003: ``FF 30 82 01 3B { DF31 04, DF32 10, DF33 01, DF34 05 code, DF35 82 01 10 }``.

    DF35 is a key identifier followed by 256 opaque bytes (``opaque``; meaning unknown).
    """
    key_id_text(key_id)
    key_id_text(reference_key_id)
    code = municipality_code
    if len(code) != 5 or not code.isascii() or not code.isdigit():
        raise ValueError(f"a municipality code is 5 digits, got {code!r}")
    if len(opaque) != OPAQUE_SIZE or len(identification) != 4 or not 0 <= version <= 255:
        raise ValueError("DF35 needs 256 opaque bytes, DF31 4 bytes, DF33 one byte")
    ef = SURFACE_BASIC_INFO.build({
        "body": {
            "identification": {"value": bytes(identification)},
            "key_id": {"value": bytes(key_id)},
            "version": {"value": bytes((version,))},
            "municipality": {"value": code.encode()},
            "reference": {"value": bytes(reference_key_id) + bytes(opaque)},
        },
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class SurfaceBasicInfo(TypedDict):
    identification: bytes
    key_id: bytes
    version: int
    municipality_code: str
    reference_key_id: bytes
    opaque: bytes


def decode_surface_basic_info(ef: bytes) -> SurfaceBasicInfo:
    body = _parse(SURFACE_BASIC_INFO, ef, "surface basic info EF").body
    reference = bytes(body.reference.value)
    version = bytes(body.version.value)
    if len(version) != 1 or len(reference) < 16:
        raise RecordError("DF33 is not one byte or DF35 is shorter than a key identifier")
    key_id_text(bytes(body.key_id.value))
    key_id_text(reference[:16])
    return SurfaceBasicInfo(
        identification=bytes(body.identification.value),
        key_id=bytes(body.key_id.value),
        version=version[0],
        municipality_code=_text(bytes(body.municipality.value), "DF34"),
        reference_key_id=reference[:16],
        opaque=reference[16:],
    )


# ---------------------------------------------------------------- EF 0005

_MY_NUMBER_SIGNED = Struct("image" / primitive(b"\xdf\x41"), "key" / key_object(b"\xdf\x42"))

SURFACE_MY_NUMBER_IMAGE = Struct(
    "tag" / Const(TAG_MY_NUMBER_IMAGE),
    "body" / Prefixed(
        CardLength(),
        Struct("signed" / RawCopy(_MY_NUMBER_SIGNED), "signature" / primitive(b"\xdf\x43"),
               Terminated),
    ),
    "filler" / GreedyBytes,
)  # fmt: skip


def _image_fields(image_png: bytes, key: Any) -> dict[str, Any]:
    return {"image": {"value": bytes(image_png)}, "key": {"key": key_fields(RsaPublicKey.of(key))}}


def my_number_image_signed_part(image_png: bytes, card_key: Any) -> bytes:
    """What EF 0005's signature covers: the DF41 and DF42 objects."""
    return bytes(_MY_NUMBER_SIGNED.build(_image_fields(image_png, card_key)))


def encode_my_number_image(
    image_png: bytes, card_key: Any, signature: bytes, size: int | None = None
) -> bytes:
    """EF 0005: ``FF 40 { DF41 the My Number image, DF42 the card's key, DF43 signature }``."""
    ef = SURFACE_MY_NUMBER_IMAGE.build({
        "body": {"signed": {"value": _image_fields(image_png, card_key)},
                 "signature": {"value": _signature(signature)}},
        "filler": b"",
    })  # fmt: skip
    return pad(bytes(ef), size)


class MyNumberImage(TypedDict):
    image_png: bytes
    public_key: RsaPublicKey
    signature: bytes
    signed: bytes


def decode_my_number_image(ef: bytes) -> MyNumberImage:
    body = _parse(SURFACE_MY_NUMBER_IMAGE, ef, "My Number image EF").body
    return MyNumberImage(
        image_png=bytes(body.signed.value.image.value),
        public_key=key_of(body.signed.value.key.key),
        signature=bytes(body.signature.value),
        signed=bytes(body.signed.data),
    )
