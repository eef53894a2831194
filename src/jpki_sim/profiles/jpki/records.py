"""The JPKI card's records, byte for byte, declared with ``construct``.

Each record is a ``construct`` definition (so the layout reads as the card
stores it) with a thin function pair around it for the checks a definition
cannot say. The layouts are those read off J-LIS test cards (protocol notes §2,
§5): long-form tags below 31 (``FF 10``), lengths in the card's form (short
below 128, else ``82 hh ll``), FF filler after the object.

* EF 0006 of the JPKI AP: the token info, a serialised PKCS#11 CK_TOKEN_INFO
  of 160 bytes with big-endian ULONGs (:data:`TOKEN_INFO`);
* EF 0001 of the helper AP: ``FF 10 0C`` + the 12-digit My Number + ``FF FF``
  (:data:`HELPER_MY_NUMBER`);
* EF 0002 of the helper AP: the four basic facts with their offset table
  (:data:`HELPER_BASIC_INFO`).

Test vectors sit beside this module (``records.vectors.json``) and are played
by ``tests/test_records.py``: each one both builds and parses.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypedDict

from construct import (
    Array,
    Bytes,
    Const,
    Construct,
    ConstructError,
    GreedyBytes,
    Int16ub,
    Int32ub,
    Prefixed,
    Struct,
    Tell,
    stream_read,
    stream_write,
)

from jpki_sim.iso7816 import tlv

__all__ = [
    "CardLength",
    "HELPER_BASIC_INFO",
    "HELPER_MY_NUMBER",
    "TOKEN_INFO",
    "TOKEN_INFO_SIZE",
    "HelperBasicInfo",
    "RecordError",
    "decode_helper_basic_info",
    "decode_helper_my_number",
    "decode_token_info",
    "encode_helper_basic_info",
    "encode_helper_my_number",
    "encode_token_info",
    "is_filler",
    "pad",
    "primitive",
]

TAG_MY_NUMBER = b"\xff\x10"
TAG_BASIC_INFO = b"\xff\x20"
TAG_OFFSETS = b"\xdf\x21"
TAG_NAME = b"\xdf\x22"
TAG_ADDRESS = b"\xdf\x23"
TAG_BIRTHDATE = b"\xdf\x24"
TAG_SEX = b"\xdf\x25"
#: bytes of FF filler after the My Number object: the EF is 17 bytes on cards
MY_NUMBER_FILLER = 2
#: ISO 5218 codes the helper application stores
SEX_CODES = ("0", "1", "2", "9")
TOKEN_INFO_SIZE = 160


class RecordError(tlv.TlvError):
    """Bytes that are not the record they should be."""


class CardLength(Construct):
    """A BER length in the card's form: short below 128, else ``82 hh ll`` (reads any)."""

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        first = stream_read(stream, 1, path)[0]
        if first < 0x80:
            return int(first)
        n = first & 0x7F
        if not 1 <= n <= 3:
            raise ConstructError(f"length field {first:02X} unsupported", path=path)
        return int.from_bytes(stream_read(stream, n, path), "big")

    def _build(self, obj: int, stream: Any, context: Any, path: str) -> int:
        stream_write(stream, tlv.card_length(obj), len(tlv.card_length(obj)), path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise ConstructError("a card length has no fixed size", path=path)


def _primitive(tag: bytes) -> Struct:
    """``tag`` + card length + value."""
    return Struct("tag" / Const(tag), "value" / Prefixed(CardLength(), GreedyBytes))


class SpacePadded(Construct):
    """ASCII text space-padded to ``size`` bytes (PKCS#11 token info strings)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def _parse(self, stream: Any, context: Any, path: str) -> str:
        raw = stream_read(stream, self.size, path)
        return str(raw.decode("ascii", "replace").rstrip(" \x00"))

    def _build(self, obj: str, stream: Any, context: Any, path: str) -> str:
        raw = obj.encode("ascii")[: self.size].ljust(self.size, b" ")
        stream_write(stream, raw, self.size, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        return self.size


#: JPKI EF 0006: a serialised CK_TOKEN_INFO (PKCS#11 2.40 §3.2), big-endian ULONGs
TOKEN_INFO = Struct(
    "label" / SpacePadded(32),
    "manufacturer" / SpacePadded(32),
    "model" / SpacePadded(16),
    "serial" / SpacePadded(16),
    "flags" / Int32ub,
    "max_session_count" / Int32ub,
    "session_count" / Int32ub,
    "max_rw_session_count" / Int32ub,
    "rw_session_count" / Int32ub,
    "max_pin_len" / Int32ub,
    "min_pin_len" / Int32ub,
    "total_public_memory" / Int32ub,
    "free_public_memory" / Int32ub,
    "total_private_memory" / Int32ub,
    "free_private_memory" / Int32ub,
    "hardware_version" / Bytes(2),
    "firmware_version" / Bytes(2),
    "utc_time" / Bytes(16),
)

#: CK_TOKEN_INFO flags: login required, user PIN initialised, token initialised
TOKEN_FLAGS = 0x0000040D
#: CK_UNAVAILABLE_INFORMATION
UNAVAILABLE = 0xFFFFFFFF

#: helper EF 0001
HELPER_MY_NUMBER = Struct(
    "tag" / Const(TAG_MY_NUMBER),
    "digits" / Prefixed(CardLength(), GreedyBytes),
    "filler" / GreedyBytes,
)

#: helper EF 0002: the four facts, each object's offset from the EF start in DF21
HELPER_BASIC_INFO = Struct(
    "tag" / Const(TAG_BASIC_INFO),
    "body" / Prefixed(
        CardLength(),
        Struct(
            "offsets_tag" / Const(TAG_OFFSETS),
            "offsets" / Prefixed(CardLength(), Array(4, Int16ub)),
            # where each object starts, from the start of the EF
            "at_name" / Tell,
            "name" / _primitive(TAG_NAME),
            "at_address" / Tell,
            "address" / _primitive(TAG_ADDRESS),
            "at_birthdate" / Tell,
            "birthdate" / _primitive(TAG_BIRTHDATE),
            "at_sex" / Tell,
            "sex" / _primitive(TAG_SEX),
        ),
    ),
    "filler" / GreedyBytes,
)


def _is_filler(rest: bytes) -> bool:
    return not rest.strip(bytes((tlv.FILLER,)))


def pad(ef: bytes, size: int | None) -> bytes:
    """``ef`` followed by FF filler up to ``size`` bytes (unchanged when ``size`` is None)."""
    if size is None:
        return ef
    if size < len(ef):
        raise ValueError(f"the record needs {len(ef)} bytes, the EF holds {size}")
    return ef + bytes((tlv.FILLER,)) * (size - len(ef))


# the building blocks, for the other applications' records (records_cv, records_helper,
# records_surface)
primitive = _primitive
is_filler = _is_filler


# ---------------------------------------------------------------- token info


def encode_token_info(label: str, serial: str, *, manufacturer: str = "JPKI-SIM",
                      model: str = "JPKI TEST CARD") -> bytes:
    """EF 0006 of the JPKI AP (160 bytes)."""
    return bytes(TOKEN_INFO.build({
        "label": label,
        "manufacturer": manufacturer,
        "model": model,
        "serial": serial,
        "flags": TOKEN_FLAGS,
        "max_session_count": 0,
        "session_count": 0,
        "max_rw_session_count": 0,
        "rw_session_count": 0,
        "max_pin_len": 16,
        "min_pin_len": 4,
        "total_public_memory": UNAVAILABLE,
        "free_public_memory": UNAVAILABLE,
        "total_private_memory": UNAVAILABLE,
        "free_private_memory": UNAVAILABLE,
        "hardware_version": b"03",  # as seen on cards
        "firmware_version": b"01",
        "utc_time": b" " * 16,  # the card keeps no clock
    }))


def decode_token_info(data: bytes) -> dict[str, Any]:
    if len(data) != TOKEN_INFO_SIZE:
        raise RecordError(f"token info is {TOKEN_INFO_SIZE} bytes, not {len(data)}")
    parsed = TOKEN_INFO.parse(data)
    return {k: v for k, v in parsed.items() if not k.startswith("_")}


# ---------------------------------------------------------------- helper EF 0001


def encode_helper_my_number(number: str) -> bytes:
    """EF 0001 of the helper application: ``FF 10 0C`` + 12 ASCII digits + ``FF FF``.

    The check digit is not enforced here: the issuer decides what goes on a card.
    """
    if len(number) != 12 or not number.isascii() or not number.isdigit():
        raise ValueError(f"a My Number is 12 ASCII digits, got {number!r}")
    filler = bytes((tlv.FILLER,)) * MY_NUMBER_FILLER
    return bytes(HELPER_MY_NUMBER.build({"digits": number.encode(), "filler": filler}))


def decode_helper_my_number(ef_bytes: bytes) -> str:
    """The 12 digits from EF 0001 (with or without its filler)."""
    data = bytes(ef_bytes)
    if not data.startswith(TAG_MY_NUMBER):
        raise RecordError(f"My Number EF starts {data[:2].hex().upper()}, not FF10")
    try:
        parsed = HELPER_MY_NUMBER.parse(data)
    except ConstructError:
        raise RecordError("My Number EF is truncated") from None
    if not _is_filler(parsed.filler):
        raise RecordError("My Number EF has data after the number")
    text = parsed.digits.decode("ascii", "replace")
    if len(text) != 12 or not text.isdigit():
        raise RecordError(f"My Number EF holds {parsed.digits.hex().upper()}, not 12 digits")
    return str(text)


# ---------------------------------------------------------------- helper EF 0002


class HelperBasicInfo(TypedDict):
    """The four basic facts as read from the helper application's EF 0002."""

    name: str
    address: str
    #: None when the 8 digits are not a calendar date
    birthdate: date | None
    birthdate_text: str
    sex: str
    #: offsets of DF22..DF25 from the start of the EF, as stored in DF21
    offsets: tuple[int, int, int, int]


def _basic_info_fields(name: str, address: str, ymd: str, sex: str) -> dict[str, Any]:
    return {
        "name": {"value": name.encode("utf-8")},
        "address": {"value": address.encode("utf-8")},
        "birthdate": {"value": ymd.encode("ascii")},
        "sex": {"value": sex.encode("ascii")},
    }


def encode_helper_basic_info(
    name: str,
    address: str,
    birthdate: date | str,
    sex: str,
    size: int | None = None,
) -> bytes:
    """EF 0002 of the helper application, in the card's layout::

        FF 20 L
          DF 21 08 <four big-endian u16: offsets of DF22..DF25 from the EF start>
          DF 22 Ln <name, UTF-8>
          DF 23 La <address, UTF-8>
          DF 24 08 <birth date YYYYMMDD, ASCII>
          DF 25 01 <sex, one ISO 5218 ASCII digit>

    ``size`` pads the EF with ``FF`` filler to that many bytes.
    """
    ymd = birthdate.strftime("%Y%m%d") if isinstance(birthdate, date) else birthdate
    if len(ymd) != 8 or not ymd.isascii() or not ymd.isdigit():
        raise ValueError(f"birth date must be a date or 8 digits YYYYMMDD, got {birthdate!r}")
    if sex not in SEX_CODES:
        raise ValueError(f"sex must be an ISO 5218 code ({', '.join(SEX_CODES)}), got {sex!r}")
    body = _basic_info_fields(name, address, ymd, sex)
    # two passes: the offsets depend on the outer length's own size. Parsing the
    # draft back gives each object's place in the EF (Tell counts from its start)
    draft = bytes(HELPER_BASIC_INFO.build({"body": {"offsets": [0] * 4, **body}, "filler": b""}))
    parsed = HELPER_BASIC_INFO.parse(draft).body
    offsets = [parsed[f"at_{k}"] for k in ("name", "address", "birthdate", "sex")]
    if max(offsets) > 0xFFFF:
        raise ValueError("basic info too long for 16-bit offsets")
    ef = bytes(HELPER_BASIC_INFO.build({"body": {"offsets": offsets, **body}, "filler": b""}))
    if size is not None:
        if size < len(ef):
            raise ValueError(f"basic info needs {len(ef)} bytes, EF size is {size}")
        ef += bytes((tlv.FILLER,)) * (size - len(ef))
    return ef


def decode_helper_basic_info(ef_bytes: bytes) -> HelperBasicInfo:
    """Name, address, birth date, sex and the offset table from EF 0002.

    The offset table is checked against where the objects really are, not trusted.
    """
    data = bytes(ef_bytes)
    if not data.startswith(TAG_BASIC_INFO):
        raise RecordError(f"basic info EF starts with {data[:2].hex().upper()}, not FF20")
    try:
        parsed = HELPER_BASIC_INFO.parse(data)
    except ConstructError as exc:
        raise RecordError(f"basic info EF is not the four facts' layout ({exc})") from None
    if not _is_filler(parsed.filler):
        raise RecordError("basic info EF has data after the four facts")
    body = parsed.body
    offsets = tuple(body.offsets)
    for i, field in enumerate(("name", "address", "birthdate", "sex")):
        at = body[f"at_{field}"]
        if offsets[i] != at:
            raise RecordError(f"offset {i} in DF21 says {offsets[i]}, DF2{i + 2} is at {at}")
    try:
        name = body.name.value.decode("utf-8")
        address = body.address.value.decode("utf-8")
        ymd = body.birthdate.value.decode("ascii")
        sex = body.sex.value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RecordError(f"basic info text is not UTF-8: {exc}") from None
    try:
        born: date | None = datetime.strptime(ymd, "%Y%m%d").date() if len(ymd) == 8 else None
    except ValueError:
        born = None
    return HelperBasicInfo(
        name=name,
        address=address,
        birthdate=born,
        birthdate_text=ymd,
        sex=sex,
        offsets=(offsets[0], offsets[1], offsets[2], offsets[3]),
    )
