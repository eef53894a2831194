"""The JPKI card's own shell verbs: certificates, signing, the helper application, renewal.

The 券面 applications' verbs (the 照合番号, ``read-helper``, ``read-face``) are
:mod:`.kenmen`'s, joined here.

The JPKI profile names this module as its ``shell`` hook; a shell on a JPKI
card joins :data:`VERBS` with the generic commands of :mod:`.verbs`.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.shell import kenmen, render
from jpki_sim.shell.registry import PATHS, Outcome, ShellArgParser, ShellError, VerbSet
from jpki_sim.shell.verbs import secret

if TYPE_CHECKING:
    from jpki_sim.shell.session import Shell

VERBS = VerbSet()
command = VERBS.command


def jpki_client(shell: Shell) -> JpkiClient:
    """The shell's client as the JPKI card's (the JPKI profile's ``client`` hook made it)."""
    client = shell.client
    if not isinstance(client, JpkiClient):
        raise ShellError("this verb needs a JPKI card's client")
    return client

CERT_NAMES = list(jpki.CERT_EFS)
KEY_NAMES = list(jpki.KEY_EFS)
HASHES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
SEX_TEXT = {"1": "male", "2": "female", "9": "not applicable", "0": "not known"}


def _read_cert_setup(p: ShellArgParser) -> None:
    p.add_argument("which", choices=CERT_NAMES, help="auth, sign, auth-ca or sign-ca")
    p.add_argument("--out", metavar="FILE", help="also save the certificate (DER, or PEM)")
    p.add_argument("--pem", action="store_true", help="save as PEM instead of DER")


@command("read-cert", "read a certificate like OpenSC does and show who, serial, validity",
         setup=_read_cert_setup, positional=[CERT_NAMES])
def do_read_cert(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    der = jpki_client(shell).read_certificate(args.which)
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
    signature = jpki_client(shell).sign(args.key, data, scheme=args.scheme)
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

    from jpki_sim.iso7816.errors import ApduError

    # the certificate read-back is a check of ours, not part of the signing: not shown
    shown = shell.show_apdus
    shell.show_apdus = False
    try:
        der = jpki_client(shell).read_certificate(key)
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
    number = jpki_client(shell).my_number()
    shell.print(f"My Number  {number[:4]} {number[4:8]} {number[8:]}")
    return Outcome(None, number)


@command("basic-info", "read name, address, birth date and sex (helper PIN needed)")
def do_basic_info(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    info = jpki_client(shell).basic_info()
    born = info.birth_date
    shell.print(f"name        {info.name}")
    shell.print(f"address     {info.address}")
    shell.print(f"birth date  {born.isoformat() if born else info.birthdate}")
    shell.print(f"sex         {info.sex} ({SEX_TEXT.get(info.sex, 'unknown code')})")
    return Outcome(None, f"{info.name}\n{info.address}\n{info.birthdate}\n{info.sex}")


@command("token-info", "the token label in EF 0006 (JPKIAPICCTOKEN2 on a My Number card)")
def do_token_info(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    label = jpki_client(shell).token_label()
    presence = jpki_client(shell).certificate_presence()
    shell.print(f"token label   {label}")
    has_sign = presence[:1] == b"\x8f"
    has_auth = presence[1:2] == b"\x8f"
    shell.print(f"certificates  {render.spaced(presence)} (sign {'yes' if has_sign else 'no'}, "
                f"auth {'yes' if has_auth else 'no'})")
    return Outcome(None, label)


@command("card-info", "the card serial, issuing municipality and expiry (共通AP, READ RECORD 1)")
def do_card_info(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.profiles.jpki.municipality import name_of

    info = jpki_client(shell).card_info()
    town = name_of(info["municipality"])
    shell.print(f"card serial   {info['serial']}")
    shell.print(f"municipality  {info['municipality']}" + (f" ({town})" if town else ""))
    shell.print(f"card expires  {info['expires']}")
    return Outcome(None, f"{info['serial']} {info['municipality']} {info['expires']}")


def _common_auth_setup(p: ShellArgParser) -> None:
    p.add_argument("challenge", nargs="?", metavar="HEX",
                   help="the challenge (1..255 bytes of hex; default: 16 bytes from GET "
                        "CHALLENGE)")


@command("common-auth", "INTERNAL AUTHENTICATE with the 共通AP key 0019 (no PIN needed)",
         setup=_common_auth_setup)
def do_common_auth(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.iso7816.apdu import parse_hex

    client = jpki_client(shell)
    if args.challenge is None:
        challenge = client.get_challenge(16)
    else:
        try:
            challenge = parse_hex(args.challenge, "challenge")
        except ValueError as exc:
            raise ShellError(str(exc)) from None
        if not 1 <= len(challenge) <= 255:
            raise ShellError("a challenge is 1 to 255 bytes")
    shell.print(f"challenge {challenge.hex().upper()}")
    signature = client.common_authenticate(challenge)
    for line in render.hexdump(signature, prefix="  "):
        shell.print(line)
    shell.print(f"{len(signature)}-byte signature (sha256WithRSAEncryption over the challenge; "
                "the key's public half is on no EF)")
    return Outcome(None, signature.hex().upper())


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
            pins[which] = secret(shell, given[which], f"current {which} PIN")
    result = issuer.renew(target.store, pins=pins, clock=clock_at(today))
    _rebuild(shell)
    for which, slot in result.renewed.items():
        shell.print(f"{which} certificate renewed ({result.kinds.get(which, 'due')}): "
                    f"valid {slot.not_before} to {slot.expires}")
    for serial in result.revoked:
        shell.print(f"old certificate {serial:X} revoked at the CA")
    shell.print("the card was power-cycled with its new certificates")
    return Outcome(None, " ".join(sorted(result.renewed)))


# the 券面 applications' verbs
VERBS.commands.update(kenmen.VERBS.commands)
VERBS.aliases.update(kenmen.VERBS.aliases)
