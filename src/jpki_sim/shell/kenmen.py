"""Shell verbs of the 券面 applications: the 照合番号, the helper's data, the card face.

``verify-code-a`` / ``verify-code-b`` / ``verify-birthdate`` present what the card
face shows; ``read-helper --with pin|a|b`` and ``read-face`` read everything the
credential opens, decode it, check every signature (against the key the
application's EF 0004 certifies, and EF 0004 against the test CV root: the
emulated card's own CA, or ``--roots FILE`` from ``jpki-sim ca export-cv``), and
``read-face`` saves the images. Joined to the JPKI verbs by :mod:`.jpki`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jpki_sim.iso7816.errors import ApduError
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.jpki import cv_verify
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client_kenmen import KenmenClient
from jpki_sim.shell.registry import PATHS, Outcome, ShellArgParser, ShellError, VerbSet
from jpki_sim.shell.verbs import secret

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from jpki_sim.shell.session import Shell

VERBS = VerbSet()
command = VERBS.command

SEX_TEXT = {"1": "male", "2": "female", "9": "not applicable", "0": "not known"}
#: the images read-face saves: file stem, extension
IMAGE_FILES = {"name": "png", "address": "png", "photo": "jp2", "security-code": "png",
               "my-number": "png"}


def _client(shell: Shell) -> KenmenClient:
    client = shell.client
    if not isinstance(client, KenmenClient):
        raise ShellError("this verb needs a JPKI card's client")
    return client


# ---------------------------------------------------------------- the 照合番号


def _app_of(shell: Shell, given: str | None) -> str:
    if given is not None:
        return given
    return "helper" if shell.client.view.application == jpki.HELPER_AID else "surface"


def _code_setup(p: ShellArgParser) -> None:
    p.add_argument("code", nargs="?", help="the value (asked for, hidden, when left out)")
    p.add_argument("--app", choices=("surface", "helper"),
                   help="the application (default: the helper AP when it is current, "
                        "else the surface AP)")


def _verify(shell: Shell, key: str, value: str | None, label: str) -> Outcome:
    shell.client.verify_pin(key, secret(shell, value, label))
    app = "helper" if key.startswith("helper") else "surface"
    shell.print(f"{label} verified ({app} AP, key {jpki.CODE_EFS[key][1]:04X})")
    return Outcome(None, "verified")


@command("verify-code-a", "VERIFY 照合番号A (the My Number) in the surface or helper AP",
         setup=_code_setup)
def do_verify_code_a(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    return _verify(shell, f"{_app_of(shell, args.app)}-a", args.code, "照合番号A")


@command("verify-code-b", "VERIFY 照合番号B (era birth date + expiry year + security code)",
         setup=_code_setup)
def do_verify_code_b(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    return _verify(shell, f"{_app_of(shell, args.app)}-b", args.code, "照合番号B")


def _birthdate_setup(p: ShellArgParser) -> None:
    p.add_argument("code", nargs="?", metavar="YYMMDD",
                   help="the birth date as era YYMMDD (asked for when left out)")


@command("verify-birthdate", "VERIFY the birth date (era YYMMDD) in the surface AP: opens the "
         "age record", setup=_birthdate_setup)
def do_verify_birthdate(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    return _verify(shell, "birthdate", args.code, "birth date")


# ---------------------------------------------------------------- trust


def _roots(shell: Shell, path: str | None) -> dict[bytes, Any] | None:
    """The trusted CV roots: ``--roots FILE``, else the emulated card's own test CV CA."""
    raw: bytes | None = None
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ShellError(f"{path}: {exc.strerror}") from None
    else:
        store = shell.target.store
        ca_dir = getattr(store.state, "ca_dir", None) if store is not None else None
        if ca_dir and (Path(ca_dir) / "cv" / "roots.cv").is_file():
            raw = (Path(ca_dir) / "cv" / "roots.cv").read_bytes()
    if raw is None:
        return None
    try:
        return cv_verify.load_roots(raw)
    except cv_verify.VerifyError as exc:
        raise ShellError(f"the CV roots: {exc}") from None


def _certificate(shell: Shell, app: str, roots: dict[bytes, Any] | None) -> rsa.RSAPublicKey:
    from jpki_sim.profiles.jpki.records_cv import key_id_text

    fid = jpki.EF_HELPER_CERTIFICATE if app == "helper" else jpki.EF_SURFACE_CERTIFICATE
    cert = cv_verify.parse_cv(_client(shell).kenmen_read(app, fid))
    if roots is None:
        trust = "no CV root to check it against (give --roots FILE)"
    else:
        try:
            cv_verify.verify_cv_chain([cert], roots)
            trust = "verified against the test CV root"
        except cv_verify.VerifyError as exc:
            trust = f"NOT verified: {exc}"
    shell.print(f"  EF {fid:04X} CV certificate  {key_id_text(cert.issuer_key_id)} -> "
                f"{key_id_text(cert.subject_key_id)}  [{trust}]")
    return cert.public_key


def _verdict(check: Any, *args: Any) -> str:
    try:
        check(*args)
    except cv_verify.VerifyError as exc:
        return f"NOT verified: {exc}"
    return "signature verified"


def _opened(shell: Shell, app: str, fid: int) -> bytes | None:
    """EF ``fid``, or None when the credentials verified so far do not open it (6982)."""
    try:
        return _client(shell).kenmen_read(app, fid)
    except ApduError as exc:
        if exc.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
            shell.print(f"  EF {fid:04X}  not opened by what was verified (6982)")
            return None
        raise


# ---------------------------------------------------------------- read-helper


def _read_helper_setup(p: ShellArgParser) -> None:
    p.add_argument("--with", dest="credential", choices=("pin", "a", "b"), required=True,
                   help="the helper PIN, 照合番号A or 照合番号B")
    p.add_argument("value", nargs="?", help="its value (asked for, hidden, when left out)")
    p.add_argument("--roots", metavar="FILE", help="the CV roots (jpki-sim ca export-cv)")


@command("read-helper", "read the helper AP with the PIN or a 照合番号: everything it opens, "
         "decoded and checked", setup=_read_helper_setup)
def do_read_helper(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.profiles.jpki import records, records_helper
    from jpki_sim.profiles.jpki.records_cv import key_id_text

    client = _client(shell)
    key = {"pin": "helper", "a": "helper-a", "b": "helper-b"}[args.credential]
    label = {"pin": "helper PIN", "a": "照合番号A", "b": "照合番号B"}[args.credential]
    client.verify_pin(key, secret(shell, args.value, label))
    shell.print(f"helper AP (券面事項入力補助AP), {label} verified")
    issuer = _certificate(shell, "helper", _roots(shell, args.roots))
    info = records_helper.decode_helper_ap_info(client.kenmen_read("helper", 0x0005))
    shell.print(f"  EF 0005 basic info  version {info['identification'].hex().upper()}, "
                f"names key {key_id_text(info['key_id'])}")
    lines = []
    my_number_ef = basic_ef = None
    try:
        my_number_ef = client.read_physical(jpki.EF_HELPER_MY_NUMBER)
        number = records.decode_helper_my_number(my_number_ef)
        shell.print(f"  EF 0001 My Number  {number[:4]} {number[4:8]} {number[8:]}")
        lines.append(number)
    except ApduError as exc:
        if exc.sw != SW.SECURITY_STATUS_NOT_SATISFIED:
            raise
        shell.print("  EF 0001  not opened by what was verified (6982)")
    basic_ef = _opened(shell, "helper", jpki.EF_HELPER_BASIC_INFO)
    if basic_ef is not None:
        facts = records.decode_helper_basic_info(basic_ef)
        shell.print(f"  EF 0002 name       {facts['name']}")
        shell.print(f"          address    {facts['address']}")
        shell.print(f"          born       {facts['birthdate_text']}")
        shell.print(f"          sex        {facts['sex']} ({SEX_TEXT.get(facts['sex'], '?')})")
        lines += [facts["name"], facts["address"], facts["birthdate_text"], facts["sex"]]
    integrity = client.kenmen_read("helper", jpki.EF_HELPER_INTEGRITY)
    if my_number_ef is not None and basic_ef is not None:
        verdict = _verdict(cv_verify.verify_integrity, integrity, my_number_ef, basic_ef, issuer)
        what = "signature and both digests"
    else:
        verdict = _verdict(cv_verify.verify_record, integrity, 0xFF30, 0xDF33, issuer)
        what = "signature (the digests need EF 0001 and 0002)"
    shell.print(f"  EF 0003 integrity  {what}: {verdict}")
    session = records_helper.decode_helper_session_key(
        client.kenmen_read("helper", jpki.EF_HELPER_SESSION_KEY))
    shell.print(f"  EF 0006 session key  RSA-{session.modulus.bit_length()}")
    signed = client.kenmen_read("helper", jpki.EF_HELPER_SIGNED_KEY)
    shell.print(f"  EF 0007 signed key  "
                f"{_verdict(cv_verify.verify_record, signed, 0xFF50, 0xDF52, issuer)}")
    card_key = cv_verify.record_key(signed, 0xFF50, 0xDF51)
    lines.append(_challenge(shell, "helper", card_key))
    return Outcome(SW.OK, "\n".join(lines))


def _challenge(shell: Shell, app: str, card_key: rsa.RSAPublicKey) -> str:
    client = _client(shell)
    challenge = client.get_challenge(16)
    signature = client.app_sign(app, challenge)
    verdict = _verdict(cv_verify.verify_challenge, card_key, challenge, signature)
    shell.print(f"  challenge  16 bytes, 80 2A 00 00 by the card's own key: {verdict}")
    return f"challenge {verdict}"


# ---------------------------------------------------------------- read-face


def _read_face_setup(p: ShellArgParser) -> None:
    p.add_argument("--out", metavar="DIR", default=".",
                   help="where to save the images (default: the current folder)")
    p.add_argument("--roots", metavar="FILE", help="the CV roots (jpki-sim ca export-cv)")


def _save(shell: Shell, out: Path, stem: str, data: bytes) -> None:
    from jpki_sim.profiles.jpki.images import image_info

    path = out / f"{stem}.{IMAGE_FILES[stem]}"
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ShellError(f"{path}: {exc.strerror}") from None
    try:
        fmt, mode, (w, h) = image_info(data)
        what = f"{fmt} mode {mode} {w}x{h}"
    except ValueError:
        what = "not an image"
    shell.print(f"          {stem:<14}{what}, {len(data)} bytes -> {path}")


@command("read-face", "read the surface AP (what the verified birth date / 照合番号 open), "
         "check it and save the images", setup=_read_face_setup, positional=[PATHS])
def do_read_face(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    from jpki_sim.profiles.jpki import records_surface as surface
    from jpki_sim.profiles.jpki.records_cv import key_id_text

    out = Path(args.out)
    if not out.is_dir():
        raise ShellError(f"{out}: not a folder")
    client = _client(shell)
    shell.print("surface AP (券面事項確認AP)")
    issuer = _certificate(shell, "surface", _roots(shell, args.roots))
    info = surface.decode_surface_basic_info(client.kenmen_read("surface", jpki.EF_SURFACE_INFO))
    shell.print(f"  EF 0003 basic info  municipality {info['municipality_code']}, names key "
                f"{key_id_text(info['key_id'])}, DF35 {key_id_text(info['reference_key_id'])}")
    lines = [info["municipality_code"]]
    card_key = None
    age = _opened(shell, "surface", jpki.EF_SURFACE_AGE)
    if age is not None:
        record = surface.decode_age_record(age)
        verdict = _verdict(cv_verify.verify_record, age, 0xFF10, 0xDF13, issuer)
        shell.print(f"  EF 0001 age record  born {record['birthdate_text']}: {verdict}")
        card_key = cv_verify.record_key(age, 0xFF10, 0xDF12)
        lines.append(record["birthdate_text"])
    face = _opened(shell, "surface", jpki.EF_SURFACE_FACE)
    if face is not None:
        f = surface.decode_card_face(face)
        verdict = _verdict(cv_verify.verify_card_face, face, issuer)
        shell.print(f"  EF 0002 card face  born {f['birthdate_text']}, sex {f['sex']} "
                    f"({SEX_TEXT.get(f['sex'], '?')}), expires {f['expiry_text']}: {verdict}")
        for stem, key in (("name", "name_png"), ("address", "address_png"), ("photo", "photo"),
                          ("security-code", "security_code_png")):
            _save(shell, out, stem, bytes(f[key]))  # type: ignore[literal-required]
        card_key = cv_verify.record_key(face, 0xFF20, 0xDF24)
        lines += [f["birthdate_text"], f["sex"], f["expiry_text"]]
    image = _opened(shell, "surface", jpki.EF_SURFACE_MY_NUMBER)
    if image is not None:
        verdict = _verdict(cv_verify.verify_record, image, 0xFF40, 0xDF43, issuer)
        shell.print(f"  EF 0005 My Number image: {verdict}")
        _save(shell, out, "my-number", surface.decode_my_number_image(image)["image_png"])
    if card_key is not None:
        lines.append(_challenge(shell, "surface", card_key))
    else:
        shell.print("  challenge  skipped: no record read carries the card's key")
    return Outcome(SW.OK, "\n".join(lines))
