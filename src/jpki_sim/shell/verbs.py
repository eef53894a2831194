"""The shell's commands every card has: help, modes, traces, raw APDUs, SELECT, PINs.

Each command prints what it did and returns an :class:`Outcome` (the status
word and the text ``--expect-data`` is matched against). Card errors raise
:class:`~jpki_sim.iso7816.errors.ApduError` / ``PinError``; the interpreter
prints them as one line and checks expectations against their status word.
Names (applications, EFs, PINs) come from the card's profile; a profile's own
verbs live in the module its ``shell`` hook names (JPKI: :mod:`.jpki`).
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from jpki_sim.iso7816.sw import describe
from jpki_sim.shell import render
from jpki_sim.shell.apdu_text import ApduTextError, parse_apdu_text
from jpki_sim.shell.registry import (
    PATHS,
    CommandSpec,
    Outcome,
    QuitShell,
    ShellArgParser,
    ShellError,
    command,
)

if TYPE_CHECKING:
    from jpki_sim.profiles.base import PinRef
    from jpki_sim.shell.session import Shell


def _pin_names(shell: Shell) -> list[str]:
    return list(shell.profile.pins)


def _select_targets(shell: Shell) -> list[str]:
    return shell.application_names() + shell.ef_names()


# ================================================================ general


def _help_setup(p: ShellArgParser) -> None:
    p.add_argument("topic", nargs="?", help="a command")


@command("help", "list the commands, or show one command's help", card=False,
         aliases=("?",), setup=_help_setup, positional=[lambda s: sorted(s.verbs.commands)])
def do_help(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if args.topic:
        spec = shell.verbs.lookup(args.topic)
        if spec is None:
            raise ShellError(f"no command {args.topic!r}")
        text = spec.parser.format_help().rstrip()
        shell.print(text.replace("usage: ", "usage: ", 1))
        if spec.aliases:
            shell.print(f"aliases: {', '.join(spec.aliases)}")
        if spec.admin:
            shell.print("(admin verb: emulated cards only)")
        return None
    commands = shell.verbs.commands
    groups = [
        ("card", [n for n, s in commands.items() if s.card and not s.admin]),
        ("admin (emulated cards)", [n for n, s in commands.items() if s.admin]),
        ("shell", [n for n, s in commands.items() if not s.card and not s.admin]),
    ]
    for title, names in groups:
        shell.print(f"{title}:")
        for n in names:
            shell.print(f"  {n:<13} {commands[n].summary}")
    shell.print("A line of hex (or the short form INS P1P2:DATA/LE) is sent as an APDU.")
    shell.print("'help COMMAND' for details; Tab completes commands and card names.")
    return None


@command("exit", "leave the shell", card=False, aliases=("quit",))
def do_exit(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    raise QuitShell()


def _mode_setup(p: ShellArgParser) -> None:
    p.add_argument("mode", nargs="?", choices=("transparent", "auto"))


@command("mode", "show or set APDU mode: transparent (as typed) or auto (follow 61xx/6Cxx)",
         card=False, setup=_mode_setup, positional=[("transparent", "auto")])
def do_mode(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if args.mode:
        shell.client.mode = args.mode
    shell.print(f"mode {shell.client.mode}")
    return Outcome(text=shell.client.mode)


def _onoff_setup(p: ShellArgParser) -> None:
    p.add_argument("state", nargs="?", choices=("on", "off"))


@command("apdus", "show or hide the APDUs the verbs exchange (on|off)", card=False,
         setup=_onoff_setup, positional=[("on", "off")])
def do_apdus(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if args.state:
        shell.show_apdus = args.state == "on"
    shell.print(f"apdus {'on' if shell.show_apdus else 'off'}")
    return None


def _echo_setup(p: ShellArgParser) -> None:
    p.add_argument("text", nargs="*")


@command("echo", "print a line (for scripts)", card=False, setup=_echo_setup)
def do_echo(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    shell.print(" ".join(args.text))
    return None


@command("status", "what the shell knows: card, power, clock, application, verified PINs",
         card=False)
def do_status(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    t = shell.target
    view = shell.client.view
    shell.print(f"card         {t.transport.name}"
                + (" (emulated)" if t.is_emulated else " (PC/SC reader)"))
    shell.print(f"power        {'on' if t.powered else 'off'}")
    shell.print(f"ATR          {render.spaced(t.transport.atr())}")
    shell.print(f"card clock   {t.today().isoformat()}"
                + ("" if t.clock_date is not None else " (machine clock)"))
    shell.print(f"application  {view.application_name or '-'}")
    shell.print(f"EF           {'-' if view.ef is None else format(view.ef, '04X')}")
    shell.print(f"verified     {', '.join(sorted(view.verified)) or '-'}")
    shell.print(f"mode         {shell.client.mode}")
    return None


def _trace_setup(p: ShellArgParser) -> None:
    p.add_argument("action", choices=("start", "stop", "status"), nargs="?", default="status")
    p.add_argument("file", nargs="?", help="the JSON Lines trace to write (start)")
    p.add_argument("--keep-pins", action="store_true",
                   help="DANGER: keep PIN values in clear in the trace")


@command("trace", "write exchanges to a JSON Lines trace: trace start FILE | trace stop",
         card=False, setup=_trace_setup, positional=[("start", "stop", "status"), PATHS])
def do_trace(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.trace.writer import TraceWriter

    if args.action == "start":
        if not args.file:
            raise ShellError("trace start: a file name is needed")
        if shell.trace is not None:
            raise ShellError(f"already tracing to {shell.trace_path or 'a file'}: trace stop first")
        try:
            writer = TraceWriter(args.file, card=shell.target.transport.name,
                                 keep_pins=args.keep_pins)
        except OSError as exc:
            raise ShellError(f"{args.file}: {exc.strerror}") from None
        shell.start_trace(writer, args.file)
        if args.keep_pins:
            shell.print("WARNING: this trace keeps PIN values in clear")
        shell.print(f"tracing to {args.file}")
    elif args.action == "stop":
        if shell.trace is None:
            raise ShellError("no trace is being written")
        path = shell.trace_path
        count = shell.trace.count
        shell.stop_trace()
        shell.print(f"trace stopped: {count} exchanges" + (f" in {path}" if path else ""))
    else:
        shell.print(f"tracing to {shell.trace_path or 'a file'}" if shell.trace else "no trace")
    return None


# ================================================================ raw APDUs


def _apdu_setup(p: ShellArgParser) -> None:
    p.add_argument("hex", nargs="+", metavar="APDU",
                   help="hex (spaces or colons allowed) or the short form "
                        "[CLA]INS[P1P2][:DATA][/LE], e.g. B0/04, A4040C:D392F000260100000001, "
                        "200080:\"1234\"")
    p.add_argument("--raw", action="store_true",
                   help="send the bytes even when their length fields are wrong")


_APDU_OPTION = re.compile(
    r"""\s--(expect-sw|expect-data)(?:\s+|=)("[^"]*"|'[^']*'|\S+)|\s--(raw)(?=\s|$)"""
)


def parse_apdu_line(spec: CommandSpec, rest: str) -> argparse.Namespace:
    """The apdu command's arguments, read without shell quoting (quotes are APDU data)."""
    ns = argparse.Namespace(expect_sw=None, expect_data=None, raw=False, hex=[])
    text = " " + rest
    for m in _APDU_OPTION.finditer(text):
        if m.group(3):
            ns.raw = True
            continue
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        setattr(ns, m.group(1).replace("-", "_"), value)
    remaining = _APDU_OPTION.sub(" ", text).strip()
    if re.search(r"(^|\s)--?\w", remaining):
        bad = re.search(r"(^|\s)(--?[\w-]+)", remaining)
        raise ShellError(f"apdu: unknown option {bad.group(2) if bad else ''}")
    if not remaining:
        raise ShellError("apdu: no APDU given (e.g. apdu 00A4040C0AD392F000260100000001)")
    ns.hex = [remaining]
    return ns


@command("apdu", "send one APDU (any hex form, or the short form) and show the answer",
         setup=_apdu_setup)
def do_apdu(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.trace import redact_command
    from jpki_sim.trace.describe import describe_command

    try:
        command_bytes = parse_apdu_text(" ".join(args.hex), raw=args.raw)
    except ApduTextError as exc:
        raise ShellError(str(exc)) from None
    client = shell.client
    if client.mode == "auto":
        from jpki_sim.iso7816.errors import ApduError

        try:
            full = client.transmit_apdu(command_bytes).to_bytes()
        except ApduError:  # a response without a status word: shown as it came
            full = client.last_exchanges[-1].response if client.last_exchanges else b""
    else:
        full = client.transmit_raw(command_bytes)
    exchanges = client.last_exchanges
    pin_answer = command_bytes[1:2] in (b"\x20", b"\x24", b"\x2c")
    for i, ex in enumerate(exchanges):
        shown, redacted = redact_command(ex.command)
        note = "automatic, " if i else ""
        note += describe_command(ex.command) + (", PIN hidden" if redacted else "")
        shell.print(f"> {render.spaced(shown)}  ({note})")
        if i < len(exchanges) - 1:
            shell.print(f"< {render.spaced(ex.response)}  ({describe(ex.sw)})")
    if len(full) < 2:
        shell.print(f"< {render.spaced(full)}  (no status word)")
        return Outcome(None, full.hex().upper())
    data, sw = full[:-2], int.from_bytes(full[-2:], "big")
    for line in render.hexdump(data):
        shell.print(line)
    for line in render.decode_data(data, shell.target.now()):
        shell.print("  " + line)
    shell.print("< " + render.sw_line(sw, pin_answer=pin_answer))
    return Outcome(sw, data.hex().upper())


@command("atr", "show the card's ATR", card=False)
def do_atr(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    atr = shell.target.transport.atr()
    shell.print(f"ATR {render.spaced(atr)}")
    return Outcome(None, atr.hex().upper())


@command("reset", "warm-reset the card: the application and verified PINs are gone", card=False)
def do_reset(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if not shell.target.powered:
        raise ShellError("the card is powered off ('power on' first)")
    atr = shell.client.reset()
    shell.print(f"reset, ATR {render.spaced(atr)}")
    return Outcome(None, atr.hex().upper())


# ================================================================ files


def _select_setup(p: ShellArgParser) -> None:
    p.add_argument("target", metavar="APPLICATION|EF-NAME|FID|AID",
                   help="an application (jpki, helper, common, juki on a JPKI card), an EF "
                        "name (auth-cert, sign-pin, card-info, ...), "
                        "a 4-digit FID under the current application, or an AID in hex")


@command("select", "SELECT an application (jpki, helper, common, juki, AID) or an EF",
         setup=_select_setup, positional=[_select_targets])
def do_select(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    client = shell.client
    target = args.target.lower()
    profile = shell.profile
    if target in profile.applications:
        client.select_application(target)
        shell.print(f"selected application {target}")
        return Outcome(text=target)
    ef = profile.files.get(target)
    if ef is not None:
        if client.view.application_name != ef.application:
            client.select_aid(profile.applications[ef.application])
        client.select_ef(ef.fid)
        shell.print(f"selected {ef.application} EF {ef.fid:04X} ({target})")
        return Outcome(text=target)
    cleaned = re.sub(r"[\s:]", "", target)
    if not re.fullmatch(r"[0-9a-f]+", cleaned) or len(cleaned) % 2:
        raise ShellError(f"select: {args.target!r} is not an application, EF name, FID or AID")
    raw = bytes.fromhex(cleaned)
    if len(raw) == 2:
        fid = int.from_bytes(raw, "big")
        client.select_ef(fid)
        shell.print(f"selected EF {fid:04X}")
        return Outcome(text=f"{fid:04X}")
    if not 5 <= len(raw) <= 16:
        raise ShellError("select: a FID is 2 bytes, an AID 5 to 16 bytes")
    client.select_aid(raw)
    name = client.view.application_name
    shell.print(f"selected application {name}")
    return Outcome(text=raw.hex().upper())


def _read_binary_setup(p: ShellArgParser) -> None:
    p.add_argument("offset", nargs="?", default="0",
                   help="offset in the current EF (decimal, or hex with 0x); default 0")
    p.add_argument("length", nargs="?", default="256", help="bytes to read, 1..256 (default 256)")
    p.add_argument("--all", action="store_true",
                   help="read the whole EF from the offset, 256 bytes at a time, to its end")


def _number(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ShellError(f"{what} {text!r} is not a number (decimal, or 0x-prefixed hex)") from None


@command("read-binary", "READ BINARY of the current EF (offset, length, or --all)",
         setup=_read_binary_setup)
def do_read_binary(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.iso7816.errors import ApduError

    offset = _number(args.offset, "offset")
    length = _number(args.length, "length")
    if not 0 <= offset <= 0x7FFF:
        raise ShellError("offset must be 0..32767")
    if not 1 <= length <= 256:
        raise ShellError("length must be 1..256")
    data = bytearray()
    if args.all:
        while offset + len(data) <= 0x7FFF:
            try:
                chunk = shell.client.read_binary(offset + len(data), 256)
            except ApduError as exc:
                if exc.sw == 0x6B00 and data:
                    break  # past the end of the EF: done
                raise
            data += chunk
            if len(chunk) < 256:
                break
    else:
        data += shell.client.read_binary(offset, length)
    for line in render.hexdump(bytes(data), prefix="  "):
        shell.print(line)
    for line in render.decode_data(bytes(data).rstrip(b"\xff") or bytes(data), shell.target.now()):
        shell.print("  " + line)
    shell.print(f"{len(data)} bytes from offset {offset:04X}")
    return Outcome(None, bytes(data).hex().upper())


def _pin_status_setup(p: ShellArgParser) -> None:
    p.add_argument("which", nargs="*", metavar="PIN|all",
                   help="the PINs to query (JPKI card: auth, sign, helper, juki, common; "
                        "default: those of the current application, all when none is "
                        "selected; querying a PIN of another application selects it, which "
                        "drops the verified PINs)")


@command("pin-status", "tries left of PINs (SELECT the PIN EF, empty VERIFY); default: this app's",
         setup=_pin_status_setup, positional=[lambda s: [*_pin_names(s), "all"]] * 3)
def do_pin_status(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    profile = shell.profile
    every = _pin_names(shell)
    unknown = [n for n in args.which if n not in every and n != "all"]
    if unknown:
        raise ShellError(f"pin-status: no PIN {unknown[0]!r} ({', '.join(every)} or all)")
    names = [n for n in args.which if n != "all"]
    if not names:
        current = shell.client.view.application_name
        names = [n for n, ref in profile.pins.items() if ref.application == current] or every
        if "all" in args.which:
            names = every
    texts = []
    for name in names:
        tries = shell.client.pin_status(name)
        policy = profile.pins[name].policy
        state = "BLOCKED" if tries == 0 else f"{tries} {'try' if tries == 1 else 'tries'} left"
        shell.print(f"{name:<7} {policy.label:<26} {state} (of {policy.max_tries})")
        texts.append(f"{name}={tries}")
    return Outcome(None, " ".join(texts))


def pin_ref(shell: Shell, name: str) -> PinRef:
    """The card's PIN ``name``; a one-line error naming the card's PINs when it has none."""
    ref = shell.profile.pins.get(name)
    if ref is None:
        names = ", ".join(shell.profile.pins)
        raise ShellError(f"no PIN {name!r} on this card ({names})")
    return ref


def secret(shell: Shell, given: str | None, what: str) -> str:
    if given is not None:
        return given
    if shell.ask_secret is None:
        raise ShellError(f"{what} needed (give it on the line in scripts)")
    return shell.ask_secret(f"{what}: ")


def _verify_setup(p: ShellArgParser) -> None:
    p.add_argument("which", help="a PIN of the card (JPKI card: auth, sign, helper, juki "
                                 "(住基AP) or common (共通AP))")
    p.add_argument("pin", nargs="?", help="the PIN (asked for, hidden, when left out)")


@command("verify", "VERIFY a PIN; a wrong one shows the tries left",
         setup=_verify_setup, positional=[_pin_names])
def do_verify(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    pin_ref(shell, args.which)
    pin = secret(shell, args.pin, f"{args.which} PIN")
    shell.client.verify_pin(args.which, pin)
    shell.print(f"{args.which} PIN verified")
    return Outcome(None, "verified")


def _change_pin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", help="a PIN of the card (JPKI card: auth, sign, helper, juki, "
                                 "common; juki and common change with JICSAP CHANGE KEY)")
    p.add_argument("values", nargs="*", metavar="PIN",
                   help="OLD NEW (VERIFY OLD first), or NEW alone when already verified")


@command("change-pin", "set a new PIN (OLD NEW, or NEW after verify), with the card's command",
         setup=_change_pin_setup, positional=[_pin_names])
def do_change_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if len(args.values) > 2:
        raise ShellError("change-pin: give OLD NEW, or NEW alone")
    old: str | None = args.values[0] if len(args.values) == 2 else None
    policy = pin_ref(shell, args.which).policy
    new = args.values[-1] if args.values else secret(shell, None, f"new {args.which} PIN")
    try:
        policy.check(new)
    except ValueError as exc:
        raise ShellError(str(exc)) from None
    shell.client.change_pin(args.which, new, old=old)
    shell.print(f"{args.which} PIN changed")
    return Outcome(None, "changed")




# ================================================================ records, data objects, challenges


def _read_record_setup(p: ShellArgParser) -> None:
    p.add_argument("record", nargs="?", default="1", help="record number, 1..255 (default 1)")
    p.add_argument("--sfi", metavar="N",
                   help="short EF identifier (1..30): READ RECORD names the EF itself "
                        "(P2 = N<<3|4), no SELECT; default: the current EF")


@command("read-record", "READ RECORD of the current EF, or of a short EF id (--sfi)",
         setup=_read_record_setup)
def do_read_record(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    number = _number(args.record, "record")
    sfi = _number(args.sfi, "--sfi") if args.sfi is not None else None
    if not 1 <= number <= 255:
        raise ShellError("record must be 1..255")
    if sfi is not None and not 1 <= sfi <= 30:
        raise ShellError("--sfi must be 1..30")
    data = shell.client.read_record(number, sfi=sfi)
    for line in render.hexdump(data, prefix="  "):
        shell.print(line)
    for line in render.decode_record(data):
        shell.print("  " + line)
    where = f" of SFI {sfi}" if sfi else ""
    shell.print(f"record {number}{where}: {len(data)} bytes")
    return Outcome(None, data.hex().upper())


#: GET DATA tags the shell completes, with what they are (a profile may know more)
DATA_TAGS = {
    "5F51": "contact ATR (without TS)",
    "0042": "issuer identification",
    "0045": "card identification number",
    "0066": "card recognition data",
    "00F0": "municipality code",
    "00F2": "expiry date",
    "00F7": "key id of the intermediate CV key",
    "00F8": "CV certificate (upper)",
    "7F21": "CV certificate (lower)",
}


def _get_data_setup(p: ShellArgParser) -> None:
    p.add_argument("tag", metavar="TAG",
                   help="the data object's tag, 4 hex digits (P1 P2), e.g. 5F51, 00F0, 00F8")


@command("get-data", "GET DATA of a tag (extended Le when the short one is refused)",
         setup=_get_data_setup, positional=[list(DATA_TAGS)])
def do_get_data(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    text = args.tag.upper().removeprefix("0X")
    if not re.fullmatch(r"[0-9A-F]{1,4}", text):
        raise ShellError(f"get-data: {args.tag!r} is not a tag of 4 hex digits")
    tag = int(text, 16)
    data = shell.client.get_data(tag)
    for line in render.hexdump(data, prefix="  "):
        shell.print(line)
    for line in render.decode_data(data, shell.target.now()):
        shell.print("  " + line)
    name = DATA_TAGS.get(f"{tag:04X}")
    shell.print(f"{tag:04X}{' (' + name + ')' if name else ''}: {len(data)} bytes")
    return Outcome(None, data.hex().upper())


def _challenge_setup(p: ShellArgParser) -> None:
    p.add_argument("length", nargs="?", default="8", help="bytes, 1..256 (default 8)")


@command("challenge", "GET CHALLENGE: random bytes from the card (1..256)",
         setup=_challenge_setup)
def do_challenge(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    n = _number(args.length, "length")
    if not 1 <= n <= 256:
        raise ShellError("length must be 1..256")
    data = shell.client.get_challenge(n)
    for line in render.hexdump(data, prefix="  "):
        shell.print(line)
    shell.print(f"{n} random bytes")
    return Outcome(None, data.hex().upper())
