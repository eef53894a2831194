"""Reading and writing traces: JSON Lines, GlobalPlatformPro logs, pcsc-tools scriptor forms."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jpki_sim.trace.model import (
    FORMAT,
    FORMATS,
    PINS_CLEAR,
    PINS_REDACTED,
    VERSION,
    Comment,
    Event,
    PowerOff,
    Reset,
    Trace,
    TraceError,
    Xfer,
    now_iso,
)

# ---------------------------------------------------------------- JSON Lines


def _xfer_json(e: Xfer) -> dict[str, Any]:
    d: dict[str, Any] = {
        "event": "xfer",
        "t": round(e.t, 6),
        "duration": round(e.duration, 6),
        "command": e.command.hex().upper(),
        "response": e.response.hex().upper(),
        "sw": f"{e.sw:04X}" if len(e.response) >= 2 else "",
    }
    if e.redacted:
        d["redacted"] = True
    return d


def event_to_json(e: Event) -> dict[str, Any]:
    """One event as its JSON Lines object."""
    if isinstance(e, Xfer):
        return _xfer_json(e)
    if isinstance(e, Reset):
        return {"event": "reset", "t": round(e.t, 6), "atr": e.atr.hex().upper(), "kind": e.kind}
    if isinstance(e, PowerOff):
        return {"event": "power-off", "t": round(e.t, 6)}
    return {"event": "comment", "t": round(e.t, 6), "text": e.text}


def dumps_jsonl(trace: Trace) -> str:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "card": trace.card,
        "created": trace.created or now_iso(),
        "pins": trace.pins,
        **trace.extra,
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    lines += [json.dumps(event_to_json(e), ensure_ascii=False) for e in trace.events]
    return "\n".join(lines) + "\n"


def _hex_field(d: dict[str, Any], key: str, lineno: int) -> bytes:
    v = d.get(key)
    if not isinstance(v, str):
        raise TraceError(f"line {lineno}: {key!r} missing or not a hex string")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise TraceError(f"line {lineno}: {key!r} is not hex: {v[:40]!r}") from None


def _num_field(d: dict[str, Any], key: str, lineno: int, default: float | None = None) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise TraceError(f"line {lineno}: {key!r} must be a number of seconds >= 0")
    return float(v)


def parse_event(d: Any, lineno: int = 0) -> Event | None:
    """One JSON event object -> an event; None for event types this version skips."""
    if not isinstance(d, dict):
        raise TraceError(f"line {lineno}: an event must be a JSON object")
    kind = d.get("event")
    t = _num_field(d, "t", lineno, 0.0)
    if kind == "xfer":
        command = _hex_field(d, "command", lineno)
        response = _hex_field(d, "response", lineno)
        if len(response) < 2:
            raise TraceError(f"line {lineno}: response has no status word")
        sw = d.get("sw")
        actual = response[-2:].hex().upper()
        if sw not in (None, "") and (not isinstance(sw, str) or sw.upper() != actual):
            raise TraceError(f"line {lineno}: sw {sw!r} does not match the response's last bytes")
        return Xfer(t, _num_field(d, "duration", lineno, 0.0), command, response,
                    bool(d.get("redacted", False)))
    if kind == "reset":
        k = d.get("kind", "warm")
        if k not in ("warm", "cold"):
            raise TraceError(f"line {lineno}: reset kind must be 'warm' or 'cold'")
        return Reset(t, _hex_field(d, "atr", lineno), k)
    if kind == "power-off":
        return PowerOff(t)
    if kind == "comment":
        text = d.get("text", "")
        return Comment(t, text if isinstance(text, str) else str(text))
    if isinstance(kind, str):
        return None  # a later version's (or an extension's) event: skipped
    raise TraceError(f"line {lineno}: no \"event\" field")


def loads_jsonl(text: str) -> Trace:
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise TraceError("line 1: empty trace (no header)")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise TraceError(f"line 1: not JSON ({exc.msg})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TraceError(f'line 1: not a jpki-sim trace (no "format": "{FORMAT}")')
    if header.get("version") != VERSION:
        raise TraceError(f"line 1: trace version {header.get('version')!r} not supported "
                         f"(this reader knows {VERSION})")
    known = {"format", "version", "card", "created", "pins"}
    trace = Trace(
        card=str(header.get("card", "")),
        created=str(header.get("created", "")),
        pins=PINS_CLEAR if header.get("pins") == PINS_CLEAR else PINS_REDACTED,
        extra={k: v for k, v in header.items() if k not in known},
    )
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"line {lineno}: not JSON ({exc.msg})") from None
        event = parse_event(obj, lineno)
        if event is not None:
            trace.events.append(event)
    return trace


# ---------------------------------------------------------------- GlobalPlatformPro


def _spaced(b: bytes) -> str:
    return b.hex().upper()


def _gp_command(cmd: bytes) -> str:
    """Split a command as apdu4j logs it: header, Lc, data, Le."""
    head = cmd[:4].hex().upper()
    if len(cmd) <= 4:
        return f"(4+0000) {head}"
    lc = cmd[4]
    if lc and len(cmd) in (5 + lc, 6 + lc):
        parts = [head, cmd[4:5].hex().upper(), cmd[5 : 5 + lc].hex().upper()]
        if len(cmd) == 6 + lc:
            parts.append(cmd[-1:].hex().upper())
        return f"(4+{lc:04d}) " + " ".join(parts)
    if len(cmd) == 5:
        return f"(4+0000) {head} {cmd[4:].hex().upper()}"
    # extended or malformed: keep every byte, Nc unknown
    return f"(4+{max(len(cmd) - 5, 0):04d}) {head} {cmd[4:].hex().upper()}"


def dumps_gp(trace: Trace) -> str:
    out = []
    if trace.card:
        out.append(f"# Using {trace.card}")
    for e in trace.events:
        if isinstance(e, Xfer):
            out.append(f"A>> T=1 {_gp_command(e.command)}")
            data = e.data.hex().upper()
            ms = round(e.duration * 1000)
            out.append(f"A<< ({len(e.data):04d}+2) ({ms}ms) " + (f"{data} " if data else "")
                       + e.response[-2:].hex().upper())
        elif isinstance(e, Reset):
            name = trace.card or "reader"
            out.append(f'SCardConnect("{name}", T=1) -> T=1, {e.atr.hex().upper()}')
        elif isinstance(e, PowerOff):
            out.append(f'SCardDisconnect("{trace.card or "reader"}", true)')
        else:
            out.append(f"# {e.text}")
    return "\n".join(out) + "\n"


_GP_CMD = re.compile(r"^A>>\s+(?:(?:T=\S+|\*)\s+)?(?:\(\d+\+\d+\)\s+)?(?P<hex>[0-9A-Fa-f\s]*)$")
_GP_RESP = re.compile(
    r"^A<<\s+(?:\(\d+\+\d+\)\s+)?(?:\((?P<ms>\d+)ms\)\s+)?(?P<hex>[0-9A-Fa-f\s]*)$"
)
_GP_CONNECT = re.compile(
    r'^SCardConnect\("(?P<name>[^"]*)".*->\s*(?:T=\S+,\s*)?(?P<atr>[0-9A-Fa-f]+)\s*$'
)


def loads_gp(text: str) -> Trace:
    trace = Trace(created=now_iso())
    t = 0.0
    pending: bytes | None = None
    pending_line = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("A>>"):
            m = _GP_CMD.match(line)
            if m is None or pending is not None:
                raise TraceError(f"line {lineno}: cannot read GP command line {line[:60]!r}")
            pending = _hexbytes(m.group("hex"), lineno)
            pending_line = lineno
        elif line.startswith("A<<"):
            m = _GP_RESP.match(line)
            if m is None or pending is None:
                raise TraceError(f"line {lineno}: GP response without its command")
            dur = int(m.group("ms")) / 1000 if m.group("ms") else 0.0
            resp = _hexbytes(m.group("hex"), lineno)
            if len(resp) < 2:
                raise TraceError(f"line {lineno}: response has no status word")
            trace.events.append(Xfer(round(t, 6), dur, pending, resp))
            t += dur
            pending = None
        elif (m := _GP_CONNECT.match(line)) is not None:
            trace.card = trace.card or m.group("name")
            trace.events.append(Reset(round(t, 6), _hexbytes(m.group("atr"), lineno), "cold"))
        elif line.startswith("SCardDisconnect"):
            trace.events.append(PowerOff(round(t, 6)))
        elif line.startswith("# Using "):
            trace.card = line[len("# Using "):].strip()
        elif line.startswith("#"):
            trace.events.append(Comment(round(t, 6), line[1:].strip()))
        # anything else GP prints (progress, card info) is not part of the exchange
    if pending is not None:
        raise TraceError(f"line {pending_line}: command without a response")
    return trace


def _hexbytes(text: str, lineno: int) -> bytes:
    from jpki_sim.iso7816.apdu import parse_hex

    try:
        return parse_hex(text)
    except ValueError as exc:
        raise TraceError(f"line {lineno}: {exc}") from None


# ---------------------------------------------------------------- pcsc-tools scriptor


def scriptor_bytes(b: bytes) -> str:
    return " ".join(f"{x:02X}" for x in b)


def dumps_scriptor(trace: Trace) -> str:
    """The log form scriptor prints: ``> cmd`` / ``< resp : meaning``, 16 bytes a line."""
    from jpki_sim.iso7816.sw import meaning

    out: list[str] = []
    for e in trace.events:
        if isinstance(e, Xfer):
            out.append(f"> {scriptor_bytes(e.command)}")
            rows = [e.response[i : i + 16] for i in range(0, len(e.response), 16)]
            for i, row in enumerate(rows):
                prefix = "< " if i == 0 else ""
                out.append(prefix + scriptor_bytes(row) + ("" if i < len(rows) - 1 else
                                                            f" : {meaning(e.sw)}"))
        elif isinstance(e, Reset):
            out.append("> RESET")
            out.append(f"< OK: {scriptor_bytes(e.atr)} ")
        elif isinstance(e, Comment):
            out.append(f"# {e.text}")
        # a power-off has no scriptor form
    return "\n".join(out) + "\n"


def dumps_scriptor_input(trace: Trace) -> str:
    """Commands only, the form ``scriptor FILE`` replays (``reset`` for resets)."""
    out: list[str] = []
    if trace.card:
        out.append(f"# from a trace of {trace.card}")
    for e in trace.events:
        if isinstance(e, Xfer):
            out.append(scriptor_bytes(e.command))
        elif isinstance(e, Reset):
            out.append("reset")
        elif isinstance(e, Comment):
            out.append(f"# {e.text}")
    return "\n".join(out) + "\n"


def loads_scriptor(text: str) -> Trace:
    trace = Trace(created=now_iso())
    pending: bytes | None = None
    resp_hex: list[str] | None = None
    reset_pending = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if resp_hex is not None:
            # continuation of a multi-line response
            body, sep, _meaning = line.partition(" : ")
            resp_hex.append(body)
            if sep:
                _finish_scriptor(trace, pending, resp_hex, lineno)
                pending, resp_hex = None, None
            continue
        if not line.strip():
            continue
        if line.startswith("> RESET"):
            reset_pending = True
        elif line.startswith("< OK:") and reset_pending:
            trace.events.append(Reset(0.0, _hexbytes(line[5:], lineno), "warm"))
            reset_pending = False
        elif line.startswith("< KO:"):
            reset_pending = False
        elif line.startswith("> "):
            if pending is not None:
                raise TraceError(f"line {lineno}: command without a response before it")
            pending = _hexbytes(line[2:], lineno)
        elif line.startswith("< "):
            if pending is None:
                raise TraceError(f"line {lineno}: response without its command")
            body, sep, _meaning = line[2:].partition(" : ")
            resp_hex = [body]
            if sep:
                _finish_scriptor(trace, pending, resp_hex, lineno)
                pending, resp_hex = None, None
        elif line.startswith("#"):
            trace.events.append(Comment(0.0, line[1:].strip()))
        elif line.startswith(("Using ", "Trying ", "Reading commands")):
            continue  # scriptor's own banner lines
        else:
            raise TraceError(f"line {lineno}: not a scriptor log line: {line[:60]!r}")
    if pending is not None or resp_hex is not None:
        raise TraceError("the last command has no (complete) response")
    return trace


def _finish_scriptor(trace: Trace, cmd: bytes | None, parts: list[str], lineno: int) -> None:
    assert cmd is not None
    resp = _hexbytes(" ".join(parts), lineno)
    if len(resp) < 2:
        raise TraceError(f"line {lineno}: response has no status word")
    trace.events.append(Xfer(0.0, 0.0, cmd, resp))


# ---------------------------------------------------------------- any format


def detect_format(text: str) -> str:
    """``jsonl``, ``gp`` or ``scriptor`` from a file's first meaningful lines."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            return "jsonl"
        if line.startswith(("A>>", "A<<", "SCardConnect", "# Using ")):
            return "gp"
        if line.startswith(("> ", "< ", "Using T=", "Using given", "Reading commands")):
            return "scriptor"
        if line.startswith("#"):
            continue
        break
    raise TraceError("cannot tell the trace format: not JSON Lines, GP A>>/A<< or scriptor > / <")


def loads(text: str, fmt: str | None = None) -> Trace:
    fmt = fmt or detect_format(text)
    if fmt == "jsonl":
        return loads_jsonl(text)
    if fmt == "gp":
        return loads_gp(text)
    if fmt == "scriptor":
        return loads_scriptor(text)
    raise TraceError(f"cannot read traces in the {fmt!r} form")


def dumps(trace: Trace, fmt: str) -> str:
    if fmt == "jsonl":
        return dumps_jsonl(trace)
    if fmt == "gp":
        return dumps_gp(trace)
    if fmt == "scriptor":
        return dumps_scriptor(trace)
    if fmt == "scriptor-input":
        return dumps_scriptor_input(trace)
    raise TraceError(f"unknown trace form {fmt!r} (one of {', '.join(FORMATS)})")


def load(path: str | os.PathLike[str], fmt: str | None = None) -> Trace:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8") if str(path) != "-" else _stdin()
    except FileNotFoundError:
        raise TraceError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise TraceError(f"{p}: is a directory") from None
    except UnicodeDecodeError:
        raise TraceError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise TraceError(f"{p}: {exc.strerror or exc}") from None
    try:
        return loads(text, fmt)
    except TraceError as exc:
        raise TraceError(f"{p}: {exc}") from None


def _stdin() -> str:
    import sys

    return sys.stdin.read()


def write(trace: Trace, path: str | os.PathLike[str], fmt: str) -> None:
    text = dumps(trace, fmt)
    if str(path) == "-":
        import sys

        sys.stdout.write(text)
        return
    from jpki_sim.card.store import open_private

    with open_private(path, "w") as f:  # owner-only, as every trace
        f.write(text)


def iter_jsonl(stream: Iterable[str]) -> Iterable[Event]:
    """Events of a JSON Lines trace read lazily (for long ``serve`` traces)."""
    it = iter(stream)
    first = next(it, "")
    loads_jsonl(first)  # validates the header
    for lineno, line in enumerate(it, start=2):
        if line.strip():
            event = parse_event(json.loads(line), lineno)
            if event is not None:
                yield event
