"""``jpki-sim bench``: measure the emulator (in-process, through pcscd + vpcd, issuance, start-up).

The measuring itself lives in :mod:`jpki_sim.bench.run`, shared with
``tools/bench.py``; this module only declares the options (standard library
only, so ``jpki-sim --help`` stays fast).
"""

from __future__ import annotations

import argparse
from typing import Any

from jpki_sim.bench import SECTIONS


def _sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown or not names:
        bad = unknown[0] if unknown else text
        raise argparse.ArgumentTypeError(
            f"unknown section {bad!r}: choose from {', '.join(SECTIONS)}"
        )
    return names


def _ports(text: str) -> list[int]:
    try:
        ports = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port list: {text!r}") from None
    if not 1 <= len(ports) <= 2 or not all(1 <= p <= 65535 for p in ports):
        raise argparse.ArgumentTypeError(
            f"one or two ports (card[,null card]) in 1..65535, got {text!r}"
        )
    return ports


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (shape in docs/performance.md) instead of tables")
    p.add_argument("--save", metavar="FILE",
                   help="also write the JSON document to FILE (with the table on stdout)")
    p.add_argument("--quick", action="store_true",
                   help="small counts for CI smoke runs (seconds, not minutes)")
    p.add_argument("--no-pcsc", action="store_true",
                   help="skip the pcscd + vpcd parts (pcsc, control, wholecard; serve start-up)")
    p.add_argument("--only", type=_sections, metavar="SECTION[,SECTION]",
                   help=f"run only these sections: {', '.join(SECTIONS)}")
    p.add_argument("--batch", type=int, metavar="N",
                   help="issue N cards on all cores "
                   "(default 2 with --quick, else 4 x cores; 0 skips)")
    p.add_argument("--runs", type=int, metavar="R",
                   help="timed runs per figure (default 5 with --quick, else 25; the control "
                   "section takes 8 x R rounds, R with --quick)")
    p.add_argument("--pcsc-wait", type=float, metavar="SECONDS",
                   help="how long to wait for PC/SC test runs to release the readers "
                   "(default 60 with --quick, else 600)")
    p.add_argument("--pcsc-bare", action="store_true",
                   help="PC/SC part: serve the card bare (no control wrapper, no control "
                   "service), the baseline the control layer's cost is measured against")
    p.add_argument("--ocsp-load", choices=("auto", "wrk", "processes"), default="auto",
                   help="OCSP part's load generator: wrk (8 connections from one C thread), "
                   "or 8 Python client processes; auto: wrk when installed")
    p.add_argument(
        "--vpcd-port", type=_ports, default=[35963, 35964], metavar="PORT[,PORT]",
        help="vpcd slot ports: the card's, then the null card's (default 35963,35964); "
        "one port serves both in turn",
    )


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the card in-process and through pcscd + vpcd, issuance and start-up",
        description=(
            "Measure APDUs per second in-process and through pcscd + vpcd (against a null "
            "card that answers 9000 at once, measured in the same run), the signature APDU "
            "against a bare cryptography signature, card issuance and renewal, batch issuance "
            "on all cores, start-up times, and what the control layer costs an APDU through "
            "pcscd (the card served as serve serves it against the same card bare). Medians "
            "over repeated runs, p95 and min-max. "
            "As root, pcscd is started for the PC/SC part when none runs (and stopped after)."
        ),
        epilog="examples: jpki-sim bench  |  jpki-sim bench --quick --json  |  "
        "jpki-sim bench --no-pcsc --batch 32",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jpki_sim.bench import run as bench

    return bench.run(args)
