"""``jpki-sim card``: issue a card, see where it stands, and do what the municipal counter does.

issue | status | renew | reset-pin | change-address | change-name |
change-birthdate | change-sex, all with ``--at DATE`` (act as of that day,
Japan time) and ``--json``; face draws the card's front.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from typing import Any

DEFAULT_CARD_HELP = "card file (default: the default card, the one `jpki-sim serve` serves)"

SEX_WORDS = {"male": "1", "m": "1", "female": "2", "f": "2", "unknown": "0", "n/a": "9"}


def configure(sub: Any) -> None:
    group = sub.add_parser(
        "card",
        help="issue test cards and run their lifecycle (status, renew, reset PIN, move)",
        description="Issue a card from the test CA and act on it as the municipal counter does.",
    )
    cmds = group.add_subparsers(dest="card_command", metavar="SUBCOMMAND")
    group.set_defaults(_group_parser=group)

    # ---- issue
    p = cmds.add_parser(
        "issue",
        help="issue a new card file from the test CA",
        description=(
            "Issue a card: key pairs, certificates from the test CA with the lifecycle's "
            "dates, PINs, helper data, a card serial. Defaults: the seeds' fictional holder "
            "番号　花子, born 1993-03-31, female, issued by Otaru (01203); PINs auth 1234, "
            "sign ABC123, juki 1234, helper 1234."
        ),
        epilog="example: jpki-sim card issue card.json --issued 2020-08-27",
    )
    p.add_argument("out", metavar="OUT.json", help="card file to write")
    p.add_argument("--profile", metavar="NAME",
                   help="the kind of card (default jpki; another profile's card is made by "
                        "its own issuer, and the holder and PIN options below are jpki's)")
    p.add_argument("--name", help="holder's name (default 番号　花子)")
    p.add_argument("--birthdate", metavar="DATE", help="YYYY-MM-DD (default 1993-03-31)")
    p.add_argument("--sex", help="1|male, 2|female, 0|unknown, 9|n/a (ISO 5218; default 2)")
    p.add_argument("--address", help="holder's address (default: Otaru city hall's)")
    p.add_argument("--my-number", metavar="DIGITS", help="12 digits with a valid check digit")
    p.add_argument("--issued", metavar="DATE", help="issue date (default: --at, or today)")
    p.add_argument("--stay-until", metavar="DATE", help="end of a foreign resident's stay")
    p.add_argument("--auth-pin", metavar="PIN", help="user-authentication PIN, 4 digits")
    p.add_argument("--sign-pin", metavar="PIN", help="signature PIN, 6-16 of A-Z 0-9")
    p.add_argument("--helper-pin", metavar="PIN", help="card-info helper PIN, 4 digits")
    p.add_argument("--juki-pin", metavar="PIN",
                   help="resident-registry PIN (住基AP and 共通AP keys), 4 digits")
    p.add_argument("--municipality", metavar="CODE",
                   help="issuing municipality, 5-digit local government code (default 01203 "
                        "Otaru)")
    p.add_argument("--municipality-name", metavar="NAME",
                   help="its name, for a code jpki-sim does not know")
    p.add_argument("--atr", metavar="NAME|HEX",
                   help="the card's ATR: a variant (contact, contact-02..05, "
                        "contactless-06..09) or hex (default contact)")
    p.add_argument("--token-label", metavar="LABEL", choices=("JPKIAPICCTOKEN2", "JPKIAPICCTOKEN"),
                   help="EF 0006's label: JPKIAPICCTOKEN2 (default) or the older JPKIAPICCTOKEN")
    p.add_argument("--photo", metavar="FILE",
                   help="the holder's photo (any image Pillow reads: JPEG, PNG, WebP ...); "
                        "the card stores it as 140x180 greyscale JPEG 2000 (default: a "
                        "synthetic face)")
    sign = p.add_mutually_exclusive_group()
    sign.add_argument(
        "--no-sign-cert", action="store_true", help="no signature certificate (and no sign PIN)"
    )
    sign.add_argument(
        "--sign-cert",
        action="store_true",
        help="a signature certificate even for a holder under 15 (not issued by default)",
    )
    p.add_argument(
        "--no-auth-cert", action="store_true", help="no authentication certificate (and no PIN)"
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT.json if it exists")
    _common(p, ca=True)
    p.set_defaults(func=run_issue)

    # ---- status
    p = cmds.add_parser(
        "status",
        help="where the card stands on a date: expiries, renewal, health insurance, PINs",
        epilog="example: jpki-sim card status card.json --at 2025-02-01 --json",
    )
    p.add_argument("card", metavar="CARD.json", nargs="?", help=DEFAULT_CARD_HELP)
    _common(p, ca=False)
    p.set_defaults(func=run_status)

    # ---- renew
    p = cmds.add_parser(
        "renew",
        help="renew (or after expiry re-issue) the certificates, as the counter does",
        description=(
            "Renew the certificates that are due: inside the renewal window, after expiry "
            "(re-issue) or after revocation. Needs the holder's current PINs; a wrong PIN "
            "costs a try on the card. New keys, new certificates, old ones revoked."
        ),
    )
    p.add_argument("card", metavar="CARD.json", nargs="?", help=DEFAULT_CARD_HELP)
    p.add_argument("--auth-pin", metavar="PIN", help="current auth PIN (prompted if omitted)")
    p.add_argument("--sign-pin", metavar="PIN", help="current sign PIN (prompted if omitted)")
    p.add_argument(
        "--new-card",
        action="store_true",
        help="renew the card itself: a new card file in place of the old one; the PIN "
        "options then set the new card's PINs (default: unchanged)",
    )
    p.add_argument("--helper-pin", metavar="PIN", help="with --new-card: the new helper PIN")
    p.add_argument("--juki-pin", metavar="PIN", help="with --new-card: the new juki PIN")
    p.add_argument(
        "--stay-until", metavar="DATE", help="with --new-card: the new end of the period of stay"
    )
    _common(p, ca=True)
    p.set_defaults(func=run_renew)

    # ---- reset-pin
    p = cmds.add_parser(
        "reset-pin",
        help="set a forgotten or blocked PIN to a new value (counter, after an ID check)",
    )
    p.add_argument("card", metavar="CARD.json", nargs="?", help=DEFAULT_CARD_HELP)
    p.add_argument("--pin", required=True,
                   choices=("auth", "sign", "juki", "helper", "code-a", "code-b", "birthdate"),
                   help="the holder secret (juki: the 住基AP and 共通AP keys both), or a "
                        "照合番号: code-a, code-b (their helper and surface AP keys), "
                        "birthdate (the surface AP's key); a 照合番号 keeps its value")
    p.add_argument("--new-pin", metavar="PIN",
                   help="the new PIN (prompted if omitted; none for a 照合番号)")
    _common(p, ca=False)
    p.set_defaults(func=run_reset_pin)

    # ---- change-address / change-name / change-birthdate / change-sex: the four facts
    for what, meta, example in (
        ("address", "NEW_ADDRESS", "東京都千代田区霞が関２丁目１番２号"),
        ("name", "NEW_NAME", "番号　華子"),
        ("birthdate", "YYYY-MM-DD", "1993-04-01"),
        ("sex", "SEX", "1|male, 2|female, 0|unknown, 9|n/a"),
    ):
        p = cmds.add_parser(
            f"change-{what}",
            help=f"record a new {what}: helper data updated, signature certificate revoked",
            description=(
                f"Record a change of the holder's {what}, one of the four facts the signature "
                "certificate carries: the card-info helper data changes and the signature "
                "certificate is revoked (affiliationChanged); `card renew` issues a new one."
            ),
            epilog=f"example: jpki-sim card change-{what} card.json '{example.split(',')[0]}'",
        )
        p.add_argument("card", metavar="CARD.json", nargs="?", help=DEFAULT_CARD_HELP)
        p.add_argument("value", metavar=meta)
        _common(p, ca=True)
        p.set_defaults(func=run_change, what=what)

    # ---- face
    p = cmds.add_parser(
        "face",
        help="draw the front of the card as a PNG (photo, name, address, dates, security code)",
        description=(
            "Draw the card's front from the card's data, as the real card lays it out, "
            "marked TEST CARD and 見本."
        ),
        epilog="example: jpki-sim card face card.json --out front.png",
    )
    p.add_argument("card", metavar="CARD.json", nargs="?", help=DEFAULT_CARD_HELP)
    p.add_argument("--out", metavar="FILE.png", required=True, help="where to write the PNG")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_face)


def _common(p: argparse.ArgumentParser, *, ca: bool) -> None:
    p.add_argument("--at", metavar="DATE", help="act as of this date (YYYY-MM-DD, Japan time)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    if ca:
        p.add_argument("--ca", metavar="DIR", help="test CA directory (default: the card's own)")


# ---------------------------------------------------------------- input


def parse_date(text: str, what: str) -> date:
    from jpki_sim.errors import UserError

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise UserError(f"{what} must be a date YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"{what}: {text} is not a date on the calendar") from None


def _clock(args: argparse.Namespace) -> Any:
    from jpki_sim.issuer import lifecycle

    return lifecycle.clock_at(parse_date(args.at, "--at") if args.at is not None else None)


def _sex(text: str) -> str:
    from jpki_sim.errors import UserError
    from jpki_sim.profiles.jpki.state import SEX_CODES

    code = SEX_WORDS.get(text.lower(), text)
    if code not in SEX_CODES:
        raise UserError(f"--sex must be 1 (male), 2 (female), 0 (unknown) or 9, got {text!r}")
    return code


def _open_store(path: str | None) -> Any:
    """The named card file, or the default card (created on first use, as serve does).

    The lifecycle commands are the JPKI card's: another profile's card is refused.
    """
    from jpki_sim.cli.common import open_card
    from jpki_sim.errors import UserError

    profile, store = open_card(path, None)
    if profile.name != "jpki":
        raise UserError(f"{path}: a {profile.name!r} card has no JPKI lifecycle")
    return store


def _prompt_pin(label: str, *, twice: bool = False) -> str:
    import getpass

    from jpki_sim.errors import UserError

    if not sys.stdin.isatty():
        raise UserError(f"the {label} is needed: give it as an option")
    pin = getpass.getpass(f"{label}: ")
    if twice and getpass.getpass(f"{label} again: ") != pin:
        raise UserError("the two entries differ")
    return pin


# ---------------------------------------------------------------- output


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(text)


def _status_table(doc: dict[str, Any], path: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    h = doc["holder"]
    table = Table(title=escape(f"{path} as of {doc['as_of']}"), show_header=True,
                  title_justify="left")
    table.add_column("item")
    table.add_column("value")
    age = h["age"] if h["age"] is not None else "-"
    table.add_row("holder", escape(f"{h['name']} (born {h['birthdate']}, age {age})"))
    table.add_row("address", escape(h["address"]))
    c = doc["card"]
    table.add_row(
        "card",
        f"issued {c['issued']}, expires {c['expires']}"
        + (" [red]EXPIRED[/]" if c["expired"] else "")
        + (" [yellow]NOT YET VALID[/]" if c.get("not_yet_valid") else ""),
    )
    chip = doc["chip"]
    town = chip["municipality"]
    table.add_row("card serial", chip["serial"])
    table.add_row("security code", f"{c['security_code']} (printed on the front; in 照合番号B)")
    table.add_row("municipality", f"{town['code']} {town['name']}".rstrip())
    table.add_row("variant", f"ATR {chip['atr']}, token {chip['token_label']}")
    for which, label in (("auth", "auth certificate"), ("sign", "sign certificate")):
        cert = doc["certificates"][which]
        if not cert["present"]:
            table.add_row(label, "not carried")
            continue
        flags = []
        if cert.get("not_yet_valid"):
            flags.append("[yellow]not yet valid[/]")
        if cert["expired"]:
            flags.append("[red]expired[/]")
        if cert["revoked"]:
            flags.append("[red]revoked[/]")
        table.add_row(
            label,
            f"serial {cert['serial']}, {cert['not_before']} to {cert['expires']}"
            + (" " + " ".join(flags) if flags else ""),
        )
    r = doc["renewal"]
    due = f" (due: {', '.join(r['due'])})" if r["due"] else ""
    table.add_row("renewal", f"{r['for']} from {r['opens']}: {r['window']}{due}")
    n = doc["notice"]
    table.add_row("expiry notice", f"from {n['from']} ({n['for']} expire {n['expiry']})")
    hi = doc["health_insurance"]
    grace = f", grace to {hi['grace_ends']}" if hi["grace_ends"] else ""
    table.add_row("health insurance", f"{hi['state']}{grace}")
    for name, pin in doc["pins"].items():
        from jpki_sim.profiles.jpki.ids import CODE_POLICIES

        name = CODE_POLICIES[name].label if name in CODE_POLICIES else f"{name} PIN"
        if not pin["set"]:
            table.add_row(name, "not set")
        else:
            state = (
                "[red]blocked[/]" if pin["blocked"] else f"{pin['tries_left']}/{pin['max_tries']}"
            )
            table.add_row(name, f"tries left {state}")
    from datetime import datetime

    from jpki_sim.issuer.lifecycle import JST

    for h in doc["revoked"]:
        day = datetime.fromisoformat(h["revoked_at"]).astimezone(JST).date()  # a Japanese day
        table.add_row("revoked", f"{h['which']} {h['serial']} on {day} ({h['reason']})")
    console.print(table)


# ---------------------------------------------------------------- commands


def run_issue(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jpki_sim.errors import UserError
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.profiles.jpki.state import new_store

    out = Path(args.out)
    try:
        if out.is_dir():
            raise UserError(f"{out} is a directory")
        if out.exists() and not args.force:
            raise UserError(f"{out} exists: use --force to overwrite it")
        if not out.parent.is_dir():
            raise UserError(f"{out.parent}: no such directory")
    except OSError as exc:
        raise UserError(f"{out}: {exc.strerror or exc}") from None
    clock = _clock(args)
    if args.profile not in (None, "jpki"):
        return _issue_other(args, out, clock)
    ident = issuer.default_identity()
    if args.name is not None:
        ident.name = args.name
    if args.birthdate is not None:
        ident.birthdate = parse_date(args.birthdate, "--birthdate")
    if args.sex is not None:
        ident.sex = _sex(args.sex)
    if args.address is not None:
        ident.address = args.address
    if args.my_number is not None:
        ident.my_number = args.my_number
    if args.stay_until is not None:
        ident.stay_until = parse_date(args.stay_until, "--stay-until")
    issued = parse_date(args.issued, "--issued") if args.issued is not None else clock.today()
    with_sign = False if args.no_sign_cert else (True if args.sign_cert else None)
    photo = None
    if args.photo is not None:
        try:
            photo = Path(args.photo).read_bytes()
        except OSError as exc:
            raise UserError(f"{args.photo}: {exc.strerror}") from None
    state = issuer.issue_card(
        ident,
        issued,
        pins=_pins(args),
        with_auth=not args.no_auth_cert,
        with_sign=with_sign,
        ca=args.ca,
        clock=clock,
        municipality=args.municipality or issuer.DEFAULT_MUNICIPALITY,
        municipality_name=args.municipality_name,
        atr=args.atr,
        token_label=args.token_label,
        photo=photo,
    )
    new_store(state, out).commit()  # CardFileError names the file and the reason
    doc = {"path": str(out), **issuer.status(state, clock.today())}
    carried = [w for w in ("auth", "sign") if state.slot(w) is not None]
    certs = (
        ", ".join(f"{w} to {s.expires}" for w in carried if (s := state.slot(w)) is not None)
        or "none"
    )
    town = state.info.municipality
    _emit(
        args,
        doc,
        f"issued {out}: {state.identity.name}, born {state.identity.birthdate}; "
        f"card {state.info.serial} from {town.code} {town.name}, {state.issued} to "
        f"{state.expires}; certificates: {certs}",
    )
    return 0


def _pins(args: argparse.Namespace) -> dict[str, str]:
    """The holder secrets given on the command line (the rest: defaults or as they were)."""
    given = (("auth", args.auth_pin), ("sign", args.sign_pin),
             ("helper", args.helper_pin), ("juki", args.juki_pin))
    return {k: v for k, v in given if v is not None}


#: card issue's options that describe a JPKI holder
_JPKI_ISSUE_OPTIONS = ("name", "birthdate", "sex", "address", "my_number", "issued",
                       "stay_until", "auth_pin", "sign_pin", "helper_pin", "juki_pin",
                       "municipality", "municipality_name", "atr", "token_label", "ca",
                       "photo")


def _issue_other(args: argparse.Namespace, out: Any, clock: Any) -> int:
    """A card of another profile, made by that profile's issuer (its ``provision`` hook)."""
    from jpki_sim.card.store import CardStore
    from jpki_sim.errors import UserError
    from jpki_sim.profiles import registry

    profile = registry.get(args.profile)
    given = [o for o in _JPKI_ISSUE_OPTIONS if getattr(args, o, None)]
    if given or args.no_sign_cert or args.sign_cert or args.no_auth_cert:
        what = f"--{given[0].replace('_', '-')}" if given else "the certificate options"
        raise UserError(f"{what} describes a JPKI card, not a {profile.name!r} one")
    state = profile.hook("provision")(clock=clock)
    CardStore(profile.state, state, out).commit()
    _emit(args, {"path": str(out), "profile": profile.name}, f"issued {out}: a {profile.name} card")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from jpki_sim.issuer import counter as issuer

    store = _open_store(args.card)
    args.card = str(store.path)  # the default card named, for the output
    doc = issuer.status(store.state, _clock(args).today())
    if args.json:
        print(json.dumps({"path": args.card, **doc}, ensure_ascii=False, indent=1))
    else:
        _status_table(doc, args.card)
    return 0


def run_renew(args: argparse.Namespace) -> int:
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.profiles.jpki import ids as jpki

    clock = _clock(args)
    store = _open_store(args.card)
    args.card = str(store.path)  # the default card named, for the output
    if args.new_card:
        return _renew_card(args, store, clock)
    for option in ("helper_pin", "juki_pin", "stay_until"):
        if getattr(args, option) is not None:
            from jpki_sim.errors import UserError

            raise UserError(f"--{option.replace('_', '-')} goes with --new-card")
    due = issuer.renewal_due(store.state, clock.today())
    given = {"auth": args.auth_pin, "sign": args.sign_pin}
    pins: dict[str, str] = {}
    for which, d in due.items():
        if not d.due or store.state.expires < clock.today():
            continue
        pin = given[which]
        if pin is None:
            pin = _prompt_pin(f"current {jpki.PIN_POLICIES[which].label}")
        pins[which] = pin
    result = issuer.renew(store, pins=pins, ca=args.ca, clock=clock)
    doc = {
        "path": args.card,
        "renewed": {
            w: {
                "kind": result.kinds[w],
                "old_serial": format(result.replaced[w], "x"),
                "serial": format(slot.serial, "x"),
                "not_before": slot.not_before.isoformat(),
                "expires": slot.expires.isoformat(),
            }
            for w, slot in result.renewed.items()
        },
        "revoked": [format(s, "x") for s in result.revoked],
        "status": issuer.status(store.state, clock.today()),
    }
    lines = [
        f"{w}: {result.kinds[w]}, serial {format(result.replaced[w], 'x')} -> "
        f"{format(s.serial, 'x')}, valid {s.not_before} to {s.expires}"
        for w, s in result.renewed.items()
    ]
    if result.revoked:
        lines.append("revoked at the CA: " + ", ".join(format(s, "x") for s in result.revoked))
    _emit(args, doc, "\n".join(lines))
    return 0


def _renew_card(args: argparse.Namespace, store: Any, clock: Any) -> int:
    from jpki_sim.issuer import counter as issuer

    pins = _pins(args)
    stay = parse_date(args.stay_until, "--stay-until") if args.stay_until is not None else None
    old_id = store.state.application_id
    old_serial = store.state.info.serial
    revoked = issuer.renew_card(store, pins=pins, ca=args.ca, clock=clock, stay_until=stay)
    state = store.state
    doc = {
        "path": args.card,
        "new_card": {
            "issued": state.issued.isoformat(),
            "expires": state.expires.isoformat(),
            "application_id": state.application_id,
            "old_application_id": old_id,
            "serial": state.info.serial,
            "old_serial": old_serial,
        },
        "revoked": [format(s, "x") for s in revoked],
        "status": issuer.status(state, clock.today()),
    }
    text = (f"new card {state.info.serial}, {state.issued} to {state.expires} "
            f"(application ID {state.application_id})")
    if revoked:
        text += "; old certificates revoked: " + ", ".join(format(s, "x") for s in revoked)
    _emit(args, doc, text)
    return 0


def run_reset_pin(args: argparse.Namespace) -> int:
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.profiles.jpki import ids as jpki

    store = _open_store(args.card)
    args.card = str(store.path)  # the default card named, for the output
    code = args.pin in jpki.CODES
    new = args.new_pin
    if new is None and not code:
        new = _prompt_pin(f"new {jpki.PIN_POLICIES[args.pin].label}", twice=True)
    issuer.reset_pin(store, args.pin, new)
    keys = jpki.CODES[args.pin] if code else jpki.HOLDER_SECRETS[args.pin]
    pin = store.state.pins[keys[0]]
    doc = {"path": args.card, "pin": args.pin, "keys": list(keys), "tries_left": pin.tries_left}
    where = f" ({' and '.join(keys)} keys)" if len(keys) > 1 else ""
    what = "counters reset, value kept" if code else "PIN reset"
    _emit(args, doc, f"{args.pin} {what}{where}; {pin.tries_left} tries")
    return 0


def run_face(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jpki_sim.card.store import write_atomic
    from jpki_sim.errors import UserError
    from jpki_sim.profiles.jpki.cardfront import FrontData, draw_front

    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise UserError(f"{out}: not a file path in an existing directory")
    store = _open_store(args.card)
    st = store.state
    ident = st.identity
    png = draw_front(FrontData.of_state(st))
    try:
        write_atomic(out, png, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    from jpki_sim.profiles.jpki.images import image_info

    _fmt, _mode, size = image_info(png)
    doc = {"path": str(out), "card": str(store.path), "width": size[0], "height": size[1]}
    _emit(args, doc, f"wrote {out}: the front of {ident.name}'s card ({size[0]}x{size[1]})")
    return 0


def run_change(args: argparse.Namespace) -> int:
    from jpki_sim.issuer import counter as issuer

    value: Any = args.value
    if args.what == "birthdate":
        value = parse_date(args.value, "the birth date")
    elif args.what == "sex":
        value = _sex(args.value)
    clock = _clock(args)
    store = _open_store(args.card)
    args.card = str(store.path)  # the default card named, for the output
    revoked = issuer.change_facts(store, **{args.what: value}, ca=args.ca, clock=clock)
    shown = value.isoformat() if isinstance(value, date) else value
    doc = {
        "path": args.card,
        args.what: shown,
        "revoked": format(revoked, "x") if revoked is not None else None,
        "status": issuer.status(store.state, clock.today()),
    }
    text = f"{args.what} changed to {shown}"
    if revoked is not None:
        text += f"; signature certificate {revoked:x} revoked (re-issue it with card renew)"
    _emit(args, doc, text)
    return 0
