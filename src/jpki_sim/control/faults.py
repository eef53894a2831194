"""Faults a tester injects into a served card, and how they read from and to JSON.

Four kinds, each set and cleared on its own (docs/control.md, "Faults"):

``delay``
    the card waits ``ms`` milliseconds before answering the chosen INS (all
    commands when no INS is named): a slow card;
``sw``
    the next ``count`` commands (of the chosen INS) are answered with ``sw``
    without reaching the card: nothing on the card changes;
``mute``
    the card stops answering: the command is held until the fault is cleared
    (then answered) or the card is removed. vpcd has no timeout, so the
    client's transmit waits as long;
``tear``
    for the next ``count`` commands (of the chosen INS), the card loses power
    right after the first write the command makes to the card file (for
    VERIFY: the spent try) and the connection drops before any answer: the
    client sees a reader error, the try stays spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jpki_sim.errors import UserError

KINDS = ("delay", "sw", "mute", "tear")

#: the longest delay a fault may ask for (a longer one is a mute card)
MAX_DELAY_MS = 600_000
MAX_COUNT = 1_000_000


def _ins_set(value: Any, what: str) -> frozenset[int] | None:
    """``["20", "0xA4", 42]`` -> the INS bytes; None or [] -> every command."""
    if value is None:
        return None
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list):
        raise UserError(f"{what}.ins: a list of INS bytes (hex strings), e.g. [\"20\", \"2A\"]")
    out = set()
    for item in value:
        if isinstance(item, bool):
            raise UserError(f"{what}.ins: {item!r} is not an INS byte")
        if isinstance(item, int):
            n = item
        elif isinstance(item, str):
            text = item.strip().lower().removeprefix("0x")
            try:
                n = int(text, 16)
            except ValueError:
                raise UserError(f"{what}.ins: {item!r} is not a hex INS byte") from None
        else:
            raise UserError(f"{what}.ins: {item!r} is not an INS byte")
        if not 0 <= n <= 0xFF:
            raise UserError(f"{what}.ins: {item!r} is not one byte")
        out.add(n)
    return frozenset(out) or None


def _int(d: dict[str, Any], key: str, what: str, default: int, lo: int, hi: int) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what}.{key}: a whole number, not {value!r}")
    if not lo <= value <= hi:
        raise UserError(f"{what}.{key}: {value} is outside {lo}..{hi}")
    return value


def _object(value: Any, what: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{what}: an object, not {value!r}")
    unknown = set(value) - keys
    if unknown:
        raise UserError(f"{what}: unknown field {sorted(unknown)[0]!r} (fields: "
                        f"{', '.join(sorted(keys))})")
    return value


def _ins_json(ins: frozenset[int] | None) -> list[str] | None:
    return None if ins is None else [f"{i:02X}" for i in sorted(ins)]


@dataclass(frozen=True)
class Delay:
    seconds: float
    ins: frozenset[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ms": round(self.seconds * 1000), "ins": _ins_json(self.ins)}


@dataclass
class ForcedSW:
    sw: bytes
    count: int
    ins: frozenset[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sw": self.sw.hex().upper(), "count": self.count, "ins": _ins_json(self.ins)}


@dataclass
class Tear:
    count: int
    ins: frozenset[int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "ins": _ins_json(self.ins)}


def _applies(ins_set: frozenset[int] | None, ins: int) -> bool:
    return ins_set is None or ins in ins_set


@dataclass
class Faults:
    """The faults set on one card (all None/False: none)."""

    delay: Delay | None = None
    sw: ForcedSW | None = None
    mute: bool = False
    tear: Tear | None = None
    #: commands each kind has acted on since it was set
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.delay is None and self.sw is None and not self.mute and self.tear is None

    def delay_for(self, ins: int) -> float:
        d = self.delay
        return d.seconds if d is not None and _applies(d.ins, ins) else 0.0

    def take_sw(self, ins: int) -> bytes | None:
        """The forced SW for this command, counting it; None when none applies."""
        f = self.sw
        if f is None or not _applies(f.ins, ins):
            return None
        f.count -= 1
        if f.count <= 0:
            self.sw = None
        self._hit("sw")
        return f.sw

    def take_tear(self, ins: int) -> bool:
        t = self.tear
        if t is None or not _applies(t.ins, ins):
            return False
        t.count -= 1
        if t.count <= 0:
            self.tear = None
        self._hit("tear")
        return True

    def _hit(self, kind: str) -> None:
        self.hits[kind] = self.hits.get(kind, 0) + 1

    def clear(self, kind: str | None = None) -> None:
        if kind is not None and kind not in KINDS:
            raise UserError(f"no fault {kind!r} (faults: {', '.join(KINDS)})")
        if kind in (None, "delay"):
            self.delay = None
        if kind in (None, "sw"):
            self.sw = None
        if kind in (None, "mute"):
            self.mute = False
        if kind in (None, "tear"):
            self.tear = None

    def to_json(self) -> dict[str, Any]:
        return {
            "delay": self.delay.to_json() if self.delay else None,
            "sw": self.sw.to_json() if self.sw else None,
            "mute": self.mute,
            "tear": self.tear.to_json() if self.tear else None,
        }


def parse(body: Any) -> dict[str, Any]:
    """The faults a request sets, checked: ``{"delay": Delay, "sw": ForcedSW, ...}``.

    A kind given as ``null`` (or ``false`` for mute) clears it.
    """
    body = _object(body, "faults", set(KINDS))
    if not body:
        raise UserError(f"faults: name at least one of {', '.join(KINDS)}")
    out: dict[str, Any] = {}
    if "delay" in body:
        d = body["delay"]
        if d is None:
            out["delay"] = None
        else:
            d = _object(d, "delay", {"ms", "ins"})
            if "ms" not in d:
                raise UserError("delay.ms: how long the card waits, in milliseconds")
            ms = _int(d, "ms", "delay", 0, 0, MAX_DELAY_MS)
            out["delay"] = Delay(ms / 1000, _ins_set(d.get("ins"), "delay"))
    if "sw" in body:
        f = body["sw"]
        if f is None:
            out["sw"] = None
        else:
            f = _object(f, "sw", {"sw", "count", "ins"})
            text = f.get("sw")
            try:
                sw = bytes.fromhex(str(text).replace(" ", "")) if text is not None else b""
            except ValueError:
                sw = b""
            if len(sw) != 2:
                raise UserError(f"sw.sw: two bytes in hex (e.g. \"6A82\"), not {text!r}")
            count = _int(f, "count", "sw", 1, 1, MAX_COUNT)
            out["sw"] = ForcedSW(sw, count, _ins_set(f.get("ins"), "sw"))
    if "mute" in body:
        m = body["mute"]
        if not isinstance(m, bool):
            raise UserError(f"mute: true or false, not {m!r}")
        out["mute"] = m
    if "tear" in body:
        t = body["tear"]
        if t is None:
            out["tear"] = None
        else:
            t = _object(t, "tear", {"count", "ins"})
            count = _int(t, "count", "tear", 1, 1, MAX_COUNT)
            out["tear"] = Tear(count, _ins_set(t.get("ins"), "tear"))
    return out
