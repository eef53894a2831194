"""The one canonical APDU trace format, and converters to and from other tools' forms.

A trace is JSON Lines (one JSON object per line, UTF-8):

* line 1, the header::

    {"format": "jpki-sim-trace", "version": 1, "card": "NAME",
     "created": "2026-11-21T23:50:00Z", "pins": "redacted"}

* then one event per line, in time order. ``t`` is seconds since the trace
  started (monotonic clock, microsecond resolution)::

    {"event": "reset", "t": 0.0, "atr": "3BE000FF8131FE4514", "kind": "cold"}
    {"event": "xfer", "t": 0.0012, "duration": 0.00031,
     "command": "00A4040C0AD392F000260100000001", "response": "9000", "sw": "9000"}
    {"event": "xfer", ..., "command": "002000800A2A2A2A2A", ..., "redacted": true}
    {"event": "power-off", "t": 3.2}
    {"event": "comment", "t": 3.3, "text": "what the user typed"}

``command`` and ``response`` are upper-case hex; ``response`` includes SW1 SW2
and ``sw`` repeats them for grep and jq. Readers ignore fields they do not
know, so the format can be extended (the conformance vectors add expectations);
the version changes only when a field changes meaning.

PIN data is redacted by default: the data field of VERIFY, CHANGE REFERENCE
DATA, RESET RETRY COUNTER (and JICSAP CHANGE KEY ``80 32``) is replaced by as
many ``2A`` (``*``) bytes, keeping Lc, and the event is marked
``"redacted": true``; the header says ``"pins": "redacted"``. Only an explicit
``keep_pins=True`` (``--trace-keep-pins`` on the command line) keeps them, and the
header then says ``"pins": "clear"``.

Other forms: GlobalPlatformPro / apdu4j log lines (``A>> T=1 (4+0005) 00A4040C
05 ...`` / ``A<< (0000+2) (1ms) 9000``), the pcsc-tools ``scriptor`` log form
(``> 00 A4 ...`` / ``< 90 00 : meaning``, 16 bytes a line) and the
``scriptor`` input form (commands only, replayable with ``scriptor FILE``).
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from jpki_sim.errors import UserError

FORMAT = "jpki-sim-trace"
VERSION = 1
PINS_REDACTED = "redacted"
PINS_CLEAR = "clear"
#: the byte PIN data is replaced with ("*")
REDACTION_BYTE = 0x2A

#: (CLA group, INS) of commands whose data is a PIN value
PIN_COMMANDS = {
    (0x00, 0x20),  # VERIFY
    (0x00, 0x24),  # CHANGE REFERENCE DATA
    (0x00, 0x2C),  # RESET RETRY COUNTER
    (0x80, 0x32),  # JICSAP CHANGE KEY (住基AP / 共通AP)
}

FORMATS = ("jsonl", "gp", "scriptor", "scriptor-input")


class TraceError(UserError):
    """A trace file that cannot be read: one line, with the line number."""


# ---------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Xfer:
    t: float
    duration: float
    command: bytes
    response: bytes
    redacted: bool = False

    @property
    def sw(self) -> int:
        r = self.response
        return (r[-2] << 8 | r[-1]) if len(r) >= 2 else 0

    @property
    def data(self) -> bytes:
        return self.response[:-2]


@dataclass(frozen=True, slots=True)
class Reset:
    t: float
    atr: bytes
    kind: str = "warm"  # "cold" (power on) or "warm"


@dataclass(frozen=True, slots=True)
class PowerOff:
    t: float


@dataclass(frozen=True, slots=True)
class Comment:
    t: float
    text: str


Event = Xfer | Reset | PowerOff | Comment


@dataclass
class Trace:
    card: str = ""
    created: str = ""
    pins: str = PINS_REDACTED
    events: list[Event] = field(default_factory=list)
    #: header fields this version does not know, kept for round trips
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def xfers(self) -> list[Xfer]:
        return [e for e in self.events if isinstance(e, Xfer)]


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- redaction


def redact_command(command: bytes) -> tuple[bytes, bool]:
    """The command with any PIN data replaced by ``2A`` bytes, and whether it was.

    Works on malformed commands too: when Lc does not fit, everything after
    the header is treated as PIN data, so nothing leaks through a bad length.
    """
    if len(command) <= 5 or (command[0] & 0x80, command[1]) not in PIN_COMMANDS:
        return command, False
    lc = command[4]
    if lc and len(command) in (5 + lc, 6 + lc):
        start, end = 5, 5 + lc
    elif lc == 0 and len(command) >= 7:
        l2 = command[5] << 8 | command[6]
        if l2 and len(command) in (7 + l2, 9 + l2):
            start, end = 7, 7 + l2
        else:
            start, end = 5, len(command)
    else:
        start, end = 5, len(command)
    masked = command[:start] + bytes([REDACTION_BYTE]) * (end - start) + command[end:]
    return masked, True


def redact(trace: Trace) -> Trace:
    """A copy of ``trace`` with every PIN redacted."""
    events: list[Event] = []
    for e in trace.events:
        if isinstance(e, Xfer) and not e.redacted:
            cmd, done = redact_command(e.command)
            if done:
                e = replace(e, command=cmd, redacted=True)
        events.append(e)
    return Trace(trace.card, trace.created, PINS_REDACTED, events, dict(trace.extra))


# ---------------------------------------------------------------- the writer


class TraceWriter:
    """Writes a JSON Lines trace as events happen (each line flushed at once).

    Usable as a :class:`jpki_sim.client.ApduObserver` (``xfer`` / ``reset``),
    and directly by bridges (``jpki-sim serve --trace``). Thread-safe.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        card: str = "",
        keep_pins: bool = False,
        clock: Callable[[], float] = time.monotonic,
        created: str | None = None,
    ) -> None:
        if isinstance(target, (str, os.PathLike)):
            self._stream: IO[str] = open(target, "w", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self.keep_pins = keep_pins
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self.count = 0
        header = {
            "format": FORMAT,
            "version": VERSION,
            "card": card,
            "created": created or _now_iso(),
            "pins": PINS_CLEAR if keep_pins else PINS_REDACTED,
        }
        self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            if self._stream.closed:
                return
            self._stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self._stream.flush()

    def _t(self, at: float | None) -> float:
        return round(max((self._clock() if at is None else at) - self._t0, 0.0), 6)

    def xfer(
        self, command: bytes, response: bytes, started: float | None = None, duration: float = 0.0
    ) -> None:
        """Record one exchange; ``started`` is a value of the writer's clock."""
        redacted = False
        if not self.keep_pins:
            command, redacted = redact_command(bytes(command))
        self.count += 1
        self._write(_xfer_json(Xfer(self._t(started), duration, bytes(command),
                                    bytes(response), redacted)))

    def reset(self, atr: bytes, kind: str = "warm") -> None:
        self._write(_event_json(Reset(self._t(None), bytes(atr), kind)))

    def power_off(self) -> None:
        self._write(_event_json(PowerOff(self._t(None))))

    def comment(self, text: str) -> None:
        self._write(_event_json(Comment(self._t(None), text)))

    def close(self) -> None:
        with self._lock:
            if self._owned and not self._stream.closed:
                self._stream.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TracingTransport:
    """Any Transport, with every exchange and reset written to a trace."""

    def __init__(self, inner: Any, writer: TraceWriter) -> None:
        self.inner = inner
        self.writer = writer
        self.name = inner.name

    def transmit(self, apdu: bytes) -> bytes:
        started = time.monotonic()
        response: bytes = self.inner.transmit(apdu)
        self.writer.xfer(apdu, response, started, time.monotonic() - started)
        return response

    def atr(self) -> bytes:
        atr: bytes = self.inner.atr()
        return atr

    def reset(self) -> bytes:
        atr: bytes = self.inner.reset()
        self.writer.reset(atr, "warm")
        return atr

    def close(self) -> None:
        self.inner.close()


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


def _event_json(e: Event) -> dict[str, Any]:
    if isinstance(e, Xfer):
        return _xfer_json(e)
    if isinstance(e, Reset):
        return {"event": "reset", "t": round(e.t, 6), "atr": e.atr.hex().upper(), "kind": e.kind}
    if isinstance(e, PowerOff):
        return {"event": "power-off", "t": round(e.t, 6)}
    return {"event": "comment", "t": round(e.t, 6), "text": e.text}


def event_to_json(e: Event) -> dict[str, Any]:
    return _event_json(e)


def dumps_jsonl(trace: Trace) -> str:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "card": trace.card,
        "created": trace.created or _now_iso(),
        "pins": trace.pins,
        **trace.extra,
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    lines += [json.dumps(_event_json(e), ensure_ascii=False) for e in trace.events]
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
    trace = Trace(created=_now_iso())
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


def _scriptor_bytes(b: bytes) -> str:
    return " ".join(f"{x:02X}" for x in b)


def dumps_scriptor(trace: Trace) -> str:
    """The log form scriptor prints: ``> cmd`` / ``< resp : meaning``, 16 bytes a line."""
    from jpki_sim.iso7816.sw import meaning

    out: list[str] = []
    for e in trace.events:
        if isinstance(e, Xfer):
            out.append(f"> {_scriptor_bytes(e.command)}")
            rows = [e.response[i : i + 16] for i in range(0, len(e.response), 16)]
            for i, row in enumerate(rows):
                prefix = "< " if i == 0 else ""
                out.append(prefix + _scriptor_bytes(row) + ("" if i < len(rows) - 1 else
                                                            f" : {meaning(e.sw)}"))
        elif isinstance(e, Reset):
            out.append("> RESET")
            out.append(f"< OK: {_scriptor_bytes(e.atr)} ")
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
            out.append(_scriptor_bytes(e.command))
        elif isinstance(e, Reset):
            out.append("reset")
        elif isinstance(e, Comment):
            out.append(f"# {e.text}")
    return "\n".join(out) + "\n"


def loads_scriptor(text: str) -> Trace:
    trace = Trace(created=_now_iso())
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
    Path(path).write_text(text, encoding="utf-8")


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
    name = _INS_NAMES.get(ins, f"INS {ins:02X}")
    body = command[5:5 + command[4]] if len(command) > 5 else b""
    if ins == 0xA4 and p1 == 0x04:
        apps = {aid: n for n, aid in jpki.APPLICATIONS.items()}
        return f"SELECT {apps.get(body, body.hex().upper())}"
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
        return [f"{stamp}  == {e.kind} reset, ATR {_scriptor_bytes(e.atr)}"]
    if isinstance(e, PowerOff):
        return [f"{stamp}  == power off"]
    if isinstance(e, Comment):
        return [f"{stamp}  # {e.text}"]
    pad = " " * len(stamp)
    note = " (PIN redacted)" if e.redacted else ""
    lines = [
        f"{stamp}  >> {_scriptor_bytes(e.command)}",
        f"{pad}     {describe_command(e.command)}{note}",
    ]
    data = e.data
    for i in range(0, len(data), width):
        row = data[i : i + width]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{pad}  << {_scriptor_bytes(row):<{width * 3}} {text}")
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
