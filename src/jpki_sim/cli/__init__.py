"""The ``jpki-sim`` command line.

Each sub-command lives in its own module under this package and exposes
``configure(subparsers)``, which adds its parser(s) and sets ``func`` to a
callable taking the parsed arguments and returning an exit code. Modules here
import only the standard library at module level: heavy imports
(cryptography, pyscard, rich) happen inside the command functions, so that
``jpki-sim --help`` stays fast.

Errors: :class:`jpki_sim.errors.UserError` (bad input) prints one line
``jpki-sim: error: ...`` and exits 2; any other JpkiSimError exits 1. An
operating-system error no command foresaw (a file name too long, a folder
that cannot be written, a full disk) is bad input too: one line, exit 2.
Arguments must be UTF-8 text (the names, addresses and PINs they carry are
written to card files as UTF-8).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jpki_sim import __version__
from jpki_sim.cli import (
    apdu,
    bench,
    ca,
    card,
    ctl,
    doctor,
    profiles,
    serve,
    shell,
    trace,
    vectors,
)

#: sub-command modules, in the order their commands appear in --help
COMMAND_MODULES = (card, apdu, serve, ctl, doctor, shell, trace, vectors, ca, profiles, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jpki-sim",
        description=(
            "Emulate the My Number card's JPKI chip: issue test cards, serve them to "
            "PC/SC through vpcd, send APDUs, run conformance vectors."
        ),
    )
    parser.add_argument("--version", action="version", version=f"jpki-sim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.configure(sub)
    return parser


def _not_utf8(argv: Sequence[str]) -> int | None:
    """The position of the first argument that is not UTF-8 text (None: all are)."""
    for i, arg in enumerate(argv):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:  # bytes Python decoded with surrogateescape
            return i
    return None


def _os_error(exc: OSError) -> str:
    what = exc.strerror or type(exc).__name__
    name = exc.filename
    if isinstance(name, str) and len(name) > 80:
        name = name[:40] + "..." + name[-20:]
    return f"{name}: {what}" if name else what


def main(argv: Sequence[str] | None = None) -> int:
    from jpki_sim.errors import JpkiSimError, UserError

    arguments = list(sys.argv[1:] if argv is None else argv)
    bad = _not_utf8(arguments)
    if bad is not None:
        print(f"jpki-sim: error: argument {bad + 1} is not valid UTF-8 text", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        # a command group without its sub-command: show that group's help
        target = getattr(args, "_group_parser", parser)
        target.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except UserError as exc:
        print(f"jpki-sim: error: {exc}", file=sys.stderr)
        return 2
    except JpkiSimError as exc:
        print(f"jpki-sim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return 0
        print(f"jpki-sim: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jpki-sim: interrupted", file=sys.stderr)
        return 130
