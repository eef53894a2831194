"""``jpki-sim ctl``: drive the cards a running ``jpki-sim serve`` serves (its control API).

Each sub-command is one API call (docs/control.md); ``--json`` prints the
API's answer as it came. Standard library only at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PIN_ACTIONS = ("tries", "block", "unblock", "change")


def configure(sub: Any) -> None:
    group = sub.add_parser(
        "ctl",
        help="drive served cards: remove/insert, PINs, faults, renew, expire (control API)",
        description=(
            "Talk to the control service of a running `jpki-sim serve`: its card states, "
            "remove and insert cards, power-cycle, PIN counters, faults, the card's life "
            "through the issuer, the status date, the live APDU trace. The token is read "
            "from the token file serve names (or --token-file, $JPKI_SIM_CONTROL_TOKEN)."
        ),
        epilog="examples: jpki-sim ctl status  |  jpki-sim ctl remove  |  "
        "jpki-sim ctl pin auth tries 1  |  jpki-sim ctl fault --sw 6A82 --count 2  |  "
        "jpki-sim ctl trace --follow",
    )
    cmds = group.add_subparsers(dest="ctl_command", metavar="SUBCOMMAND")
    group.set_defaults(_group_parser=group)

    def add(name: str, help_text: str, card: bool = True) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--control", metavar="HOST:PORT|URL",
                       help="the control service (default 127.0.0.1:3280, $JPKI_SIM_CONTROL_URL)")
        p.add_argument("--token-file", metavar="FILE", help="the token file serve wrote")
        p.add_argument("--json", action="store_true", help="print the API's JSON answer")
        if card:
            p.add_argument("-c", "--card", type=int, default=0, metavar="N",
                           help="which served card (0, the first, by default)")
        return p

    p = add("status", "the served cards' states (one card with --card)", card=False)
    p.add_argument("-c", "--card", type=int, default=None, metavar="N", help="only card N")
    p.set_defaults(func=run_status)
    p = add("url", "the dashboard's address, with the token", card=False)
    p.set_defaults(func=run_url)
    for name, text in (("remove", "take the card out of its reader (PC/SC sees it go)"),
                       ("insert", "put the card back into its reader"),
                       ("power-cycle", "cut and restore the card's power (verified PINs lost)")):
        p = add(name, text)
        p.set_defaults(func=run_action, action=name)
    p = add("pin", "a PIN's counter: tries N, block, unblock, change NEW")
    p.add_argument("pin", help="the PIN (auth, sign, helper, juki, common)")
    p.add_argument("pin_action", choices=PIN_ACTIONS, metavar="ACTION",
                   help=f"one of {', '.join(PIN_ACTIONS)}")
    p.add_argument("value", nargs="?", help="tries: the number; change: the new PIN")
    p.set_defaults(func=run_pin)
    p = add("fault", "inject faults: --delay MS, --sw SW [--count N], --mute, --tear")
    p.add_argument("--delay", type=int, metavar="MS", help="answer after MS milliseconds")
    p.add_argument("--sw", metavar="SW", help="answer SW (hex) without reaching the card")
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="how many commands --sw / --tear act on (1)")
    p.add_argument("--mute", action="store_true", help="the card stops answering")
    p.add_argument("--tear", action="store_true",
                   help="power lost after the card's first write, no answer (a torn card)")
    p.add_argument("--ins", metavar="INS[,INS]", help="only for these INS bytes (hex)")
    p.set_defaults(func=run_fault)
    p = add("clear", "clear the faults (all, or one kind)")
    p.add_argument("kind", nargs="?", choices=("delay", "sw", "mute", "tear"),
                   help="one kind of fault")
    p.set_defaults(func=run_clear)
    p = add("swap", "serve another card file or preset in the same reader")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", metavar="CARD.json")
    what.add_argument("--preset", metavar="NAME", help="default, expired, pin-blocked, ...")
    p.add_argument("--atr", metavar="NAME|HEX", help="present another ATR")
    p.set_defaults(func=run_swap)
    p = add("renew", "renew (or re-issue) the due certificates at the status date")
    p.add_argument("--new-card", action="store_true", help="renew the card itself")
    p.set_defaults(func=run_lifecycle, action="renew")
    p = add("revoke", "revoke a certificate at the test CA")
    p.add_argument("which", choices=("auth", "sign"))
    p.add_argument("--reason", default="keyCompromise",
                   help="keyCompromise (default), superseded, affiliationChanged, ...")
    p.set_defaults(func=run_lifecycle, action="revoke")
    p = add("expire", "re-issue the card back-dated: its certificates (or the card) expired")
    p.add_argument("--what", choices=("certificates", "card"), default="certificates")
    p.set_defaults(func=run_lifecycle, action="expire")
    p = add("issue", "issue a new card for the holder")
    p.add_argument("--issued", metavar="YYYY-MM-DD", help="issue date (the status date)")
    p.set_defaults(func=run_lifecycle, action="issue")
    p = add("date", "show or set the status date (YYYY-MM-DD, or `real`)", card=False)
    p.add_argument("day", nargs="?", help="YYYY-MM-DD, or `real` for the machine's date")
    p.set_defaults(func=run_date)
    p = add("trace", "the card's recent APDUs (PINs masked); --follow for the live stream",
            card=False)
    p.add_argument("-c", "--card", type=int, default=None, metavar="N", help="only card N")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing as APDUs come")
    p.set_defaults(func=run_trace)


def _client(args: argparse.Namespace) -> Any:
    from jpki_sim.control.client import ControlClient

    url = args.control
    if url and "://" not in url:
        from jpki_sim.control import DEFAULT_PORT
        from jpki_sim.control.server import parse_address

        host, port = parse_address(url, DEFAULT_PORT)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    return ControlClient(url, token_file=args.token_file)


def _print(args: argparse.Namespace, doc: Any, text: str) -> int:
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(text)
    return 0


def _summary(c: dict[str, Any]) -> str:
    where = "in" if c["present"] else "removed from"
    pins = ", ".join(f"{n} {p['tries_left']}/{p['max_tries']}" if p["set"] else f"{n} not set"
                     for n, p in c["pins"].items())
    lines = [f"card {c['index']}: {c['label']} ({c['profile']}), {where} "
             f"{c['reader'] or c['vpcd'] or 'no reader'}, "
             f"{'powered' if c['powered'] else 'unpowered'}, ATR {c['atr']}",
             f"  PINs: {pins}"]
    if c.get("holder"):
        lines.append(f"  holder {c['holder']['name']}, card {c['card']['issued']} to "
                     f"{c['card']['expires']} (as of {c['as_of']})")
        for w, cert in c["certificates"].items():
            if not cert["present"]:
                lines.append(f"  {w} certificate: none")
                continue
            flags = [f for f, on in (("EXPIRED", cert["expired"]), ("REVOKED", cert["revoked"]))
                     if on]
            lines.append(f"  {w} certificate {cert['serial']}: {cert['not_before']} to "
                         f"{cert['expires']}{' ' + ' '.join(flags) if flags else ''}")
    faults = [k for k, v in c["faults"].items() if v]
    if faults:
        lines.append(f"  faults: {json.dumps(c['faults'])}")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.card is None:
        docs = client.cards()
        return _print(args, docs, "\n".join(_summary(c) for c in docs) or "no card served")
    doc = client.state(args.card)
    return _print(args, doc, _summary(doc))


def run_url(args: argparse.Namespace) -> int:
    client = _client(args)
    client.info()  # fails clearly when nothing answers
    url = f"{client.url}?token={client.token}"
    return _print(args, {"url": url}, url)


def run_action(args: argparse.Namespace) -> int:
    doc = _client(args).act(args.action, args.card)
    return _print(args, doc, _summary(doc))


def run_pin(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError

    body: dict[str, Any] = {}
    if args.pin_action == "tries":
        if args.value is None or not args.value.isdigit():
            raise UserError("pin ... tries N: the number of tries left")
        body = {"tries": int(args.value)}
    elif args.pin_action == "change":
        if not args.value:
            raise UserError("pin ... change NEW: the new PIN")
        body = {"new": args.value}
    elif args.value is not None:
        raise UserError(f"pin ... {args.pin_action} takes no value")
    doc = _client(args).pin(args.pin, args.pin_action, args.card, body)
    return _print(args, doc, _summary(doc))


def run_fault(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError

    ins = [x for x in (args.ins or "").replace(" ", ",").split(",") if x] or None
    body: dict[str, Any] = {}
    if args.delay is not None:
        body["delay"] = {"ms": args.delay, "ins": ins}
    if args.sw is not None:
        body["sw"] = {"sw": args.sw, "count": args.count, "ins": ins}
    if args.mute:
        body["mute"] = True
    if args.tear:
        body["tear"] = {"count": args.count, "ins": ins}
    if not body:
        raise UserError("fault: give --delay MS, --sw SW, --mute or --tear")
    doc = _client(args).fault(args.card, **body)
    return _print(args, doc, _summary(doc))


def run_clear(args: argparse.Namespace) -> int:
    doc = _client(args).clear_faults(args.card, args.kind)
    return _print(args, doc, _summary(doc))


def run_swap(args: argparse.Namespace) -> int:
    from pathlib import Path

    body: dict[str, Any] = {}
    if args.file:
        body["file"] = str(Path(args.file).resolve())
    if args.preset:
        body["preset"] = args.preset
    if args.atr:
        body["atr"] = args.atr
    doc = _client(args).act("swap", args.card, body)
    return _print(args, doc, _summary(doc))


def run_lifecycle(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.action == "renew" and args.new_card:
        body["new_card"] = True
    elif args.action == "revoke":
        body = {"which": args.which, "reason": args.reason}
    elif args.action == "expire":
        body = {"what": args.what}
    elif args.action == "issue" and args.issued:
        body = {"issued": args.issued}
    doc = _client(args).act(args.action, args.card, body)
    text = f"{args.action}: {json.dumps(doc.get('result'), ensure_ascii=False)}\n{_summary(doc)}"
    return _print(args, doc, text)


def run_date(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.day is None:
        doc = client.get("api/clock")
    else:
        doc = client.set_date(None if args.day == "real" else args.day)
    return _print(args, doc, f"status date {doc['today']} ({'fixed' if doc['fixed'] else 'real'})")


def _trace_line(e: dict[str, Any]) -> str:
    if e["type"] == "apdu":
        note = f"  [{e['note']}]" if e.get("note") else ""
        return (f"{e['time'][11:23]} card {e['card']} > {e['command']}  < "
                f"{e['sw'] or '(no answer)'}  {e['what']}{note}")
    return f"{e['time'][11:23]} card {e['card']} -- {e['what']}"


def run_trace(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.follow:
        try:
            for e in client.stream(args.card):
                print(json.dumps(e, ensure_ascii=False) if args.json else _trace_line(e),
                      flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    cards = [args.card] if args.card is not None else range(client.info()["cards"])
    events = sorted((e for c in cards for e in client.trace(c)), key=lambda e: e["time"])
    if args.json:
        print(json.dumps(events, ensure_ascii=False, indent=1))
    else:
        for e in events:
            print(_trace_line(e))
    sys.stdout.flush()
    return 0
