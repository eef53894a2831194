"""Read vector files (JSON Lines) into :mod:`jpki_sim.vectors.model` objects, strictly.

Every mistake in a vector file is reported as one line naming the file and
line, before anything is played: a typo must not silently weaken a vector.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from jpki_sim.errors import UserError
from jpki_sim.vectors import checks
from jpki_sim.vectors.model import (
    ADMIN_ACTIONS,
    DEFAULT_CARD_PROFILE,
    FORMAT,
    TEMPLATE,
    VERSION,
    Admin,
    Assert,
    Comment,
    Power,
    Step,
    SwPattern,
    Vector,
    VectorFile,
    Xfer,
)

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9.+-]*")
VECTOR_KEYS = {"vector", "purpose", "profile", "date", "tries", "destructive", "emulated"}
XFER_KEYS = {"event", "command", "sw", "data", "match", "check", "collect", "note",
             "response", "t", "duration", "redacted"}
#: where the vectors shipped with the package live (a copy of the repository's vectors/)
BUNDLED = Path(__file__).resolve().parent / "data"


class VectorError(UserError):
    """A vector file that cannot be read: one line, with file and line number."""


def default_paths() -> list[Path]:
    """The suite to run when no path is given.

    ``JPKI_SIM_VECTORS`` (a directory) first, then the ``vectors/`` folder of a
    source checkout this package runs from, then the copy inside the package.
    """
    env = os.environ.get("JPKI_SIM_VECTORS")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve()
    for parent in here.parents:
        project = parent / "pyproject.toml"
        if project.is_file() and (parent / "vectors").is_dir():
            try:
                ours = 'name = "jpki-sim"' in project.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                ours = False
            if ours:
                return [parent / "vectors"]
    if BUNDLED.is_dir():
        return [BUNDLED]
    raise VectorError(
        "no vectors found: pass a file or folder, or set JPKI_SIM_VECTORS to one"
    )


def vector_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The ``*.jsonl`` files named, or found in the folders named, sorted per folder."""
    found: list[Path] = []
    for p in map(Path, paths):
        try:
            if p.is_dir():
                found += sorted(p.glob("*.jsonl"))
            elif p.is_file():
                found.append(p)
            else:
                raise VectorError(f"{p}: no such file or folder")
        except OSError as exc:
            raise VectorError(f"{p}: {exc.strerror or exc}") from None
    return found


def load_suite(paths: Sequence[str | os.PathLike[str]] | None = None) -> list[VectorFile]:
    """Every vector file under ``paths`` (default: :func:`default_paths`), ids unique."""
    files = [load_file(p) for p in vector_files(paths or default_paths())]
    seen: dict[str, Vector] = {}
    for f in files:
        for v in f.vectors:
            if v.id in seen:
                raise VectorError(f"{v.where}: vector id {v.id!r} already used at "
                                  f"{seen[v.id].where}")
            seen[v.id] = v
    return files


def all_vectors(files: Iterable[VectorFile]) -> list[Vector]:
    return [v for f in files for v in f.vectors]


def load_file(path: str | os.PathLike[str]) -> VectorFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise VectorError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise VectorError(f"{p}: cannot read (not UTF-8 text)") from None
    try:
        return loads(text, p)
    except VectorError as exc:
        raise VectorError(f"{p.name}:{exc}") from None


def loads(text: str, path: Path | None = None) -> VectorFile:
    """Parse a vector file's text; errors read ``LINE: message``."""
    lines = text.splitlines()
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VectorError(f"{lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise VectorError(f"{lineno}: each line must be a JSON object")
        rows.append((lineno, obj))
    if not rows:
        raise VectorError("1: empty file (no header)")
    lineno, header = rows[0]
    if header.get("format") != FORMAT:
        raise VectorError(f'{lineno}: not a vector file (no "format": "{FORMAT}")')
    if header.get("version") != VERSION:
        raise VectorError(f"{lineno}: vector file version {header.get('version')!r} not "
                          f"supported (this runner knows {VERSION})")
    feature = str(header.get("feature") or (path.stem if path else ""))
    card = _card_profile(header, lineno)
    vf = VectorFile(path or Path("<text>"), feature, str(header.get("title", "")), [], header)
    current: Vector | None = None
    for lineno, obj in rows[1:]:
        if "vector" in obj:
            if current is not None:
                _finish(current)
            current = _vector(obj, lineno, feature, vf.path, card)
            vf.vectors.append(current)
            continue
        if current is None:
            raise VectorError(f"{lineno}: a step before the first vector line")
        current.steps.append(_step(obj, lineno, card))
    if current is not None:
        _finish(current)
    return vf


class CardProfile:
    """What a vector file's card profile tells the loader: presets, PINs, checks."""

    def __init__(self, name: str) -> None:
        from jpki_sim.profiles import registry

        self.profile = registry.get(name)
        self.name = name
        self.pins = list(self.profile.pins)
        self._presets: Any = None
        if self.profile.has_hook("vector_checks"):
            self.profile.hook("vector_checks")  # it registers the profile's checks

    @property
    def presets(self) -> Any:
        if self._presets is None:
            self._presets = self.profile.hook("presets")()
        return self._presets


def _card_profile(header: dict[str, Any], lineno: int) -> CardProfile:
    name = header.get("card_profile", DEFAULT_CARD_PROFILE)
    if not isinstance(name, str):
        raise VectorError(f"{lineno}: card_profile must name a card profile")
    try:
        return CardProfile(name)
    except UserError as exc:
        raise VectorError(f"{lineno}: {exc}") from None


def _vector(
    obj: dict[str, Any], lineno: int, feature: str, path: Path, card: CardProfile
) -> Vector:
    unknown = set(obj) - VECTOR_KEYS
    if unknown:
        raise VectorError(f"{lineno}: unknown vector field(s) {', '.join(sorted(unknown))}")
    vid = obj.get("vector")
    if not isinstance(vid, str) or not ID_PATTERN.fullmatch(vid):
        raise VectorError(f"{lineno}: vector id must be lower-case letters, digits, '.', '-'")
    purpose = obj.get("purpose")
    if not isinstance(purpose, str) or not purpose.strip() or "\n" in purpose:
        raise VectorError(f"{lineno}: vector {vid!r} needs a one-line \"purpose\"")
    profile = obj.get("profile", "default")
    known = card.presets.names()
    if profile not in known:
        raise VectorError(f"{lineno}: unknown profile {profile!r} of the {card.name} card "
                          f"(known: {', '.join(known)})")
    on: date | None = None
    if obj.get("date") is not None:
        try:
            on = date.fromisoformat(str(obj["date"]))
        except ValueError:
            raise VectorError(f"{lineno}: date must be YYYY-MM-DD") from None
    tries = obj.get("tries", {})
    if not isinstance(tries, dict) or any(
        k not in card.pins or not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 15
        for k, n in tries.items()
    ):
        raise VectorError(f"{lineno}: tries must map {'/'.join(card.pins)} to 0..15")
    flags = {}
    for key in ("destructive", "emulated"):
        flags[key] = obj.get(key, False)
        if not isinstance(flags[key], bool):
            raise VectorError(f"{lineno}: {key} must be true or false")
    return Vector(vid, purpose.strip(), profile, on, dict(tries), flags["destructive"],
                  flags["emulated"], [], feature, path, lineno, card.name)


def _hex(value: Any, what: str, lineno: int) -> bytes:
    if not isinstance(value, str):
        raise VectorError(f"{lineno}: {what} must be a hex string")
    try:
        return bytes.fromhex("".join(value.split()))
    except ValueError:
        raise VectorError(f"{lineno}: {what} is not hex: {value[:40]!r}") from None


def _checks(value: Any, lineno: int, card: CardProfile) -> tuple[str, ...]:
    specs = [value] if isinstance(value, str) else value
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise VectorError(f"{lineno}: check must be a string or a list of strings")
    for spec in specs:
        try:
            checks.validate(spec, card.name)
        except ValueError as exc:
            raise VectorError(f"{lineno}: {exc}") from None
    return tuple(specs)


def _step(obj: dict[str, Any], lineno: int, card: CardProfile) -> Step:
    kind = obj.get("event")
    if kind == "xfer":
        return _xfer(obj, lineno, card)
    if kind in ("power-off", "power-on", "reset"):
        if kind == "reset" and obj.get("kind") == "cold":
            kind = "power-on"  # a trace's cold reset is a power-on
        atr = _hex(obj["atr"], "atr", lineno) if "atr" in obj else None
        if kind == "power-off" and atr is not None:
            raise VectorError(f"{lineno}: power-off has no ATR")
        return Power(kind, atr, lineno)
    if kind == "admin":
        action = obj.get("action")
        if action not in ADMIN_ACTIONS:
            raise VectorError(f"{lineno}: admin action must be one of {', '.join(ADMIN_ACTIONS)}")
        pin = obj.get("pin")
        if pin not in card.pins:
            raise VectorError(f"{lineno}: admin pin must be one of {', '.join(card.pins)}")
        value = obj.get("value")
        if value is not None and not isinstance(value, str):
            raise VectorError(f"{lineno}: admin value must be a string")
        tries = obj.get("tries")
        if action == "set-tries" and (not isinstance(tries, int) or not 0 <= tries <= 15):
            raise VectorError(f"{lineno}: set-tries needs \"tries\": 0..15")
        return Admin(action, pin, value, tries, lineno)
    if kind == "assert":
        buffer = obj.get("buffer")
        if not isinstance(buffer, str) or not buffer:
            raise VectorError(f"{lineno}: assert needs a \"buffer\" name")
        if "check" not in obj:
            raise VectorError(f"{lineno}: assert needs a \"check\"")
        return Assert(buffer, _checks(obj["check"], lineno, card), lineno)
    if kind == "comment":
        return Comment(str(obj.get("text", "")), lineno)
    raise VectorError(f"{lineno}: unknown event {kind!r} (xfer, power-off, power-on, reset, "
                      "admin, assert, comment)")


def _xfer(obj: dict[str, Any], lineno: int, card: CardProfile) -> Xfer:
    unknown = set(obj) - XFER_KEYS
    if unknown:
        raise VectorError(f"{lineno}: unknown xfer field(s) {', '.join(sorted(unknown))}")
    command = obj.get("command")
    if not isinstance(command, str):
        raise VectorError(f"{lineno}: xfer needs a \"command\" (hex)")
    command = "".join(command.split()).upper().replace("{PIN:", "{pin:").replace(
        "{WRONG-PIN:", "{wrong-pin:")
    command = re.sub(r"\{(pin|wrong-pin):([A-Z][A-Z0-9-]*)\}", lambda m: "{" + m.group(1) + ":"
                     + m.group(2).lower() + "}", command)
    _hex(TEMPLATE.sub("", command), "command", lineno)
    strangers = sorted({m.group(2) for m in TEMPLATE.finditer(command)} - set(card.pins))
    if strangers:
        raise VectorError(f"{lineno}: no PIN {strangers[0]!r} on the {card.name} card "
                          f"(its PINs: {', '.join(card.pins)})")
    if obj.get("redacted"):
        raise VectorError(f"{lineno}: a redacted command cannot be played; use {{pin:NAME}}")
    data: bytes | None = None
    sw_value = obj.get("sw")
    if "response" in obj:
        # the trace form: the whole response is the exact expectation
        response = _hex(obj["response"], "response", lineno)
        if len(response) < 2:
            raise VectorError(f"{lineno}: response has no status word")
        if sw_value is None:
            sw_value = response[-2:].hex().upper()
        data = response[:-2]
    if sw_value is None:
        raise VectorError(f"{lineno}: xfer needs an expected \"sw\"")
    sws = [sw_value] if isinstance(sw_value, str) else sw_value
    try:
        patterns = tuple(SwPattern(s) for s in sws)
    except (TypeError, ValueError) as exc:
        raise VectorError(f"{lineno}: {exc}") from None
    if not patterns:
        raise VectorError(f"{lineno}: sw list is empty")
    if "data" in obj:
        data = _hex(obj["data"], "data", lineno)
    match = obj.get("match")
    if match is not None:
        if not isinstance(match, str):
            raise VectorError(f"{lineno}: match must be a regular expression string")
        try:
            re.compile(match)
        except re.error as exc:
            raise VectorError(f"{lineno}: match is not a regular expression ({exc})") from None
    specs = _checks(obj["check"], lineno, card) if "check" in obj else ()
    collect = obj.get("collect")
    if collect is not None and not isinstance(collect, str):
        raise VectorError(f"{lineno}: collect must be a buffer name")
    return Xfer(command, patterns, data, match, specs, collect, lineno, str(obj.get("note", "")))


def _finish(v: Vector) -> None:
    """Checks across a vector's steps: power sequencing, buffers, admin needs."""
    if not v.steps:
        raise VectorError(f"{v.line}: vector {v.id!r} has no steps")
    powered = True
    buffers: set[str] = set()
    for s in v.steps:
        if isinstance(s, Power):
            if s.kind == "power-off":
                powered = False
            elif s.kind == "power-on":
                if powered:
                    raise VectorError(f"{s.line}: power-on of a card already powered")
                powered = True
            elif not powered:
                raise VectorError(f"{s.line}: reset of a card powered off (power it on)")
        elif isinstance(s, Xfer):
            if not powered:
                raise VectorError(f"{s.line}: command to a card powered off")
            if s.collect:
                buffers.add(s.collect)
        elif isinstance(s, Assert) and s.buffer not in buffers:
            raise VectorError(f"{s.line}: assert on buffer {s.buffer!r} that no step collects")
