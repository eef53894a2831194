"""The shell's commands, in the card's own terms.

Each command prints what it did and returns an :class:`Outcome` (the status
word and the text ``--expect-data`` is matched against). Card errors raise
:class:`~jpki_sim.errors.ApduError` / ``PinError``; the interpreter prints them
as one line and checks expectations against their status word.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from jpki_sim.iso7816.sw import describe
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.shell import render
from jpki_sim.shell.apdu_text import ApduTextError, parse_apdu_text
from jpki_sim.shell.registry import (
    COMMANDS,
    PATHS,
    CommandSpec,
    Outcome,
    ShellArgParser,
    ShellError,
    command,
    lookup,
)

if TYPE_CHECKING:
    from jpki_sim.shell.session import Shell

#: EF names the shell knows, per application, for ``select`` and completion
EF_NAMES: dict[str, dict[str, int]] = {
    "jpki": {
        "sign-cert": jpki.EF_SIGN_CERT,
        "sign-ca": jpki.EF_SIGN_CA_CERT,
        "token-info": jpki.EF_TOKEN_INFO,
        "cert-presence": jpki.EF_CERT_PRESENCE,
        "auth-cert": jpki.EF_AUTH_CERT,
        "auth-ca": jpki.EF_AUTH_CA_CERT,
        "auth-key": jpki.EF_AUTH_KEY,
        "auth-pin": jpki.EF_AUTH_PIN,
        "sign-key": jpki.EF_SIGN_KEY,
        "sign-pin": jpki.EF_SIGN_PIN,
    },
    "helper": {
        "my-number": jpki.EF_HELPER_MY_NUMBER,
        "basic-info": jpki.EF_HELPER_BASIC_INFO,
        "helper-pin": jpki.EF_HELPER_PIN,
        "pin-a": jpki.EF_HELPER_PIN_A,
        "pin-b": jpki.EF_HELPER_PIN_B,
    },
}
CERT_NAMES = list(jpki.CERT_EFS)
PIN_NAMES = list(jpki.PIN_EFS)
KEY_NAMES = list(jpki.KEY_EFS)
HASHES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
SEX_TEXT = {"1": "male", "2": "female", "9": "not applicable", "0": "not known"}


def _select_targets(shell: Shell) -> list[str]:
    return shell.application_names() + shell.ef_names()


# ================================================================ general


def _help_setup(p: ShellArgParser) -> None:
    p.add_argument("topic", nargs="?", help="a command")


@command("help", "list the commands, or show one command's help", card=False,
         aliases=("?",), setup=_help_setup, positional=[lambda s: sorted(COMMANDS)])
def do_help(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if args.topic:
        spec = lookup(args.topic)
        if spec is None:
            raise ShellError(f"no command {args.topic!r}")
        text = spec.parser.format_help().rstrip()
        shell.print(text.replace("usage: ", "usage: ", 1))
        if spec.aliases:
            shell.print(f"aliases: {', '.join(spec.aliases)}")
        if spec.admin:
            shell.print("(admin verb: emulated cards only)")
        return None
    groups = [
        ("card", [n for n, s in COMMANDS.items() if s.card and not s.admin]),
        ("admin (emulated cards)", [n for n, s in COMMANDS.items() if s.admin]),
        ("shell", [n for n, s in COMMANDS.items() if not s.card and not s.admin]),
    ]
    for title, names in groups:
        shell.print(f"{title}:")
        for n in names:
            shell.print(f"  {n:<13} {COMMANDS[n].summary}")
    shell.print("A line of hex (or the short form INS P1P2:DATA/LE) is sent as an APDU.")
    shell.print("'help COMMAND' for details; Tab completes commands and card names.")
    return None


@command("exit", "leave the shell", card=False, aliases=("quit",))
def do_exit(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.shell.session import QuitShell

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
    from jpki_sim.trace.model import TraceWriter

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
    from jpki_sim.trace.model import describe_command, redact_command

    try:
        command_bytes = parse_apdu_text(" ".join(args.hex), raw=args.raw)
    except ApduTextError as exc:
        raise ShellError(str(exc)) from None
    client = shell.client
    if client.mode == "auto":
        from jpki_sim.errors import ApduError

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


# ================================================================ JPKI verbs


def _select_setup(p: ShellArgParser) -> None:
    p.add_argument("target", metavar="jpki|helper|EF-NAME|FID|AID",
                   help="an application (jpki, helper), an EF name (auth-cert, sign-pin, ...), "
                        "a 4-digit FID under the current application, or an AID in hex")


@command("select", "SELECT an application (jpki, helper, AID) or an EF (name or FID)",
         setup=_select_setup, positional=[_select_targets])
def do_select(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    client = shell.client
    target = args.target.lower()
    if target in jpki.APPLICATIONS:
        client.select_aid(jpki.APPLICATIONS[target])
        shell.print(f"selected application {target}")
        return Outcome(text=target)
    for app, table in EF_NAMES.items():
        if target in table:
            if client.view.application_name != app:
                client.select_aid(jpki.APPLICATIONS[app])
            client.select_ef(table[target])
            shell.print(f"selected {app} EF {table[target]:04X} ({target})")
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
    from jpki_sim.errors import ApduError

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


def _read_cert_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=CERT_NAMES, help="auth, sign, auth-ca or sign-ca")
    p.add_argument("--out", metavar="FILE", help="also save the certificate (DER, or PEM)")
    p.add_argument("--pem", action="store_true", help="save as PEM instead of DER")


@command("read-cert", "read a certificate like OpenSC does and show who, serial, validity",
         setup=_read_cert_setup, positional=[CERT_NAMES])
def do_read_cert(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    der = shell.client.read_certificate(args.which)
    summary = render.certificate_summary(der, shell.target.now())
    shell.print(f"{args.which} certificate, {len(der)} bytes")
    if summary is None:
        shell.print("  (not a parsable X.509 certificate)")
        for line in render.hexdump(der[:64], prefix="  "):
            shell.print(line)
    else:
        for line in summary:
            shell.print("  " + line)
    if args.out:
        out = der
        if args.pem:
            import base64

            b64 = base64.encodebytes(der).decode().replace("\n", "")
            body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
            out = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode()
        try:
            Path(args.out).write_bytes(out)
        except OSError as exc:
            raise ShellError(f"{args.out}: {exc.strerror}") from None
        shell.print(f"saved to {args.out}")
    return Outcome(None, "\n".join(summary or []))


def _pin_status_setup(p: ShellArgParser) -> None:
    p.add_argument("which", nargs="*", metavar="auth|sign|helper|all",
                   help="the PINs to query (default: those of the current application, "
                        "all three when none is selected; querying a PIN of another "
                        "application selects it, which drops the verified PINs)")


@command("pin-status", "tries left of PINs (SELECT the PIN EF, empty VERIFY); default: this app's",
         setup=_pin_status_setup, positional=[PIN_NAMES + ["all"]] * 3)
def do_pin_status(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    unknown = [n for n in args.which if n not in PIN_NAMES and n != "all"]
    if unknown:
        raise ShellError(f"pin-status: no PIN {unknown[0]!r} (auth, sign, helper or all)")
    names = [n for n in args.which if n != "all"]
    if not names:
        current = shell.client.view.application
        names = [n for n, (aid, _fid) in jpki.PIN_EFS.items() if aid == current] or PIN_NAMES
        if "all" in args.which:
            names = PIN_NAMES
    texts = []
    for name in names:
        tries = shell.client.pin_status(name)
        policy = jpki.PIN_POLICIES[name]
        state = "BLOCKED" if tries == 0 else f"{tries} {'try' if tries == 1 else 'tries'} left"
        shell.print(f"{name:<7} {policy.label:<26} {state} (of {policy.max_tries})")
        texts.append(f"{name}={tries}")
    return Outcome(None, " ".join(texts))


def _secret(shell: Shell, given: str | None, what: str) -> str:
    if given is not None:
        return given
    if shell.ask_secret is None:
        raise ShellError(f"{what} needed (give it on the line in scripts)")
    return shell.ask_secret(f"{what}: ")


def _verify_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=PIN_NAMES, help="auth, sign or helper")
    p.add_argument("pin", nargs="?", help="the PIN (asked for, hidden, when left out)")


@command("verify", "VERIFY a PIN; a wrong one shows the tries left",
         setup=_verify_setup, positional=[PIN_NAMES])
def do_verify(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    pin = _secret(shell, args.pin, f"{args.which} PIN")
    shell.client.verify_pin(args.which, pin)
    shell.print(f"{args.which} PIN verified")
    return Outcome(None, "verified")


def _change_pin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=PIN_NAMES, help="auth, sign or helper")
    p.add_argument("values", nargs="*", metavar="PIN",
                   help="OLD NEW (VERIFY OLD first), or NEW alone when already verified")


@command("change-pin", "CHANGE REFERENCE DATA: set a new PIN (OLD NEW, or NEW after verify)",
         setup=_change_pin_setup, positional=[PIN_NAMES])
def do_change_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if len(args.values) > 2:
        raise ShellError("change-pin: give OLD NEW, or NEW alone")
    old: str | None = args.values[0] if len(args.values) == 2 else None
    new = args.values[-1] if args.values else _secret(shell, None, f"new {args.which} PIN")
    try:
        jpki.PIN_POLICIES[args.which].check(new)
    except ValueError as exc:
        raise ShellError(str(exc)) from None
    shell.client.change_pin(args.which, new, old=old)
    shell.print(f"{args.which} PIN changed")
    return Outcome(None, "changed")


def _sign_setup(p: ShellArgParser) -> None:
    p.add_argument("input", metavar="FILE|TEXT",
                   help="a file to sign, else the text itself (UTF-8)")
    p.add_argument("--key", choices=KEY_NAMES, default="auth", help="auth (default) or sign")
    p.add_argument("--hash", choices=sorted(HASHES), default="sha256", help="default sha256")
    p.add_argument("--scheme", type=int, choices=range(6), default=0, metavar="0-5",
                   help="P1: 0 DigestInfo + PKCS#1 v1.5 (default, as OpenSC), 1 card hashes, "
                        "bare hash; 2 card wraps the hash; 3 card hashes + DigestInfo; "
                        "4 PSS over the hash; 5 card hashes + PSS")
    p.add_argument("--text", action="store_true", help="sign the argument as text even if a "
                                                       "file of that name exists")
    p.add_argument("--out", metavar="FILE", help="save the 256-byte signature")


@command("sign", "COMPUTE DIGITAL SIGNATURE over a file or text, then check it with the cert",
         setup=_sign_setup, positional=[PATHS])
def do_sign(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.profiles.jpki.signing import digest_info

    path = Path(args.input)
    if not args.text and path.is_file():
        message = path.read_bytes()
        source = f"file {args.input} ({len(message)} bytes)"
    else:
        message = args.input.encode("utf-8")
        source = f"text ({len(message)} bytes)"
    if args.scheme in (1, 2, 3, 4, 5) and args.hash != "sha256":
        raise ShellError("schemes 1-5 use SHA-256 only")
    digest = hashlib.new(args.hash, message).digest()
    if args.scheme == 0:
        data = digest_info(args.hash, digest)
    elif args.scheme in (2, 4):
        data = digest
    else:
        if len(message) > 255:
            raise ShellError(f"schemes 1, 3 and 5 send the message itself: at most 255 bytes, "
                             f"this is {len(message)}")
        data = message
    shell.print(f"signing {source} with the {args.key} key, {args.hash}, scheme {args.scheme}")
    signature = shell.client.sign(args.key, data, scheme=args.scheme)
    sign_sw = shell.client.last_exchanges[-1].sw if shell.client.last_exchanges else None
    for line in render.hexdump(signature, prefix="  "):
        shell.print(line)
    verdict = _check_signature(shell, args.key, signature, digest, args.scheme, args.hash)
    shell.print(verdict)
    if args.out:
        try:
            Path(args.out).write_bytes(signature)
        except OSError as exc:
            raise ShellError(f"{args.out}: {exc.strerror}") from None
        shell.print(f"saved to {args.out}")
    return Outcome(sign_sw, signature.hex().upper())


def _check_signature(
    shell: Shell, key: str, signature: bytes, digest: bytes, scheme: int, hash_name: str
) -> str:
    """Verify with the certificate read back from the card (its public key)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    from jpki_sim.errors import ApduError

    # the certificate read-back is a check of ours, not part of the signing: not shown
    shown = shell.show_apdus
    shell.show_apdus = False
    try:
        der = shell.client.read_certificate(key)
        public = x509.load_der_x509_certificate(der).public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("the certificate's key is not RSA")
    except (ApduError, ValueError) as exc:
        return f"(could not read the {key} certificate to check the signature: {exc})"
    finally:
        shell.show_apdus = shown
    algo = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
            "sha512": hashes.SHA512()}[hash_name]
    try:
        if scheme == 1:
            recovered = public.recover_data_from_signature(signature, padding.PKCS1v15(), None)
            if recovered != digest:
                raise InvalidSignature()
        elif scheme in (4, 5):
            public.verify(signature, digest,
                          padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                      salt_length=padding.PSS.AUTO),
                          utils.Prehashed(algo))
        else:
            public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(algo))
    except InvalidSignature:
        return f"signature does NOT verify with the {key} certificate (read back from the card)"
    return f"signature verifies with the {key} certificate (read back from the card)"


@command("my-number", "read the My Number from the helper application (needs the helper PIN)")
def do_my_number(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    number = shell.client.my_number()
    shell.print(f"My Number  {number[:4]} {number[4:8]} {number[8:]}")
    return Outcome(None, number)


@command("basic-info", "read name, address, birth date and sex (helper PIN needed)")
def do_basic_info(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    info = shell.client.basic_info()
    born = info.birth_date
    shell.print(f"name        {info.name}")
    shell.print(f"address     {info.address}")
    shell.print(f"birth date  {born.isoformat() if born else info.birthdate}")
    shell.print(f"sex         {info.sex} ({SEX_TEXT.get(info.sex, 'unknown code')})")
    return Outcome(None, f"{info.name}\n{info.address}\n{info.birthdate}\n{info.sex}")


@command("token-info", "the token label in EF 0006 (JPKIAPICCTOKEN2 on a My Number card)")
def do_token_info(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    label = shell.client.token_label()
    presence = shell.client.certificate_presence()
    shell.print(f"token label   {label}")
    has_sign = presence[:1] == b"\x8f"
    has_auth = presence[1:2] == b"\x8f"
    shell.print(f"certificates  {render.spaced(presence)} (sign {'yes' if has_sign else 'no'}, "
                f"auth {'yes' if has_auth else 'no'})")
    return Outcome(None, label)


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


# ================================================================ admin verbs (emulated)


def _power_setup(p: ShellArgParser) -> None:
    p.add_argument("state", choices=("on", "off"))


@command("power", "power the emulated card off or on (a cold reset)", card=False, admin=True,
         setup=_power_setup, positional=[("on", "off")])
def do_power(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    target = shell.target
    if args.state == "off":
        target.power_off()
        shell.client.forget()
        if shell.trace is not None:
            shell.trace.power_off()
        shell.print("card powered off")
        return None
    atr = target.power_on()
    shell.client.forget()
    if shell.trace is not None:
        shell.trace.reset(atr, "cold")
    shell.print(f"card powered on, ATR {render.spaced(atr)}")
    return Outcome(None, atr.hex().upper())


def _clock_setup(p: ShellArgParser) -> None:
    p.add_argument("action", nargs="?", choices=("set", "now"))
    p.add_argument("date", nargs="?", help="YYYY-MM-DD")


@command("clock", "show the card clock, 'clock set YYYY-MM-DD', or 'clock now'", card=False,
         setup=_clock_setup, positional=[("set", "now")])
def do_clock(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    target = shell.target
    if args.action == "set":
        if not args.date:
            raise ShellError("clock set: a date YYYY-MM-DD is needed")
        try:
            target.clock_date = date.fromisoformat(args.date)
        except ValueError:
            raise ShellError(f"clock set: {args.date!r} is not a YYYY-MM-DD date") from None
    elif args.action == "now":
        target.clock_date = None
    elif args.date:
        raise ShellError("clock: use 'clock set YYYY-MM-DD'")
    day = target.today().isoformat()
    shell.print(f"card clock {day}" + ("" if target.clock_date else " (machine clock)"))
    return Outcome(None, day)


def _pin_admin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=PIN_NAMES)


@command("block-pin", "set a PIN's retry counter to 0 (emulated card)", card=False, admin=True,
         setup=_pin_admin_setup, positional=[PIN_NAMES])
def do_block_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    shell.target.pin(args.which).block()
    shell.client.view.verified.discard(args.which)
    shell.print(f"{args.which} PIN blocked (tries left: 0)")
    return None


def _reset_pin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=PIN_NAMES)
    p.add_argument("new", nargs="?", help="a new PIN value (default: keep the old one)")


@command("reset-pin", "unblock a PIN at the counter: tries back to max, optionally a new value",
         card=False, admin=True, setup=_reset_pin_setup, positional=[PIN_NAMES])
def do_reset_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    if args.new is not None:
        try:
            jpki.PIN_POLICIES[args.which].check(args.new)
        except ValueError as exc:
            raise ShellError(str(exc)) from None
    _reset_pin(shell, args.which, args.new)
    pin = shell.target.pin(args.which)
    shell.print(f"{args.which} PIN reset (tries left: {pin.tries_left})"
                + (", new value set" if args.new else ""))
    return None


def _reset_pin(shell: Shell, which: str, new: str | None) -> None:
    if new is not None and shell.target.store is not None:
        # the counter's "initialise the PIN and set a new one"; the card's PIN
        # objects share the state, so the chip sees it at once
        from jpki_sim.issuer import counter as issuer

        issuer.reset_pin(shell.target.store, which, new)
        return
    # counter back to its maximum, same value: the chip's own PIN object does it
    shell.target.pin(which).unblock(None)


def _rebuild(shell: Shell) -> None:
    atr = shell.target.rebuild()
    shell.client.forget()
    if shell.trace is not None:
        shell.trace.reset(atr, "cold")


def _renew_setup(p: ShellArgParser) -> None:
    p.add_argument("--auth-pin", metavar="PIN", help="the current auth PIN (asked when needed)")
    p.add_argument("--sign-pin", metavar="PIN",
                   help="the current sign password (asked when needed)")


@command("renew", "renew the due certificates at the card clock's date (emulated card)",
         card=False, admin=True, setup=_renew_setup)
def do_renew(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.lifecycle import clock_at

    target = shell.target
    if target.store is None:
        raise ShellError("'renew' works on emulated cards only, not on a reader")
    today = target.today()
    due = issuer.renewal_due(target.store.state, today)
    given = {"auth": args.auth_pin, "sign": args.sign_pin}
    pins: dict[str, str] = {}
    for which, d in due.items():
        if d.due:
            pins[which] = _secret(shell, given[which], f"current {which} PIN")
    result = issuer.renew(target.store, pins=pins, clock=clock_at(today))
    _rebuild(shell)
    for which, slot in result.renewed.items():
        shell.print(f"{which} certificate renewed ({result.kinds.get(which, 'due')}): "
                    f"valid {slot.not_before} to {slot.expires}")
    for serial in result.revoked:
        shell.print(f"old certificate {serial:X} revoked at the CA")
    shell.print("the card was power-cycled with its new certificates")
    return Outcome(None, " ".join(sorted(result.renewed)))
