"""Command and response APDUs (ISO/IEC 7816-3 cases 1, 2S, 3S, 4S, 2E, 3E, 4E).

``CommandApdu.parse`` is on the card's hot path, so it decodes the header and
the length fields by hand; :mod:`jpki_sim.codec` describes the same layouts
with ``construct`` and is checked against this parser.

``ne`` is the number of response bytes expected: ``None`` when the command has
no Le field, else 1..256 (short) or 1..65536 (extended); an encoded Le of zero
means the maximum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jpki_sim.iso7816.errors import MalformedApdu

SHORT_MAX_NC = 255
SHORT_MAX_NE = 256
EXT_MAX_NC = 65535
EXT_MAX_NE = 65536


@dataclass(frozen=True, slots=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    ne: int | None = None
    extended: bool = False

    @property
    def case(self) -> str:
        """ISO 7816-3 case: '1', '2S', '3S', '4S', '2E', '3E' or '4E'."""
        suffix = "E" if self.extended else "S"
        if not self.data:
            return "1" if self.ne is None else "2" + suffix
        return ("3" if self.ne is None else "4") + suffix

    @property
    def p1p2(self) -> int:
        return (self.p1 << 8) | self.p2

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Decode a command APDU; raise :class:`MalformedApdu` on bad lengths."""
        if cls is not CommandApdu or type(raw) is not bytes:
            return cls._decode(raw)
        # Clients repeat a few commands over and over (SELECT, READ BINARY at the
        # same offsets, retry-counter queries) and a CommandApdu is immutable, so
        # one decoding serves every repeat: this was most of the card's time per
        # APDU. Bounded; commands that carry a PIN are never kept.
        apdu = _PARSED.get(raw)
        if apdu is None:
            apdu = cls._decode(raw)
            n = len(raw)
            if n <= _PARSED_MAX_LEN and (n <= 5 or raw[1] not in _PIN_INS):
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()
                _PARSED[raw] = apdu
        return apdu

    @classmethod
    def _decode(cls, raw: bytes) -> CommandApdu:
        n = len(raw)
        if n < 4:
            raise MalformedApdu(f"command APDU of {n} bytes: at least 4 needed")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2)
        b4 = raw[4]
        if n == 5:
            return cls(cla, ins, p1, p2, b"", b4 or 256)
        if b4:
            # short Lc
            if n == 5 + b4:
                return cls(cla, ins, p1, p2, bytes(raw[5:]))
            if n == 6 + b4:
                return cls(cla, ins, p1, p2, bytes(raw[5:-1]), raw[-1] or 256)
            raise MalformedApdu(f"Lc={b4} does not fit a command APDU of {n} bytes")
        # b4 == 0 and more bytes follow: extended length
        if n < 7:
            raise MalformedApdu(f"extended length field truncated ({n} bytes)")
        l2 = (raw[5] << 8) | raw[6]
        if n == 7:
            return cls(cla, ins, p1, p2, b"", l2 or 65536, True)
        if l2 == 0:
            raise MalformedApdu("extended Lc of zero")
        if n == 7 + l2:
            return cls(cla, ins, p1, p2, bytes(raw[7:]), None, True)
        if n == 9 + l2:
            le = (raw[-2] << 8) | raw[-1]
            return cls(cla, ins, p1, p2, bytes(raw[7:-2]), le or 65536, True)
        raise MalformedApdu(f"extended Lc={l2} does not fit a command APDU of {n} bytes")

    def to_bytes(self) -> bytes:
        """Encode, choosing extended form when a length needs it (or ``extended``)."""
        nc = len(self.data)
        ne = self.ne
        if nc > EXT_MAX_NC:
            raise ValueError(f"command data of {nc} bytes is too long")
        if ne is not None and not 1 <= ne <= EXT_MAX_NE:
            raise ValueError(f"Ne={ne} out of range 1..65536")
        ext = self.extended or nc > SHORT_MAX_NC or (ne is not None and ne > SHORT_MAX_NE)
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        if not ext:
            if nc:
                out.append(nc)
                out += self.data
            if ne is not None:
                out.append(ne & 0xFF)
            return bytes(out)
        if nc:
            out += bytes((0, nc >> 8, nc & 0xFF))
            out += self.data
            if ne is not None:
                out += (ne & 0xFFFF).to_bytes(2, "big")
        elif ne is not None:
            out += bytes((0,)) + (ne & 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def __str__(self) -> str:
        return self.to_bytes().hex(" ").upper()


#: CommandApdu.parse's memo of decoded commands (see there)
_PARSED: dict[bytes, CommandApdu] = {}
_PARSED_MAX = 512
_PARSED_MAX_LEN = 32
#: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, and the JICSAP-family
#: CHANGE KEY (80 32): their data are PINs
_PIN_INS = frozenset((0x20, 0x24, 0x2C, 0x32))

@dataclass(frozen=True, slots=True)
class ResponseApdu:
    data: bytes
    sw: int
    extra: tuple[bytes, ...] = field(default=(), compare=False)

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ValueError(f"response APDU of {len(raw)} bytes: at least SW1 SW2 needed")
        return cls(bytes(raw[:-2]), (raw[-2] << 8) | raw[-1])

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def __str__(self) -> str:
        return self.to_bytes().hex(" ").upper()


_HEX_SEPARATORS = re.compile(r"[\s:_-]")


def parse_hex(text: str, what: str = "") -> bytes:
    """Hex with optional spaces, colons, dashes, underscores or a 0x prefix -> bytes.

    Raises ValueError with a one-line message on anything else; ``what`` names the
    field in that message (``odd number of hex digits in data '0A1'``).
    """
    cleaned = _HEX_SEPARATORS.sub("", text)
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    shown = f"{what} {text.strip()!r}" if what else repr(text.strip())
    if len(cleaned) % 2:
        raise ValueError(f"odd number of hex digits in {shown}")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"not hex: {text.strip()!r}") from None
