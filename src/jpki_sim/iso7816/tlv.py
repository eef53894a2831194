"""BER-TLV as the My Number card writes it, byte for byte.

The card's EFs are not minimal DER (protocol notes §5): tag numbers below 31
are written in the long form (``FF 10`` where DER would say ``F0``), lengths
carry leading zero bytes (``82 00 9F`` for 159), and the objects are followed by
``FF`` filler up to the EF's size. A :class:`Tlv` node therefore keeps the raw
tag bytes and the raw length bytes it was read from, so ``to_bytes()`` gives
back exactly the input; the encoders build either the minimal form or the
card's.

The records of a particular card built on it live with that card's profile
(JPKI: :mod:`jpki_sim.profiles.jpki.records`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "CLASS_APPLICATION",
    "CLASS_CONTEXT",
    "CLASS_PRIVATE",
    "CLASS_UNIVERSAL",
    "Tlv",
    "TlvError",
    "card_length",
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


def concat(nodes: Sequence[Tlv]) -> bytes:
    """The encoding of several objects one after the other."""
    return b"".join(n.to_bytes() for n in nodes)
