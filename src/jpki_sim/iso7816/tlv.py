"""BER-TLV as the My Number card writes it, byte for byte.

The card's EFs are not minimal DER (protocol notes §5): tag numbers below 31
are written in the long form (``FF 10`` where DER would say ``F0``), lengths
carry leading zero bytes (``82 00 9F`` for 159), and the objects are followed by
``FF`` filler up to the EF's size. A :class:`Tlv` node therefore keeps the raw
tag bytes and the raw length bytes it was read from, so ``to_bytes()`` gives
back exactly the input; the encoders build either the minimal form or the
card's.

Also here, shared by the card profile and the client so both speak one layout:
the card-info input helper application's EFs (My Number, EF 0001; the four
basic facts, EF 0002) and a read-only summary of DER certificates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypedDict

__all__ = [
    "CLASS_APPLICATION",
    "CLASS_CONTEXT",
    "CLASS_PRIVATE",
    "CLASS_UNIVERSAL",
    "HelperBasicInfo",
    "Tlv",
    "TlvError",
    "card_length",
    "decode_helper_basic_info",
    "decode_helper_my_number",
    "describe_certificate",
    "encode_helper_basic_info",
    "encode_helper_my_number",
    "encode_length",
    "encode_tag",
    "find",
    "find_all",
    "parse",
    "parse_with_filler",
    "tag_bytes",
]

CLASS_UNIVERSAL = 0
CLASS_APPLICATION = 1
CLASS_CONTEXT = 2
CLASS_PRIVATE = 3

FILLER = 0xFF
#: the card writes lengths of this many bytes or more as 82 hh ll
_CARD_LONG_FROM = 0x80
_MAX_LENGTH_BYTES = 4


class TlvError(ValueError):
    """The bytes are not the BER-TLV they should be (message says where)."""


# ---------------------------------------------------------------- encoders


def encode_tag(tag_class: int, constructed: bool, number: int, long_form: bool = False) -> bytes:
    """Tag bytes for a class (0-3), the constructed bit and a tag number.

    Numbers below 31 fit the first byte; ``long_form=True`` writes them as the
    card does anyway (``encode_tag(CLASS_PRIVATE, True, 0x10, long_form=True)``
    is ``FF 10``).
    """
    if not 0 <= tag_class <= 3:
        raise ValueError(f"tag class {tag_class} outside 0..3")
    if number < 0:
        raise ValueError("tag number must not be negative")
    first = (tag_class << 6) | (0x20 if constructed else 0)
    if number < 31 and not long_form:
        return bytes((first | number,))
    groups = [number & 0x7F]
    number >>= 7
    while number:
        groups.append(number & 0x7F)
        number >>= 7
    groups.reverse()
    body = bytes(g | 0x80 for g in groups[:-1]) + bytes(groups[-1:])
    return bytes((first | 0x1F,)) + body


def encode_length(n: int, width: int | None = None) -> bytes:
    """Length bytes for ``n``.

    ``width`` None: minimal DER (short form below 128). ``width`` 0: the short
    form, which must fit. ``width`` k >= 1: ``80|k`` then k big-endian bytes,
    with leading zeros when ``n`` is small (``encode_length(0x9F, 2)`` is
    ``82 00 9F``).
    """
    if n < 0:
        raise ValueError("length must not be negative")
    if width is None:
        if n < 0x80:
            return bytes((n,))
        width = (n.bit_length() + 7) // 8
    if width == 0:
        if n >= 0x80:
            raise ValueError(f"length {n} does not fit the short form")
        return bytes((n,))
    if not 1 <= width <= _MAX_LENGTH_BYTES or n >= 1 << (8 * width):
        raise ValueError(f"length {n} does not fit {width} length bytes")
    return bytes((0x80 | width,)) + n.to_bytes(width, "big")


def card_length(n: int) -> bytes:
    """The length form the card uses: short below 128, else always ``82 hh ll``.

    Seen on cards: ``65`` (EF 0002 of 101 bytes), ``82 00 9F``, ``82 01 4B``,
    ``82 02 13``, ``82 01 00``; the one-byte long form ``81 xx`` never appears.
    """
    return encode_length(n, 0 if n < _CARD_LONG_FROM else 2)


def tag_bytes(tag: int | bytes) -> bytes:
    """A tag given as its bytes or as the integer of its bytes (0xDF21) -> bytes."""
    if isinstance(tag, bytes | bytearray):
        return bytes(tag)
    if tag < 0:
        raise ValueError("tag must not be negative")
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


# ---------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV object exactly as encoded.

    ``value`` is the value field as bytes. For a constructed object whose value
    parses as BER-TLV, ``children`` holds those objects (and ``value`` is their
    concatenation); otherwise (primitive objects, and constructed-tagged ones
    holding plain bytes such as the card's ``FF 10``) ``children`` is None.
    """

    raw_tag: bytes
    raw_length: bytes
    value: bytes
    children: tuple[Tlv, ...] | None = None

    # -- construction

    @classmethod
    def primitive(cls, tag: int | bytes, value: bytes, length: bytes | None = None) -> Tlv:
        """A primitive object; ``length`` raw bytes default to the card's form."""
        raw_tag = tag_bytes(tag)
        if raw_tag[0] & 0x20:
            raise ValueError(f"tag {raw_tag.hex().upper()} is constructed")
        value = bytes(value)
        return cls(raw_tag, _checked_length(length, len(value)), value)

    @classmethod
    def constructed(
        cls, tag: int | bytes, children: Iterable[Tlv], length: bytes | None = None
    ) -> Tlv:
        """A constructed object holding ``children``; length in the card's form by default."""
        raw_tag = tag_bytes(tag)
        if not raw_tag[0] & 0x20:
            raise ValueError(f"tag {raw_tag.hex().upper()} is primitive")
        kids = tuple(children)
        value = b"".join(k.to_bytes() for k in kids)
        return cls(raw_tag, _checked_length(length, len(value)), value, kids)

    # -- reading

    @property
    def tag(self) -> int:
        """The tag as the integer of its bytes, as the card's documents write it (0xFF10)."""
        return int.from_bytes(self.raw_tag, "big")

    @property
    def tag_class(self) -> int:
        return self.raw_tag[0] >> 6

    @property
    def is_constructed(self) -> bool:
        return bool(self.raw_tag[0] & 0x20)

    @property
    def tag_number(self) -> int:
        if self.raw_tag[0] & 0x1F != 0x1F:
            return self.raw_tag[0] & 0x1F
        n = 0
        for b in self.raw_tag[1:]:
            n = (n << 7) | (b & 0x7F)
        return n

    @property
    def length(self) -> int:
        return len(self.value)

    @property
    def header(self) -> bytes:
        return self.raw_tag + self.raw_length

    @property
    def minimal(self) -> bool:
        """True when tag and length are in the DER minimal form (children included)."""
        tag_ok = self.raw_tag == encode_tag(self.tag_class, self.is_constructed, self.tag_number)
        length_ok = self.raw_length == encode_length(self.length)
        return tag_ok and length_ok and all(c.minimal for c in self.children or ())

    def to_bytes(self) -> bytes:
        return self.raw_tag + self.raw_length + self.value

    def __len__(self) -> int:
        return len(self.raw_tag) + len(self.raw_length) + len(self.value)

    def walk(self) -> Iterator[Tlv]:
        """This object and every object inside it, depth first."""
        yield self
        for child in self.children or ():
            yield from child.walk()

    def find(self, tag: int | bytes) -> Tlv | None:
        """The first object with ``tag`` in this one (itself included), or None."""
        return find([self], tag)

    def find_all(self, tag: int | bytes) -> list[Tlv]:
        return find_all([self], tag)

    def __str__(self) -> str:
        return "\n".join(_dump(self, 0))


def _checked_length(length: bytes | None, n: int) -> bytes:
    if length is None:
        return card_length(n)
    length = bytes(length)
    decoded, used = _read_length(length, 0)
    if used != len(length) or decoded != n:
        raise ValueError(f"length bytes {length.hex().upper()} do not say {n}")
    return length


def _dump(node: Tlv, depth: int) -> Iterator[str]:
    pad = "  " * depth
    head = f"{pad}{node.raw_tag.hex().upper()} {node.raw_length.hex().upper()}"
    if node.children is not None:
        yield head
        for c in node.children:
            yield from _dump(c, depth + 1)
    else:
        yield f"{head}  {node.value.hex().upper()}"


# ---------------------------------------------------------------- parsing


def _read_tag(data: bytes, pos: int) -> int:
    """End offset of the tag starting at ``pos``."""
    if pos >= len(data):
        raise TlvError(f"offset {pos}: tag expected, data ended")
    end = pos + 1
    if data[pos] & 0x1F == 0x1F:
        while True:
            if end >= len(data):
                raise TlvError(f"offset {pos}: multi-byte tag runs past the end")
            end += 1
            if not data[end - 1] & 0x80:
                break
            if end - pos > 5:
                raise TlvError(f"offset {pos}: tag longer than 5 bytes")
    return end


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """(length, bytes used) of the length field at ``pos``."""
    if pos >= len(data):
        raise TlvError(f"offset {pos}: length expected, data ended")
    first = data[pos]
    if first < 0x80:
        return first, 1
    count = first & 0x7F
    if count == 0:
        raise TlvError(f"offset {pos}: indefinite length is not used on this card")
    if count > _MAX_LENGTH_BYTES:
        raise TlvError(f"offset {pos}: length of {count} bytes")
    if pos + 1 + count > len(data):
        raise TlvError(f"offset {pos}: length field runs past the end")
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), 1 + count


def _parse_one(data: bytes, pos: int, base: int) -> tuple[Tlv, int]:
    tag_end = _read_tag(data, pos)
    n, used = _read_length(data, tag_end)
    start = tag_end + used
    end = start + n
    if end > len(data):
        raise TlvError(
            f"offset {base + pos}: object {data[pos:tag_end].hex().upper()} says {n} bytes,"
            f" only {len(data) - start} follow"
        )
    raw_tag = bytes(data[pos:tag_end])
    value = bytes(data[start:end])
    children = None
    if raw_tag[0] & 0x20:
        # The card marks some objects constructed that hold plain bytes (FF 10
        # holds twelve ASCII digits): those keep children None.
        try:
            children = tuple(_parse_all(value, base + start, allow_filler=False))
        except TlvError:
            children = None
    return Tlv(raw_tag, bytes(data[tag_end:start]), value, children), end


def _parse_all(data: bytes, base: int, allow_filler: bool) -> Iterator[Tlv]:
    pos = 0
    while pos < len(data):
        if allow_filler and _is_filler(data[pos:]):
            return
        node, pos = _parse_one(data, pos, base)
        yield node


def _is_filler(rest: bytes) -> bool:
    # FF is also the first byte of the card's own tags (FF 10, FF 20): only a
    # tail made of nothing but FF is filler.
    return rest.count(FILLER) == len(rest)


def parse_with_filler(data: bytes) -> tuple[list[Tlv], bytes]:
    """Objects of an EF and the ``FF`` filler after the last one.

    ``b"".join(n.to_bytes() for n in nodes) + filler == data`` always holds.
    """
    data = bytes(data)
    nodes = list(_parse_all(data, 0, allow_filler=True))
    used = sum(len(n) for n in nodes)
    return nodes, data[used:]


def parse(data: bytes) -> list[Tlv]:
    """The objects in ``data``, stopping at ``FF`` filler after the last one."""
    return parse_with_filler(data)[0]


def find(nodes: Iterable[Tlv], tag: int | bytes) -> Tlv | None:
    """First object with ``tag`` among ``nodes`` and inside them (depth first)."""
    want = tag_bytes(tag)
    for node in nodes:
        for n in node.walk():
            if n.raw_tag == want:
                return n
    return None


def find_all(nodes: Iterable[Tlv], tag: int | bytes) -> list[Tlv]:
    want = tag_bytes(tag)
    return [n for node in nodes for n in node.walk() if n.raw_tag == want]


# ---------------------------------------------------------------- helper application EFs

TAG_MY_NUMBER = 0xFF10
TAG_BASIC_INFO = 0xFF20
TAG_OFFSETS = 0xDF21
TAG_NAME = 0xDF22
TAG_ADDRESS = 0xDF23
TAG_BIRTHDATE = 0xDF24
TAG_SEX = 0xDF25
#: bytes of FF filler after the My Number object: the EF is 17 bytes on cards
MY_NUMBER_FILLER = 2
#: ISO 5218 codes the helper application stores
SEX_CODES = ("0", "1", "2", "9")


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


def encode_helper_my_number(number: str) -> bytes:
    """EF 0001 of the helper application: ``FF 10 0C`` + 12 ASCII digits + ``FF FF``.

    The check digit is not enforced here: the issuer decides what goes on a card.
    """
    if len(number) != 12 or not number.isascii() or not number.isdigit():
        raise ValueError(f"a My Number is 12 ASCII digits, got {number!r}")
    node = Tlv(encode_tag(CLASS_PRIVATE, True, 0x10, long_form=True), b"\x0c", number.encode())
    # built directly: FF 10 is constructed by its tag bits, but the card puts
    # bare digits in it, so the digits are not parsed as children
    return node.to_bytes() + bytes((FILLER,)) * MY_NUMBER_FILLER


def decode_helper_my_number(ef_bytes: bytes) -> str:
    """The 12 digits from EF 0001 (with or without its filler)."""
    data = bytes(ef_bytes)
    header = tag_bytes(TAG_MY_NUMBER)
    if not data.startswith(header):
        raise TlvError(f"My Number EF starts {data[:2].hex().upper()}, not FF10")
    n, used = _read_length(data, len(header))
    start = len(header) + used
    digits = data[start : start + n]
    if len(digits) != n or not _is_filler(data[start + n :]):
        raise TlvError("My Number EF is truncated or has data after the number")
    text = digits.decode("ascii", "replace")
    if len(text) != 12 or not text.isdigit():
        raise TlvError(f"My Number EF holds {digits.hex().upper()}, not 12 digits")
    return text


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

    Lengths use the card's form (:func:`card_length`). ``size`` pads the EF with
    ``FF`` filler to that many bytes.
    """
    if isinstance(birthdate, date):
        ymd = birthdate.strftime("%Y%m%d")
    else:
        ymd = birthdate
    if len(ymd) != 8 or not ymd.isascii() or not ymd.isdigit():
        raise ValueError(f"birth date must be a date or 8 digits YYYYMMDD, got {birthdate!r}")
    if sex not in SEX_CODES:
        raise ValueError(f"sex must be an ISO 5218 code ({', '.join(SEX_CODES)}), got {sex!r}")
    facts = [
        Tlv.primitive(TAG_NAME, name.encode("utf-8")),
        Tlv.primitive(TAG_ADDRESS, address.encode("utf-8")),
        Tlv.primitive(TAG_BIRTHDATE, ymd.encode("ascii")),
        Tlv.primitive(TAG_SEX, sex.encode("ascii")),
    ]
    offsets_len = 2 + 1 + 8  # DF21 08 + four u16
    inner = offsets_len + sum(len(f) for f in facts)
    outer_header = len(tag_bytes(TAG_BASIC_INFO)) + len(card_length(inner))
    offsets = []
    pos = outer_header + offsets_len
    for f in facts:
        offsets.append(pos)
        pos += len(f)
    if pos > 0xFFFF:
        raise ValueError("basic info too long for 16-bit offsets")
    table = Tlv.primitive(TAG_OFFSETS, b"".join(o.to_bytes(2, "big") for o in offsets))
    ef = Tlv.constructed(TAG_BASIC_INFO, [table, *facts]).to_bytes()
    if size is not None:
        if size < len(ef):
            raise ValueError(f"basic info needs {len(ef)} bytes, EF size is {size}")
        ef += bytes((FILLER,)) * (size - len(ef))
    return ef


def decode_helper_basic_info(ef_bytes: bytes) -> HelperBasicInfo:
    """Name, address, birth date, sex and the offset table from EF 0002.

    The offset table is checked against where the objects really are, not trusted.
    """
    nodes = parse(ef_bytes)
    if not nodes or nodes[0].tag != TAG_BASIC_INFO or nodes[0].children is None:
        got = nodes[0].raw_tag.hex().upper() if nodes else "nothing"
        raise TlvError(f"basic info EF starts with {got}, not FF20")
    outer = nodes[0]
    positions: dict[int, int] = {}
    pos = len(outer.header)
    for child in outer.children or ():
        positions.setdefault(child.tag, pos)
        pos += len(child)

    def value(tag: int, what: str) -> bytes:
        node = next((c for c in outer.children or () if c.tag == tag), None)
        if node is None:
            raise TlvError(f"basic info has no {what} ({tag:04X})")
        return node.value

    table = value(TAG_OFFSETS, "offset table")
    if len(table) != 8:
        raise TlvError(f"offset table DF21 has {len(table)} bytes, not 8")
    offsets = tuple(int.from_bytes(table[i : i + 2], "big") for i in range(0, 8, 2))
    tags = (TAG_NAME, TAG_ADDRESS, TAG_BIRTHDATE, TAG_SEX)
    for i, (tag, off) in enumerate(zip(tags, offsets, strict=True)):
        if positions.get(tag) != off:
            raise TlvError(f"offset {i} in DF21 says {off}, {tag:04X} is at {positions.get(tag)}")
    try:
        name = value(TAG_NAME, "name").decode("utf-8")
        address = value(TAG_ADDRESS, "address").decode("utf-8")
        ymd = value(TAG_BIRTHDATE, "birth date").decode("ascii")
        sex = value(TAG_SEX, "sex").decode("ascii")
    except UnicodeDecodeError as exc:
        raise TlvError(f"basic info text is not UTF-8: {exc}") from None
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


# ---------------------------------------------------------------- certificates

_SHORT_NAMES = {
    "country_name": "C",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "common_name": "CN",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "serial_number": "serialNumber",
    "email_address": "emailAddress",
}

#: subjectAltName otherName OIDs of the sign certificate's four facts
JPKI_SAN_FIELDS = {
    "1.2.392.200149.8.5.5.1": "name",
    "1.2.392.200149.8.5.5.2": "name_substitute_flags",
    "1.2.392.200149.8.5.5.3": "sex",
    "1.2.392.200149.8.5.5.4": "birthdate",
    "1.2.392.200149.8.5.5.5": "address",
    "1.2.392.200149.8.5.5.6": "address_substitute_flags",
}


def _name_text(name: Any) -> str:
    parts = []
    for rdn in name.chosen:
        for atv in rdn:
            kind = atv["type"].native
            label = _SHORT_NAMES.get(kind, atv["type"].dotted)
            parts.append(f"{label}={atv['value'].native}")
    return ", ".join(parts)


def describe_certificate(der: bytes) -> dict[str, Any]:
    """A summary of a DER certificate, read without re-encoding it.

    Keys: subject, issuer (``C=JP, O=JPKI, ...`` in DER order), serial (int),
    serial_hex, not_before, not_after (aware datetimes), sha256 (hex of the DER),
    key_bits, signature_algorithm, is_ca, key_usage (list), jpki_attributes
    (the sign certificate's four facts from subjectAltName, by field name).
    Raises ValueError on bytes that are not a certificate.
    """
    from asn1crypto import x509  # local: keeps importing this module cheap

    try:
        cert = x509.Certificate.load(bytes(der))
        tbs = cert["tbs_certificate"]
        summary: dict[str, Any] = {
            "subject": _name_text(tbs["subject"]),
            "issuer": _name_text(tbs["issuer"]),
            "serial": tbs["serial_number"].native,
            "not_before": tbs["validity"]["not_before"].native,
            "not_after": tbs["validity"]["not_after"].native,
            "signature_algorithm": cert["signature_algorithm"].signature_algo,
            "key_bits": cert.public_key.bit_size,
            "is_ca": bool(cert.ca),
            "key_usage": sorted(cert.key_usage_value.native) if cert.key_usage_value else [],
        }
        facts: dict[str, str] = {}
        for general_name in cert.subject_alt_name_value or ():
            if general_name.name != "other_name":
                continue
            other = general_name.chosen
            field = JPKI_SAN_FIELDS.get(other["type_id"].dotted)
            if field is not None:
                facts[field] = str(other["value"].native)
        summary["jpki_attributes"] = facts
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a DER X.509 certificate: {exc}") from None
    summary["serial_hex"] = format(summary["serial"], "X")
    summary["sha256"] = hashlib.sha256(bytes(der)).hexdigest()
    return summary


def concat(nodes: Sequence[Tlv]) -> bytes:
    """The encoding of several objects one after the other."""
    return b"".join(n.to_bytes() for n in nodes)
