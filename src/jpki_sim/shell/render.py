"""Text the shell prints: hex dumps, status words, decoded data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jpki_sim.iso7816.sw import describe, tries_left

WIDTH = 16


def spaced(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def ascii_of(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def hexdump(data: bytes, prefix: str = "< ") -> list[str]:
    """Hex and ASCII, 16 bytes a line; runs of identical lines (FF filler) shown once."""
    lines: list[str] = []
    previous: bytes | None = None
    repeats = 0
    for i in range(0, len(data), WIDTH):
        row = data[i : i + WIDTH]
        if row == previous and len(row) == WIDTH:
            repeats += 1
            continue
        if repeats:
            lines.append(f"{prefix}* {repeats} more line{'s' if repeats > 1 else ''} the same")
            repeats = 0
        lines.append(f"{prefix}{spaced(row):<{WIDTH * 3 - 1}}  {ascii_of(row)}")
        previous = row
    if repeats:
        lines.append(f"{prefix}* {repeats} more line{'s' if repeats > 1 else ''} the same")
    return lines


def sw_line(sw: int, *, pin_answer: bool = False) -> str:
    """``9000 success``; for PIN answers also the tries left."""
    text = describe(sw)
    tries = tries_left(sw)
    if pin_answer and tries is not None:
        text += f"  [tries left: {tries}]"
    elif pin_answer and sw == 0x6984:
        text += "  [tries left: 0, blocked]"
    return text


def certificate_summary(der: bytes, now: datetime | None) -> list[str] | None:
    """Subject, issuer, serial, validity (flagged against ``now``), key; None if not a cert."""
    from jpki_sim.profiles.jpki.certinfo import describe_certificate

    try:
        info: dict[str, Any] = describe_certificate(der)
    except ValueError:
        return None
    nb: datetime = info["not_before"]
    na: datetime = info["not_after"]
    flag = ""
    if now is not None:
        if now > na:
            flag = "  EXPIRED"
        elif now < nb:
            flag = "  NOT YET VALID"
        else:
            flag = "  valid"
        flag += f" (card clock {now.date().isoformat()})"
    lines = [
        f"subject   {info['subject'] or '(empty)'}",
        f"issuer    {info['issuer']}",
        f"serial    {info['serial_hex']}",
        f"validity  {_utc(nb)} .. {_utc(na)}{flag}",
        f"key       RSA {info['key_bits']}, {info['signature_algorithm']}"
        + (", CA" if info["is_ca"] else "")
        + (f", usage {' '.join(info['key_usage'])}" if info["key_usage"] else ""),
    ]
    for name, value in info.get("jpki_attributes", {}).items():
        lines.append(f"  {name:<24} {value}")
    lines.append(f"sha256    {info['sha256']}")
    return lines


def _utc(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%SZ")


def decode_data(data: bytes, now: datetime | None) -> list[str]:
    """A decoded view of response data when it is a certificate or a TLV object."""
    if len(data) < 3:
        return []
    if data[0] == 0x30:
        from jpki_sim.iso7816.client import der_length

        try:
            end = der_length(data[:6])
        except ValueError:
            end = 0
        if 0 < end <= len(data):
            # a whole certificate, maybe followed by the EF's FF filler
            cert = certificate_summary(data[:end], now)
            if cert is not None:
                rest = data[end:]
                tail = [f"  + {len(rest)} bytes of FF filler"] if rest and not rest.strip(
                    b"\xff") else ([f"  + {len(rest)} bytes after it"] if rest else [])
                return ["certificate:", *("  " + x for x in cert), *tail]
    from jpki_sim.iso7816 import tlv

    try:
        nodes, filler = tlv.parse_with_filler(data)
    except (ValueError, tlv.TlvError):
        return []
    # only objects that look like the card's own (constructed, or two-byte
    # private/context tags such as FF10, DF22): random bytes seldom do
    if not nodes or not any(n.children or len(n.raw_tag) > 1 for n in nodes):
        return []
    lines = ["TLV:"]
    for n in nodes:
        lines += _tlv_lines(n, 1)
    if filler:
        lines.append(f"  + {len(filler)} bytes of FF filler")
    return lines


def _tlv_lines(node: Any, depth: int) -> list[str]:
    pad = "  " * depth
    head = f"{pad}{node.raw_tag.hex().upper()} {node.raw_length.hex().upper()}"
    if node.children:
        out = [head]
        for child in node.children:
            out += _tlv_lines(child, depth + 1)
        return out
    value: bytes = node.value
    text = ""
    try:
        decoded = value.decode("utf-8")
        # the ideographic space U+3000 between family and given name is text too
        if decoded and decoded.replace("\u3000", " ").isprintable():
            text = f'  "{decoded}"'
    except UnicodeDecodeError:
        pass
    shown = value.hex().upper() if len(value) <= 32 else f"{value[:32].hex().upper()}..."
    return [f"{head}  {shown}{text}"]


def decode_record(data: bytes) -> list[str]:
    """A record as simple-TLV (one-byte tag, one-byte length, value): ``tag 01, 28 bytes "..."``.

    Records of record-structured EFs hold simple-TLV (JICSAP 4.4.1); shown only
    when the whole record is one such object.
    """
    if len(data) < 2 or data[1] == 0xFF or 2 + data[1] != len(data):
        return []
    value = data[2:]
    text = value.decode("ascii") if value.isascii() and value.decode("ascii").isprintable() else ""
    shown = f' "{text}"' if text else ""
    return [f"simple-TLV: tag {data[0]:02X}, {len(value)} bytes{shown}"]
