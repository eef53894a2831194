"""Named checks: expectations on response data that exact bytes cannot state.

A check is a string ``NAME`` or ``NAME:ARG``. Each returns None when it holds,
else a one-line reason (shown in the runner's diff). The checks here hold for
any card; a card profile adds its own (the module its ``vector_checks`` hook
names registers them with :func:`register`; JPKI: :mod:`jpki_sim.vectors.jpki`).

=========================== ==================================================
``any``                     data not checked
``len:N``                   exactly N bytes of data
``tries-left:N``            the status word is 63CN
``filler``                  non-empty, every byte FF
``distinct:N``              the data cut in N-byte pieces: no two alike (collected challenges)
=========================== ==================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from jpki_sim.iso7816.sw import tries_left


@dataclass
class CheckContext:
    data: bytes
    sw: int
    command: bytes
    #: what the card profile's checks need to know of the card under test (JPKI: its
    #: certificates); None for a profile whose checks need nothing
    facts: Any
    on: date


Check = Callable[[CheckContext, str | None], str | None]


def _split(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


@dataclass(frozen=True)
class CheckSpec:
    run: Check
    #: what it takes after the colon: None nothing, "int" a number, "optional:(...)"
    #: one of the choices or nothing, else a tuple of choices
    argument: Any = None
    #: the card profile it belongs to (None: any card)
    profile: str | None = None


CHECKS: dict[str, CheckSpec] = {}


def register(name: str, run: Check, argument: Any = None, profile: str | None = None) -> None:
    """Add a check (a card profile's own, named by its ``vector_checks`` hook module)."""
    CHECKS[name] = CheckSpec(run, argument, profile)


def known(profile: str | None = None) -> list[str]:
    return [n for n, c in CHECKS.items() if c.profile in (None, profile)]


def validate(spec: str, profile: str | None = None) -> None:
    """Raise ValueError when ``spec`` is not a known check (for cards of ``profile``)."""
    name, arg = _split(spec)
    check = CHECKS.get(name)
    if check is None or check.profile not in (None, profile):
        raise ValueError(f"unknown check {name!r} (known: {', '.join(known(profile))})")
    allowed = check.argument
    if allowed is None:
        if arg is not None:
            raise ValueError(f"check {name!r} takes no argument")
    elif allowed == "int":
        if arg is None or not arg.isdigit():
            raise ValueError(f"check {name!r} needs a number: {name}:N")
    elif isinstance(allowed, tuple) and allowed[:1] == ("optional",):
        if arg is not None and arg not in allowed[1]:
            raise ValueError(f"check {name!r}: the argument must be one of {', '.join(allowed[1])}")
    elif arg not in allowed:
        raise ValueError(f"check {name!r} needs one of {', '.join(allowed)}: {name}:{allowed[0]}")


def run(spec: str, ctx: CheckContext) -> str | None:
    name, arg = _split(spec)
    try:
        return CHECKS[name].run(ctx, arg)
    except Exception as exc:  # a check must report, never crash the runner
        return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- the checks


def _any(ctx: CheckContext, arg: str | None) -> str | None:
    return None


def _len(ctx: CheckContext, arg: str | None) -> str | None:
    want = int(arg or 0)
    if len(ctx.data) != want:
        return f"{len(ctx.data)} bytes of data, want {want}"
    return None


def _tries_left(ctx: CheckContext, arg: str | None) -> str | None:
    want = int(arg or 0)
    left = tries_left(ctx.sw)
    if left is None:
        return f"status word {ctx.sw:04X} reports no tries left count (want 63C{want:X})"
    if left != want:
        return f"{left} tries left, want {want}"
    return None


def _filler(ctx: CheckContext, arg: str | None) -> str | None:
    if not ctx.data:
        return "no data (want FF filler)"
    if ctx.data.strip(b"\xff"):
        return "not all FF filler"
    return None


def _distinct(ctx: CheckContext, arg: str | None) -> str | None:
    size = int(arg or 0)
    if size < 1 or not ctx.data or len(ctx.data) % size:
        return f"{len(ctx.data)} bytes are not whole pieces of {size}"
    pieces = [ctx.data[i : i + size] for i in range(0, len(ctx.data), size)]
    seen: set[bytes] = set()
    for i, piece in enumerate(pieces):
        if piece in seen:
            return f"piece {i + 1} of {len(pieces)} repeats an earlier one: {piece.hex().upper()}"
        seen.add(piece)
    return None


register("any", _any)
register("len", _len, "int")
register("tries-left", _tries_left, "int")
register("filler", _filler)
register("distinct", _distinct, "int")
