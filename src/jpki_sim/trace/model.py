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

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
#: instructions whose data is masked under any class byte: VERIFY, CHANGE REFERENCE
#: DATA and RESET RETRY COUNTER, in their even and odd (BER-TLV data) forms. A
#: PIN sent with a wrong class is still a PIN, whatever the card answers.
SECRET_INS = frozenset((0x20, 0x21, 0x24, 0x25, 0x2C, 0x2D))
#: ... and, under a proprietary class, JICSAP CHANGE KEY
SECRET_PROPRIETARY_INS = frozenset((0x32,))


def carries_secret(command: bytes) -> bool:
    """True when the data of ``command`` may be a secret (masked in traces, logs, history).

    The ISO PIN instructions under any class byte, even and odd; JICSAP CHANGE KEY
    under a proprietary class; and any instruction a card profile marks secret
    (``Profile.secret_instructions``).
    """
    if len(command) < 2:
        return False
    ins = command[1]
    if ins in SECRET_INS or (command[0] & 0x80 and ins in SECRET_PROPRIETARY_INS):
        return True
    from jpki_sim.profiles.registry import secret_instructions

    return ((command[0] & 0x80) << 8 | ins) in secret_instructions()


def is_secret_command(command: bytes) -> bool:
    """True when ``command`` has data and :func:`carries_secret` says they may be a secret."""
    return len(command) > 5 and carries_secret(command)


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


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
