"""APDU layouts described with ``construct``: every ISO/IEC 7816-3 command case and the response.

This is the declarative twin of the hand-written parser in :mod:`jpki_sim.apdu`
(which stays on the card's hot path). Each case is one ``construct`` struct;
:func:`parse_command` accepts raw bytes only when exactly one case's layout
fits them, which is how ISO 7816-3 (§12.1.3) makes the decoding unambiguous:

======  ==========================================  ====================
case    bytes after CLA INS P1 P2                   lengths
======  ==========================================  ====================
1       (nothing)
2S      Le                                          Le 00 means 256
3S      Lc data                                     Lc 01..FF
4S      Lc data Le                                  Lc 01..FF, Le 00=256
2E      00 Le1 Le2                                  Le 0000 means 65536
3E      00 Lc1 Lc2 data                             Lc 0001..FFFF
4E      00 Lc1 Lc2 data Le1 Le2                     Le 0000 means 65536
======  ==========================================  ====================

Both parsers return the same :class:`~jpki_sim.apdu.CommandApdu` and raise the
same :class:`~jpki_sim.errors.MalformedApdu`; ``tests/test_codec.py`` checks with
hypothesis that they agree on every byte string.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Adapter,
    Bytes,
    Check,
    Const,
    Construct,
    ConstructError,
    Int8ub,
    Int16ub,
    Rebuild,
    Struct,
    Terminated,
    ValidationError,
    len_,
    this,
)
from construct.core import stream_size

from jpki_sim.iso7816.apdu import (
    EXT_MAX_NC,
    EXT_MAX_NE,
    SHORT_MAX_NC,
    SHORT_MAX_NE,
    CommandApdu,
    ResponseApdu,
)
from jpki_sim.iso7816.errors import MalformedApdu

__all__ = [
    "CASES",
    "COMMAND_CASES",
    "RESPONSE",
    "build_command",
    "build_response",
    "command_case",
    "parse_command",
    "parse_response",
]


class _LeField(Adapter):  # type: ignore[misc]  # construct ships no type hints
    """Le as Ne: the encoded value zero stands for the largest Ne of the field.

    Short Le is one byte (00 = 256), extended Le two bytes (0000 = 65536).
    """

    def __init__(self, subcon: Construct, maximum: int) -> None:
        super().__init__(subcon)
        self.maximum = maximum

    def _decode(self, obj: int, context: Any, path: str) -> int:
        return obj or self.maximum

    def _encode(self, obj: int, context: Any, path: str) -> int:
        if not 1 <= obj <= self.maximum:
            raise ValidationError(f"Ne={obj} outside 1..{self.maximum}", path=path)
        return 0 if obj == self.maximum else obj


HEADER = Struct("cla" / Int8ub, "ins" / Int8ub, "p1" / Int8ub, "p2" / Int8ub)

_SHORT_LE = _LeField(Int8ub, SHORT_MAX_NE)
_EXT_LE = _LeField(Int16ub, EXT_MAX_NE)
# The Lc byte(s) are rebuilt from the data; a zero Lc is never a valid encoding
# (a command without data simply has no Lc field).
_SHORT_LC = Rebuild(Int8ub, len_(this.data))
_EXT_LC = Rebuild(Int16ub, len_(this.data))
# An extended length field starts with one byte 00: that is what tells it from a short Lc.
_EXT_MARK = Const(b"\x00")

CASE_1 = Struct("header" / HEADER, Terminated)
CASE_2S = Struct("header" / HEADER, "ne" / _SHORT_LE, Terminated)
CASE_3S = Struct(
    "header" / HEADER,
    "lc" / _SHORT_LC,
    Check(this.lc >= 1),
    "data" / Bytes(this.lc),
    Terminated,
)
CASE_4S = Struct(
    "header" / HEADER,
    "lc" / _SHORT_LC,
    Check(this.lc >= 1),
    "data" / Bytes(this.lc),
    "ne" / _SHORT_LE,
    Terminated,
)
CASE_2E = Struct("header" / HEADER, _EXT_MARK, "ne" / _EXT_LE, Terminated)
CASE_3E = Struct(
    "header" / HEADER,
    _EXT_MARK,
    "lc" / _EXT_LC,
    Check(this.lc >= 1),
    "data" / Bytes(this.lc),
    Terminated,
)
CASE_4E = Struct(
    "header" / HEADER,
    _EXT_MARK,
    "lc" / _EXT_LC,
    Check(this.lc >= 1),
    "data" / Bytes(this.lc),
    "ne" / _EXT_LE,
    Terminated,
)

#: the command layouts by ISO 7816-3 case name
COMMAND_CASES: dict[str, Construct] = {
    "1": CASE_1,
    "2S": CASE_2S,
    "3S": CASE_3S,
    "4S": CASE_4S,
    "2E": CASE_2E,
    "3E": CASE_3E,
    "4E": CASE_4E,
}
CASES: tuple[str, ...] = tuple(COMMAND_CASES)


def _response_data_len(ctx: Any) -> int:
    # The response has no length field: the data is everything before the
    # last two bytes (SW1 SW2), so its length comes from the stream itself.
    if ctx._building:
        return len(ctx.data)
    return int(stream_size(ctx._io)) - 2


#: response APDU: data field then SW1 SW2 (kept as one 16-bit status word)
RESPONSE = Struct(
    Check(lambda ctx: ctx._building or stream_size(ctx._io) >= 2),
    "data" / Bytes(_response_data_len),
    "sw" / Int16ub,
    Terminated,
)


def command_case(nc: int, ne: int | None, extended: bool) -> str:
    """The ISO case name for a command with ``nc`` data bytes and ``ne`` (None: no Le)."""
    if nc == 0 and ne is None:
        return "1"
    suffix = "E" if extended else "S"
    if nc == 0:
        return "2" + suffix
    return ("3" if ne is None else "4") + suffix


def build_command(
    cla: int,
    ins: int,
    p1: int,
    p2: int,
    data: bytes = b"",
    ne: int | None = None,
    extended: bool | None = None,
) -> bytes:
    """Encode a command APDU.

    ``ne`` is the number of response bytes wanted (None: no Le field).
    ``extended`` None picks the short form when the lengths fit it and the
    extended form otherwise; True forces extended lengths (not for case 1, which
    has none); False forces short lengths. Anything that cannot be encoded
    raises :class:`MalformedApdu`.
    """
    data = bytes(data)
    nc = len(data)
    for name, byte in (("CLA", cla), ("INS", ins), ("P1", p1), ("P2", p2)):
        if not 0 <= byte <= 0xFF:
            raise MalformedApdu(f"{name}={byte} is not a byte")
    if nc > EXT_MAX_NC:
        raise MalformedApdu(f"command data of {nc} bytes: at most {EXT_MAX_NC} fit an APDU")
    if ne is not None and not 1 <= ne <= EXT_MAX_NE:
        raise MalformedApdu(f"Ne={ne} outside 1..{EXT_MAX_NE}")
    needs_ext = nc > SHORT_MAX_NC or (ne is not None and ne > SHORT_MAX_NE)
    if extended is None:
        extended = needs_ext
    elif not extended and needs_ext:
        raise MalformedApdu(
            f"Nc={nc}, Ne={ne} do not fit short lengths"
            f" (Nc <= {SHORT_MAX_NC}, Ne <= {SHORT_MAX_NE})"
        )
    case = command_case(nc, ne, extended)
    if case == "1" and extended:
        raise MalformedApdu("a case 1 command has no length fields to make extended")
    header = {"cla": cla, "ins": ins, "p1": p1, "p2": p2}
    obj: dict[str, Any] = {"header": header, "data": data, "ne": ne}
    try:
        return bytes(COMMAND_CASES[case].build(obj))
    except ConstructError as exc:  # pragma: no cover - the checks above cover the ranges
        raise MalformedApdu(f"cannot encode a case {case} APDU: {exc}") from None


def _explain(raw: bytes) -> str:
    """Why no case fits, in the terms of ISO 7816-3's decoding rules."""
    n = len(raw)
    if n < 4:
        return f"command APDU of {n} bytes: at least 4 needed"
    b4 = raw[4]
    if b4:
        return (
            f"short Lc={b4} does not fit a command APDU of {n} bytes (wants {5 + b4} or {6 + b4})"
        )
    if n < 7:
        return f"extended length field truncated ({n} bytes)"
    lc = int.from_bytes(raw[5:7], "big")
    if lc == 0:
        return "extended Lc of zero"
    return f"extended Lc={lc} does not fit a command APDU of {n} bytes (wants {7 + lc} or {9 + lc})"


def parse_command(raw: bytes) -> CommandApdu:
    """Decode a command APDU through the ``construct`` layouts.

    Exactly one of the seven layouts fits a well-formed APDU; none fits a
    malformed one, which raises :class:`MalformedApdu` (answered 6700 by the card).
    """
    raw = bytes(raw)
    fits: list[tuple[str, Any]] = []
    for case, layout in COMMAND_CASES.items():
        try:
            fits.append((case, layout.parse(raw)))
        except ConstructError:
            continue
    if not fits:
        raise MalformedApdu(_explain(raw))
    if len(fits) > 1:  # pragma: no cover - ISO 7816-3's rules exclude this
        raise MalformedApdu(f"ambiguous APDU: fits cases {', '.join(c for c, _ in fits)}")
    case, obj = fits[0]
    h = obj.header
    return CommandApdu(
        h.cla,
        h.ins,
        h.p1,
        h.p2,
        bytes(obj.get("data", b"")),
        obj.get("ne"),
        case.endswith("E"),
    )


def build_response(data: bytes, sw: int) -> bytes:
    """Encode a response APDU: data then SW1 SW2."""
    if not 0 <= sw <= 0xFFFF:
        raise ValueError(f"status word {sw:#x} is not two bytes")
    return bytes(RESPONSE.build({"data": bytes(data), "sw": sw}))


def parse_response(raw: bytes) -> ResponseApdu:
    """Decode a response APDU; ValueError when it is shorter than SW1 SW2."""
    try:
        obj = RESPONSE.parse(bytes(raw))
    except ConstructError:
        raise ValueError(f"response APDU of {len(raw)} bytes: at least SW1 SW2 needed") from None
    return ResponseApdu(bytes(obj.data), obj.sw)
