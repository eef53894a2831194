"""Commands and events in words: `SELECT jpki`, `VERIFY auth PIN`, `trace show`."""

from __future__ import annotations

import io

from jpki_sim.trace.formats import scriptor_bytes
from jpki_sim.trace.model import (
    Comment,
    Event,
    PowerOff,
    Reset,
    Trace,
)

# ---------------------------------------------------------------- describing commands

_INS_NAMES = {
    0xA4: "SELECT",
    0xB0: "READ BINARY",
    0xB1: "READ BINARY (odd)",
    0xB2: "READ RECORD",
    0x20: "VERIFY",
    0x24: "CHANGE REFERENCE DATA",
    0x2C: "RESET RETRY COUNTER",
    0x2A: "PERFORM SECURITY OPERATION",
    0x88: "INTERNAL AUTHENTICATE",
    0x84: "GET CHALLENGE",
    0xC0: "GET RESPONSE",
    0xCA: "GET DATA",
    0xD6: "UPDATE BINARY",
    0x22: "MANAGE SECURITY ENVIRONMENT",
}


def describe_command(command: bytes) -> str:
    """A short name for a command in the card's terms: ``SELECT jpki``, ``VERIFY auth PIN``."""
    from jpki_sim.profiles.jpki import ids as jpki

    if len(command) < 4:
        return f"malformed ({len(command)} bytes)"
    cla, ins, p1, p2 = command[:4]
    if cla & 0xE0 == 0x80 and ins == 0x2A:
        return f"COMPUTE DIGITAL SIGNATURE scheme {p1:02X}"
    if cla & 0xE0 == 0x80 and ins == 0x32:
        return "CHANGE KEY"
    if cla & 0xE0 == 0x80 and ins == 0xAE:
        return "SET SESSION KEY"
    name = _INS_NAMES.get(ins, f"INS {ins:02X}")
    body = command[5:5 + command[4]] if len(command) > 5 else b""
    if ins == 0xA4 and p1 == 0x04:
        apps = {aid: n for n, aid in jpki.APPLICATIONS.items()}
        apps[jpki.CARD_MANAGER_AID] = "card manager"
        return f"SELECT {apps.get(body, body.hex().upper())}"
    if ins == 0xB2:
        sfi = p2 >> 3
        return f"READ RECORD {p1}" + (f" of SFI {sfi}" if sfi else "")
    if ins == 0xCA:
        return f"GET DATA {p1:02X}{p2:02X}"
    if ins == 0x88:
        return f"INTERNAL AUTHENTICATE key {p2:02X}"
    if ins == 0xA4 and p1 == 0x02 and len(body) == 2:
        return f"SELECT EF {body.hex().upper()}"
    if ins == 0xB0 and not p1 & 0x80:
        from jpki_sim.iso7816.apdu import CommandApdu
        from jpki_sim.iso7816.errors import MalformedApdu

        try:
            ne = CommandApdu.parse(command).ne
        except MalformedApdu:
            return f"READ BINARY offset {p1 << 8 | p2:04X} (malformed lengths)"
        n = "" if ne is None else f" Le {ne}"
        return f"READ BINARY offset {p1 << 8 | p2:04X}{n}"
    if ins == 0x20:
        return "VERIFY (status query)" if len(command) == 4 else "VERIFY"
    if ins == 0xC0:
        return f"GET RESPONSE {command[4] if len(command) > 4 else 0:02X}"
    return name


def format_event(e: Event, *, width: int = 16) -> list[str]:
    """Human-readable lines for one event (``jpki-sim trace show``)."""
    from jpki_sim.iso7816.sw import describe, tries_left

    stamp = f"{e.t:10.6f}"
    if isinstance(e, Reset):
        return [f"{stamp}  == {e.kind} reset, ATR {scriptor_bytes(e.atr)}"]
    if isinstance(e, PowerOff):
        return [f"{stamp}  == power off"]
    if isinstance(e, Comment):
        return [f"{stamp}  # {e.text}"]
    pad = " " * len(stamp)
    note = " (PIN redacted)" if e.redacted else ""
    lines = [
        f"{stamp}  >> {scriptor_bytes(e.command)}",
        f"{pad}     {describe_command(e.command)}{note}",
    ]
    data = e.data
    for i in range(0, len(data), width):
        row = data[i : i + width]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{pad}  << {scriptor_bytes(row):<{width * 3}} {text}")
    sw_text = describe(e.sw)
    tries = tries_left(e.sw)
    if tries is not None and e.command[1:2] == b"\x20":
        sw_text += f" [tries left: {tries}]"
    lines.append(f"{pad}  << {sw_text}  ({e.duration * 1000:.2f} ms)")
    return lines


def render(trace: Trace) -> str:
    out = io.StringIO()
    out.write(f"trace of {trace.card or 'an unnamed card'}, created {trace.created or '?'}, "
              f"PIN data {trace.pins}\n")
    for e in trace.events:
        for line in format_event(e):
            out.write(line + "\n")
    xf = trace.xfers
    out.write(f"{len(xf)} exchange{'s' if len(xf) != 1 else ''}, "
              f"{sum(1 for x in xf if x.sw != 0x9000)} not 9000\n")
    return out.getvalue()
