"""``jpki-sim vectors run|list|record|replay``: the conformance suite of the JPKI card."""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: exit status when -k selected nothing (as pytest does)
NO_VECTORS = 5


def configure(sub: Any) -> None:
    group = sub.add_parser(
        "vectors",
        help="run the conformance vectors; record a trace as vectors; replay a trace as a card",
        description=(
            "Conformance vectors of the JPKI card (docs/protocol.md, 'Conformance vectors'): "
            "run them against the emulator in-process, through pcscd + vpcd, or against any "
            "card in a reader."
        ),
    )
    gsub = group.add_subparsers(dest="vectors_command", metavar="SUBCOMMAND")
    group.set_defaults(_group_parser=group)

    run = gsub.add_parser(
        "run",
        help="play vectors against fresh emulated cards (or --pcsc, or --reader NAME)",
        description=(
            "Play vector files against fresh in-process cards of the profiles they name "
            "(default: the bundled suite). Prints pass/fail per vector with a diff, then "
            "'N passed, N failed'. Exit status 1 when any vector failed."
        ),
    )
    run.add_argument("paths", nargs="*", metavar="PATH", help="vector files or folders")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--pcsc", action="store_true",
                       help="serve each card on a vpcd reader and play through pcscd")
    where.add_argument("--reader", metavar="NAME",
                       help="play against the card in this PC/SC reader (name, part of it, "
                            "or index)")
    run.add_argument("--port", type=int, default=None,
                     help="vpcd port for --pcsc (default: the first vpcd slot without a card)")
    run.add_argument("--pin", action="append", default=[], metavar="NAME=VALUE",
                     help="with --reader: the card's PIN (auth, sign, helper); vectors needing "
                          "a PIN not given are skipped")
    run.add_argument("--destructive", action="store_true",
                     help="with --reader: also run vectors that change the card irreversibly "
                          "(wrong PINs, changed PINs)")
    run.add_argument("-k", dest="pattern", metavar="PATTERN",
                     help="only vectors whose feature/id contains PATTERN (globs, 'not', 'or')")
    run.add_argument("--profile", metavar="NAME",
                     help="only vectors of this kind of card (their files' card_profile); with "
                          "--reader, the kind of card in the reader (default jpki)")
    run.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="print only failures and the summary")
    run.set_defaults(func=run_vectors)

    lst = gsub.add_parser("list", help="list the vectors (id, profile, purpose)",
                          description="Load and check vector files, list their vectors.")
    lst.add_argument("paths", nargs="*", metavar="PATH")
    lst.add_argument("-k", dest="pattern", metavar="PATTERN")
    lst.add_argument("--profile", metavar="NAME", help="only vectors of this kind of card")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=list_vectors)

    rec = gsub.add_parser(
        "record",
        help="turn a trace (shell --trace, serve --trace) into a vector file",
        description=(
            "Turn a trace into one vector that replays it against a fresh card of --profile. "
            "Signatures, certificate bytes, serials and PINs are masked by named checks."
        ),
    )
    rec.add_argument("trace", metavar="TRACE", help="trace file (JSON Lines, GP or scriptor form)")
    rec.add_argument("-o", "--output", required=True, metavar="VECTORS.jsonl",
                     help="vector file to write ('-' for stdout)")
    rec.add_argument("--id", dest="vector_id", help="vector id (default: from the trace's name)")
    rec.add_argument("--purpose", help="one-line purpose of the vector")
    rec.add_argument("--profile", default="jpki", metavar="NAME",
                     help="the kind of card the trace was taken from (default jpki)")
    rec.add_argument("--preset", default="default", metavar="NAME",
                     help="the starting card the vector replays against (the vector's "
                          "\"profile\"; default: default)")
    rec.add_argument("--keep-pins", action="store_true",
                     help="keep PIN data the trace has in clear (default: every PIN masked)")
    rec.add_argument("--json", action="store_true", help="print what was masked as JSON")
    rec.set_defaults(func=record_vectors)

    rep = gsub.add_parser(
        "replay",
        help="serve a recorded trace as a card on a vpcd reader",
        description=(
            "Serve TRACE as a card on a vpcd reader: each command must be the next one of the "
            "trace and gets its recorded answer; anything else answers 6F00 and is reported. "
            "Runs until every exchange was replayed or Ctrl-C."
        ),
    )
    rep.add_argument("trace", metavar="TRACE")
    rep.add_argument("--port", type=int, default=None, help="vpcd port (default 35963)")
    rep.add_argument("--json", action="store_true", help="print the outcome as JSON")
    rep.set_defaults(func=replay_trace)


# ---------------------------------------------------------------- run


def _of_profile(vectors: list[Any], profile: str | None) -> list[Any]:
    """The vectors of one kind of card (all when ``profile`` is None)."""
    if profile is None:
        return vectors
    from jpki_sim.profiles import registry

    registry.get(profile)  # a mistyped name is an error, not an empty selection
    return [v for v in vectors if v.card_profile == profile]


def _pins(items: list[str]) -> dict[str, str]:
    from jpki_sim.errors import UserError

    pins: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ("auth", "sign", "helper") or not value:
            raise UserError(f"--pin wants NAME=VALUE with NAME auth, sign or helper, not {item!r}")
        pins[name] = value
    return pins


def run_vectors(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.vectors import loader, runner

    if (args.pin or args.destructive) and not args.reader:
        raise UserError("--pin and --destructive go with --reader (emulated cards need neither)")
    if args.port is not None and not args.pcsc:
        raise UserError("--port goes with --pcsc")
    files = loader.load_suite(args.paths or None)
    vectors = _of_profile(runner.select(loader.all_vectors(files), args.pattern), args.profile)
    if not vectors:
        print(f"jpki-sim: no vectors selected{f' by -k {args.pattern!r}' if args.pattern else ''}",
              file=sys.stderr)
        return NO_VECTORS

    session = None
    target: Any
    if args.pcsc:
        from jpki_sim.vectors.targets import InProcessTarget, ServedSession, ServedTarget

        # the first vector's card attaches the reader; each vector then swaps in its own
        first = InProcessTarget()
        first.start(vectors[0])
        session = ServedSession(first.card, port=args.port)
        target = ServedTarget(session.bridge, session.reader)
    elif args.reader:
        from jpki_sim.vectors.targets import ReaderTarget

        target = ReaderTarget(args.reader, _pins(args.pin), card_profile=args.profile or "jpki")
    else:
        from jpki_sim.vectors.targets import InProcessTarget

        target = InProcessTarget()
    try:
        report = _play(vectors, target, args)
    finally:
        target.close()
        if session is not None:
            session.close()
    if args.junit:
        from pathlib import Path

        try:
            Path(args.junit).write_text(runner.junit_xml(report), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--junit {args.junit}: {exc.strerror or exc}") from None
    if args.json:
        import json

        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    return 0 if report.ok else 1


def _play(vectors: list[Any], target: Any, args: argparse.Namespace) -> Any:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from jpki_sim.vectors import runner

    # with --json the report owns stdout; people still see progress on stderr
    out = Console(stderr=args.json, highlight=False)
    marks = {runner.PASSED: "[green]PASS[/]", runner.FAILED: "[bold red]FAIL[/]",
             runner.SKIPPED: "[yellow]SKIP[/]"}

    # a progress bar only where someone watches it (logs and pipes get the lines alone)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=out, transient=True, disable=not out.is_terminal) as progress:
        task = progress.add_task(f"vectors on {escape(target.name)}", total=len(vectors))

        def show(r: runner.VectorResult) -> None:
            progress.advance(task)
            quiet = args.quiet and r.status != runner.FAILED
            if quiet:
                return
            name = escape(f"{r.vector.feature}/{r.id}")
            line = f"{marks[r.status]} {name}"
            if r.status == runner.SKIPPED:
                line += f" [dim]({escape(r.reason)})[/]"
            elif r.status == runner.FAILED:
                line += f"  [dim]{escape(r.vector.purpose)} ({escape(r.vector.where)})[/]"
            out.print(line)
            for d in r.diff:
                style = "red" if d.startswith("+") else "green" if d.startswith("-") else "dim"
                out.print(f"    [{style}]{escape(d)}[/]")

        report = runner.run_suite(vectors, target, destructive=args.destructive, on_result=show)
    colour = "green" if report.ok else "bold red"
    out.print(f"[{colour}]{report.summary()}[/]")
    return report


# ---------------------------------------------------------------- list


def list_vectors(args: argparse.Namespace) -> int:
    from jpki_sim.vectors import loader, runner

    vectors = _of_profile(
        runner.select(loader.all_vectors(loader.load_suite(args.paths or None)), args.pattern),
        args.profile,
    )
    if args.json:
        import json

        rows = [{"id": v.id, "feature": v.feature, "card_profile": v.card_profile,
                 "profile": v.profile, "purpose": v.purpose,
                 "destructive": v.destructive, "setup": v.needs_setup, "where": v.where}
                for v in vectors]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    for v in vectors:
        flags = ("!" if v.destructive else " ") + ("*" if v.needs_setup else " ")
        card = f"{v.card_profile}/{v.profile}"
        print(f"{flags} {v.feature}/{v.id:<42} {card:<17} {v.purpose}")
    print(f"{len(vectors)} vectors (! destructive on a real card, * needs an emulated card)")
    return 0


# ---------------------------------------------------------------- record


def record_vectors(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.profiles import registry
    from jpki_sim.vectors.recorder import record_file

    try:
        profile = registry.get(args.profile)
    except UserError:
        raise UserError(f"--profile names the kind of card ({', '.join(registry.names())}); "
                        f"the starting card is --preset") from None
    presets = profile.hook("presets")()
    if args.preset not in presets.names():
        raise UserError(f"no {profile.name} preset {args.preset!r}; presets: "
                        f"{', '.join(presets.names())}")
    kw: dict[str, Any] = {"profile": args.preset, "card_profile": profile.name,
                          "keep_pins": args.keep_pins}
    if args.vector_id:
        kw["vector_id"] = args.vector_id
    if args.purpose:
        kw["purpose"] = args.purpose
    rec = record_file(args.trace, args.output, **kw)
    steps = sum(1 for s in rec.steps if s.get("event") == "xfer")
    if args.json:
        import json

        print(json.dumps({"vector": rec.vector["vector"], "exchanges": steps,
                          "masked": rec.masked, "output": args.output}, ensure_ascii=False))
    elif args.output != "-":
        masked = ", ".join(f"{n} {what}" for what, n in rec.masked.items()) or "nothing"
        print(f"{args.output}: vector {rec.vector['vector']!r}, {steps} exchanges "
              f"(masked: {masked})")
    return 0


# ---------------------------------------------------------------- replay


def replay_trace(args: argparse.Namespace) -> int:
    import time

    from jpki_sim.transport.replay import ReplayCard
    from jpki_sim.vectors.targets import ServedSession

    card = ReplayCard(args.trace)
    session = ServedSession(card, port=args.port, label="replay")
    total = len(card.player.exchanges)
    # the reader's name is what the software under test needs: say it at once
    print(f"replaying {total} exchanges: ready in reader {session.reader}", flush=True,
          file=sys.stderr if args.json else sys.stdout)
    try:
        while card.divergence is None and not card.player.finished:
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
    done = card.player.position
    if args.json:
        import json

        print(json.dumps({"reader": session.reader, "exchanges": total, "replayed": done,
                          "divergence": str(card.divergence) if card.divergence else None}))
    elif card.divergence is not None:
        print(f"jpki-sim: {card.divergence}", file=sys.stderr)
    else:
        print(f"replayed {done} of {total} exchanges")
    return 0 if card.divergence is None and card.player.finished else 1
