"""Reading APDUs typed at the shell, and matching status-word patterns.

Accepted forms (case-insensitive):

* plain hex, compact or spaced: ``00A4040C0AD392F000260100000001``,
  ``00 A4 04 0C 0A D3 92 ...``; colons between bytes: ``00:A4:04:0C:...``.
  Sent exactly as typed (after a length check, unless ``--raw``).
* the short form ``[CLA]INS[P1P2][:DATA][/LE]`` with Lc computed (plain hex
  of 1 to 3 bytes is read as this form too, ``200080`` = ``00 20 00 80``): the part
  before ``:`` or ``/`` is 1 byte (INS), 2 (CLA INS), 3 (INS P1 P2) or 4 bytes
  (CLA INS P1 P2); CLA and P1 P2 default to 00. DATA is hex, or text in
  quotes (``:"1234"``). LE is one hex byte (``00`` = 256) or two for an
  extended Le. Examples: ``A4040C:D392F000260100000001``, ``B0/04``,
  ``0020 0080``, ``200080:"1234"``.

A text is in the short form when it holds a ``/`` or exactly one ``:``; the
colon-separated plain form always has at least three.
"""

from __future__ import annotations

import re

from jpki_sim.iso7816.apdu import CommandApdu, parse_hex
from jpki_sim.iso7816.errors import MalformedApdu


class ApduTextError(ValueError):
    """Typed text that is not an APDU; the message is one line."""


def _hex(text: str, what: str) -> bytes:
    try:
        return parse_hex(text, what)
    except ValueError as exc:
        raise ApduTextError(str(exc)) from None


def is_short_form(text: str) -> bool:
    return "/" in text or text.count(":") == 1


def parse_short_form(text: str) -> bytes:
    head, le_text = text, None
    if "/" in text:
        head, _, le_text = text.rpartition("/")
    data = b""
    if ":" in head:
        head, _, data_text = head.partition(":")
        stripped = data_text.strip()
        if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "\"'":
            try:
                data = stripped[1:-1].encode("ascii")
            except UnicodeEncodeError:
                raise ApduTextError("quoted data must be ASCII") from None
        else:
            data = _hex(data_text, "data")
        if not data:
            raise ApduTextError("':' with no data after it")
    header = _hex(head, "header")
    if len(header) == 1:
        cla, ins, p1, p2 = 0, header[0], 0, 0
    elif len(header) == 2:
        cla, ins, p1, p2 = header[0], header[1], 0, 0
    elif len(header) == 3:
        cla, ins, p1, p2 = 0, header[0], header[1], header[2]
    elif len(header) == 4:
        cla, ins, p1, p2 = header
    else:
        raise ApduTextError(
            f"short form header of {len(header)} bytes: want INS, CLA INS, INS P1P2 or CLA INS P1P2"
        )
    ne: int | None = None
    extended = False
    if le_text is not None:
        le = _hex(le_text, "Le")
        if len(le) == 1:
            ne = le[0] or 256
        elif len(le) == 2:
            ne = int.from_bytes(le, "big") or 65536
            extended = True
        else:
            raise ApduTextError("Le after '/' is one hex byte (00 = 256) or two (extended)")
    try:
        return CommandApdu(cla, ins, p1, p2, data, ne, extended).to_bytes()
    except ValueError as exc:
        raise ApduTextError(str(exc)) from None


def parse_apdu_text(text: str, *, raw: bool = False) -> bytes:
    """Command bytes from what the user typed; ApduTextError (one line) if it is not one.

    ``raw`` skips the length check of the plain form, to send malformed
    commands on purpose.
    """
    text = text.strip()
    if not text:
        raise ApduTextError("no APDU given")
    if is_short_form(text):
        return parse_short_form(text)
    command = _hex(text, "APDU")
    if raw:
        if not command:
            raise ApduTextError("no bytes to send")
        return command
    if len(command) < 4:
        # too short for a command: read as the short form's header (INS, CLA INS, INS P1P2)
        return parse_short_form(text)
    try:
        CommandApdu.parse(command)
    except MalformedApdu as exc:
        raise ApduTextError(f"{exc} (use --raw to send it anyway)") from None
    return command


_SW_PATTERN = re.compile(r"^[0-9A-Fa-f?xX]{4}$")


def check_sw_pattern(pattern: str) -> list[str]:
    """Split ``9000|61??`` (or comma-separated) into checked 4-character patterns."""
    parts = [p.strip() for p in re.split(r"[|,]", pattern) if p.strip()]
    if not parts:
        raise ApduTextError("empty status word pattern")
    for p in parts:
        if not _SW_PATTERN.match(p):
            raise ApduTextError(
                f"status word pattern {p!r}: 4 hex digits, '?' for any digit (e.g. 63C?)"
            )
    return [p.upper().replace("X", "?") for p in parts]


def sw_matches(pattern: str, sw: int) -> bool:
    """``63C?`` matches 63C0..63CF; alternatives with ``|`` or ``,``."""
    text = f"{sw:04X}"
    return any(
        all(p == "?" or p == c for p, c in zip(alt, text, strict=True))
        for alt in check_sw_pattern(pattern)
    )
