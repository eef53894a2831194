"""``jpki-sim shell``: the interactive APDU shell (and script runner) on a card."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jpki_sim.cli.common import add_profile_argument


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "shell",
        help="interactive APDU shell on the default card, a card file or a PC/SC reader",
        description=(
            "An APDU shell that knows the JPKI card: raw APDUs in any hex form, verbs in the "
            "card's terms (select, read-cert, pin-status, verify, sign, my-number, ...), "
            "admin verbs for emulated cards, Tab completion and history. With --script it "
            "runs commands from a file; --expect-sw / --expect-data make it a test."
        ),
        epilog="examples: jpki-sim shell; jpki-sim shell --card card.json --script s.txt --echo",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--card", metavar="FILE", help="card file (default: the default card)")
    where.add_argument("--reader", metavar="NAME",
                       help="a PC/SC reader (index, name or unique part of it)")
    add_profile_argument(p)
    p.add_argument("--script", metavar="FILE",
                   help="run the commands in FILE ('-' for stdin) and exit: 0 when all ran, "
                        "1 on a failed expectation, 2 on a bad line")
    p.add_argument("--echo", action="store_true", help="print each script line before its output")
    p.add_argument("--mode", choices=("auto", "transparent"), default="auto",
                   help="APDU mode at start (default auto: follow 61xx/6Cxx)")
    p.add_argument("--trace", metavar="FILE", help="write every exchange to a JSON Lines trace")
    p.add_argument("--trace-keep-pins", action="store_true",
                   help="DANGER: keep PIN values in clear in the trace (redacted by default)")
    p.add_argument("--no-apdus", action="store_true",
                   help="do not show the APDUs the verbs exchange")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.shell.session import Shell
    from jpki_sim.shell.target import CardTarget
    from jpki_sim.trace.writer import TraceWriter

    if args.trace_keep_pins and not args.trace:
        raise UserError("--trace-keep-pins needs --trace FILE")
    if args.reader:
        target = CardTarget.open_reader(args.reader, args.profile)
    else:
        from jpki_sim.cli.common import open_card

        _profile, store = open_card(args.card, args.profile)
        target = CardTarget.emulated(store)
    writer = None
    if args.trace:
        if args.trace_keep_pins:
            print(f"jpki-sim: WARNING: {args.trace} will hold PIN values in clear",
                  file=sys.stderr)
        try:
            writer = TraceWriter(args.trace, card=target.transport.name,
                                 keep_pins=args.trace_keep_pins)
        except OSError as exc:
            target.close()
            raise UserError(f"{args.trace}: {exc.strerror}") from None
    shell = Shell(target, sys.stdout, mode=args.mode, trace=writer)
    shell.trace_path = args.trace
    shell.show_apdus = not args.no_apdus
    try:
        if args.script:
            return _run_script(shell, args.script, args.echo)
        if not sys.stdin.isatty():
            # piped input without --script: run it as a script from stdin
            return shell.run_script(sys.stdin, echo=args.echo, source="stdin")
        from jpki_sim.shell.repl import run_interactive

        return run_interactive(shell)
    finally:
        shell.close()


def _run_script(shell: Any, path: str, echo: bool) -> int:
    from jpki_sim.errors import UserError

    if path == "-":
        return int(shell.run_script(sys.stdin, echo=echo, source="stdin"))
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such script") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the script ({exc.__class__.__name__})") from None
    return int(shell.run_script(lines, echo=echo, source=path))
