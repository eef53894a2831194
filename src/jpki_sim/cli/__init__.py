"""The ``jpki-sim`` command line.

Each sub-command lives in its own module under this package and exposes
``configure(subparsers)``, which adds its parser(s) and sets ``func`` to a
callable taking the parsed arguments and returning an exit code. Modules here
import only the standard library at module level: heavy imports
(cryptography, pyscard, rich) happen inside the command functions, so that
``jpki-sim --help`` stays fast.

Errors: :class:`jpki_sim.errors.UserError` (bad input) prints one line
``jpki-sim: error: ...`` and exits 2; any other JpkiSimError exits 1.
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


def main(argv: Sequence[str] | None = None) -> int:
    from jpki_sim.errors import JpkiSimError, UserError

    parser = build_parser()
    args = parser.parse_args(argv)
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
    except KeyboardInterrupt:
        print("jpki-sim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
