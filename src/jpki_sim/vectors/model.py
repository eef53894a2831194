"""The conformance vectors as data: files, vectors, steps and expectations.

A vector file is a JSON Lines trace (see :mod:`jpki_sim.trace`) extended with
expectations. ``docs/protocol.md`` ("Conformance vectors") is the reference; in short::

    {"format": "jpki-sim-vectors", "version": 1, "feature": "select", "title": "..."}
    {"vector": "select-jpki", "purpose": "...", "profile": "default"}
    {"event": "xfer", "command": "00A4040C0AD392F000260100000001", "sw": "9000"}
    {"event": "xfer", "command": "00B0000004", "sw": "9000", "match": "3082...."}
    {"event": "reset", "atr": "3BE000FF8131FE4514"}

Every line after the header is either a vector line (starts a vector) or an
event line (a step of the vector above it). Events are those of the trace
format (``xfer``, ``reset``, ``power-off``, ``comment``) plus ``power-on``,
``admin`` (what the issuer does at the counter) and ``assert`` (checks over
data collected from earlier steps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

FORMAT = "jpki-sim-vectors"
VERSION = 1

#: the card profile of a vector file that names none
DEFAULT_CARD_PROFILE = "jpki"
ADMIN_ACTIONS = ("reset-pin", "set-tries")
POWER_EVENTS = ("power-off", "power-on", "reset")

#: ``{pin:auth}`` / ``{wrong-pin:sign}`` in a command: Lc and the PIN's ASCII bytes
TEMPLATE = re.compile(r"\{(pin|wrong-pin):([a-z][a-z0-9-]*)\}")


class SwPattern:
    """An expected status word: 4 hex digits, ``?`` matching any digit (``63C?``)."""

    __slots__ = ("text", "_regex")

    def __init__(self, text: str) -> None:
        if not re.fullmatch(r"[0-9A-Fa-f?]{4}", text):
            raise ValueError(f"status word pattern {text!r} is not 4 hex digits or '?'")
        self.text = text.upper()
        self._regex = re.compile(self.text.replace("?", "[0-9A-F]"))

    def matches(self, sw: int) -> bool:
        return self._regex.fullmatch(f"{sw & 0xFFFF:04X}") is not None

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"SwPattern({self.text!r})"


@dataclass(frozen=True)
class Xfer:
    """Send ``command``; expect a status word and data.

    Data expectations: ``data`` exact hex, ``match`` a regular expression over
    the upper-case hex of the data (full match), ``checks`` named checks. With
    none of them the data must be empty.
    """

    command: str  # hex, may hold {pin:NAME} / {wrong-pin:NAME} templates
    sw: tuple[SwPattern, ...]
    data: bytes | None = None
    match: str | None = None
    checks: tuple[str, ...] = ()
    #: append the response data to this named buffer (for ``assert`` steps)
    collect: str | None = None
    line: int = 0
    note: str = ""

    @property
    def pins_used(self) -> set[tuple[str, str]]:
        """(kind, PIN name) of every template in the command."""
        return {(m.group(1), m.group(2)) for m in TEMPLATE.finditer(self.command)}


@dataclass(frozen=True)
class Power:
    """``power-off``, ``power-on`` or ``reset`` (warm); ``atr`` expected after on/reset."""

    kind: str
    atr: bytes | None = None
    line: int = 0


@dataclass(frozen=True)
class Admin:
    """An issuer-side operation on the card state (the municipal counter's terminal).

    ``reset-pin``: set the PIN to ``value`` (default: the profile's PIN) and
    restore its counter. ``set-tries``: set the tries left to ``tries``.
    """

    action: str
    pin: str
    value: str | None = None
    tries: int | None = None
    line: int = 0


@dataclass(frozen=True)
class Assert:
    """Named checks over the bytes collected into ``buffer`` by earlier steps."""

    buffer: str
    checks: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Comment:
    text: str
    line: int = 0


Step = Xfer | Power | Admin | Assert | Comment


@dataclass
class Vector:
    id: str
    purpose: str
    profile: str = "default"
    #: the date the vector is played at (date-dependent checks); None: the profile's
    date: date | None = None
    #: tries left to set on the fresh card before the first step
    tries: dict[str, int] = field(default_factory=dict)
    #: changes a card irreversibly (wrong PINs, changed PINs): real cards only with --destructive
    destructive: bool = False
    #: checks data only the emulated profile has (the holder's facts, the 2048-byte
    #: certificate EFs): skipped against a card in a reader
    emulated: bool = False
    steps: list[Step] = field(default_factory=list)
    feature: str = ""
    path: Path | None = None
    line: int = 0
    #: the kind of card (the vector file header's ``card_profile``)
    card_profile: str = "jpki"

    @property
    def where(self) -> str:
        return f"{self.path.name if self.path else '?'}:{self.line}"

    @property
    def needs_setup(self) -> bool:
        """True when only an emulated card can play it (preset counters, admin steps, its data)."""
        return self.emulated or bool(self.tries) or any(isinstance(s, Admin) for s in self.steps)

    @property
    def pins_used(self) -> set[tuple[str, str]]:
        used: set[tuple[str, str]] = set()
        for s in self.steps:
            if isinstance(s, Xfer):
                used |= s.pins_used
        return used


@dataclass
class VectorFile:
    path: Path
    feature: str
    title: str
    vectors: list[Vector]
    header: dict[str, object] = field(default_factory=dict)
