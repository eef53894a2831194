"""``jpki-sim trace show|convert``: read APDU traces and turn them into other tools' forms."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

FORMS = ("jsonl", "gp", "scriptor", "scriptor-input")


def configure(sub: Any) -> None:
    group = sub.add_parser(
        "trace",
        help="show APDU traces, convert them to and from GlobalPlatformPro and scriptor forms",
        description=(
            "APDU traces are JSON Lines (docs/protocol.md, 'APDU traces'): written by "
            "'jpki-sim shell --trace' and 'jpki-sim serve --trace'."
        ),
    )
    gsub = group.add_subparsers(dest="trace_command", metavar="SUBCOMMAND")
    group.set_defaults(_group_parser=group)

    show = gsub.add_parser(
        "show",
        help="pretty-print a trace: commands named, data as hex + ASCII, SW meanings",
        description="Pretty-print a trace in any known form (JSON Lines, GP, scriptor).",
    )
    show.add_argument("file", metavar="FILE", help="trace file ('-' for stdin)")
    show.add_argument("--from", dest="from_form", choices=FORMS[:3],
                      help="input form (default: detected)")
    show.add_argument("--json", action="store_true",
                      help="print the trace as one JSON document (header + events)")
    show.set_defaults(func=run_show)

    conv = gsub.add_parser(
        "convert",
        help="convert a trace between jsonl, GP (A>>/A<<) and scriptor forms",
        description=(
            "Convert a trace. PIN data is redacted on the way unless --keep-pins is given. "
            "'scriptor' is scriptor's log form (> / <), 'scriptor-input' the commands only, "
            "replayable with 'scriptor FILE'."
        ),
    )
    conv.add_argument("input", metavar="IN", help="input trace ('-' for stdin)")
    conv.add_argument("output", metavar="OUT", help="output file ('-' for stdout)")
    conv.add_argument("--to", required=True, choices=FORMS, help="output form")
    conv.add_argument("--from", dest="from_form", choices=FORMS[:3],
                      help="input form (default: detected)")
    conv.add_argument("--keep-pins", action="store_true",
                      help="DANGER: keep PIN values found in the input in clear")
    conv.set_defaults(func=run_convert)


def run_show(args: argparse.Namespace) -> int:
    from jpki_sim import trace

    t = trace.load(args.file, args.from_form)
    if args.json:
        doc = {
            "format": trace.FORMAT,
            "version": trace.VERSION,
            "card": t.card,
            "created": t.created,
            "pins": t.pins,
            "events": [trace.event_to_json(e) for e in t.events],
        }
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    sys.stdout.write(trace.render(t))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from jpki_sim import trace

    t = trace.load(args.input, args.from_form)
    if args.keep_pins:
        print("jpki-sim: WARNING: --keep-pins: the output keeps PIN values in clear",
              file=sys.stderr)
    else:
        t = trace.redact(t)
    try:
        trace.write(t, args.output, args.to)
    except OSError as exc:
        from jpki_sim.errors import UserError

        raise UserError(f"{args.output}: {exc.strerror or exc}") from None
    return 0
