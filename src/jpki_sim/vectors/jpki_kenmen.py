"""The 券面 applications' vector checks (registered with the JPKI card's, by :mod:`.jpki`).

Each checks a signature or a digest against what the card under test is known to
be: its test CV CA's roots, the key its application's EF 0004 certifies, its own
keys (emulated cards: ``CardFacts.kenmen``, from the card state; against a card in
a reader these facts are unknown and the checks say so, so the vectors using them
are marked ``emulated``).

=========================== ==================================================
``cv-ef:APP``               EF 0004 of ``helper``/``surface``: the card's CV certificate
                            (7F21 template), issued by that application's test CV root
``signed-record:APP``       a record of that application (integrity record, signed key,
                            age record, card face, My Number image) whose signature
                            verifies with the key EF 0004 certifies
``integrity``               helper EF 0003: the signature, and both digests match the
                            card's EF 0001 (as stored) and EF 0002 (after its offsets)
``app-signature:APP``       256 bytes: PKCS#1 v1.5 over the command's data (a DigestInfo)
                            by the application's own key (helper 0013, surface 001A)
=========================== ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jpki_sim.vectors.checks import CheckContext, register

PROFILE = "jpki"
APPS = ("helper", "surface")
#: the record layouts: outer tag -> signature tag (the card face is signed otherwise)
SIGNED_RECORDS = {0xFF30: 0xDF33, 0xFF50: 0xDF52, 0xFF10: 0xDF13, 0xFF40: 0xDF43}
ROOT_IDS = {"helper": b"9000033\x08\x05001\x00\x00\x00\x00",
            "surface": b"9000023\x08\x05001\x00\x00\x00\x00"}


@dataclass
class KenmenFacts:
    """What the checks know of an emulated card's 券面 applications."""

    roots: bytes  # the test CV CA's self-signed roots (what ca export-cv writes)
    efs: dict[str, dict[int, bytes]]  # the EFs as stored, by application and FID
    card_keys: dict[str, str]  # PEM of the applications' own keys


def kenmen_facts(state: Any) -> KenmenFacts | None:
    """The facts of a card state, or None (no 券面 data, or its CV CA is not at hand)."""
    from pathlib import Path

    from jpki_sim.profiles.jpki import records

    kenmen = getattr(state, "kenmen", None)
    roots_file = Path(state.ca_dir or "") / "cv" / "roots.cv"
    if kenmen is None or not state.ca_dir or not roots_file.is_file():
        return None
    ident = state.identity
    helper = dict(kenmen.efs["helper"])
    helper[0x0001] = records.encode_helper_my_number(ident.my_number)
    helper[0x0002] = records.encode_helper_basic_info(
        name=ident.name, address=ident.address, birthdate=ident.birthdate, sex=ident.sex)
    return KenmenFacts(roots_file.read_bytes(), {"helper": helper,
                                                 "surface": dict(kenmen.efs["surface"])},
                       {"helper": kenmen.keys["helper"], "surface": kenmen.keys["surface"]})


def _facts(ctx: CheckContext) -> KenmenFacts | str:
    facts = getattr(ctx.facts, "kenmen", None)
    if facts is None:
        return "the card's CV roots and 券面 data are not known (emulated cards only)"
    assert isinstance(facts, KenmenFacts)
    return facts


def _issuer_key(facts: KenmenFacts, app: str) -> Any:
    from jpki_sim.profiles.jpki import cv_verify

    roots = cv_verify.load_roots(facts.roots)
    return cv_verify.verify_cv_chain([facts.efs[app][0x0004]], roots)


def _cv_ef(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki import cv_verify

    assert arg is not None
    facts = _facts(ctx)
    if isinstance(facts, str):
        return facts
    try:
        if ctx.data[:2] != b"\x7f\x21":
            return "not a CV certificate with its 7F21 template"
        cert = cv_verify.parse_cv(ctx.data)
        if cert.issuer_key_id != ROOT_IDS[arg]:
            return f"issued by {cert.issuer_key_id!r}, not the {arg} root"
        cv_verify.verify_cv_chain([cert], cv_verify.load_roots(facts.roots))
    except cv_verify.VerifyError as exc:
        return str(exc)
    if ctx.data.rstrip(b"\xff") != facts.efs[arg][0x0004]:
        return f"a CV certificate, but not the card's {arg} EF 0004"
    return None


def _signed_record(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki import cv_verify

    assert arg is not None
    facts = _facts(ctx)
    if isinstance(facts, str):
        return facts
    try:
        key = _issuer_key(facts, arg)
        outer = int.from_bytes(ctx.data[:2], "big")
        if outer == 0xFF20:
            cv_verify.verify_card_face(ctx.data, key)
        elif outer in SIGNED_RECORDS:
            cv_verify.verify_record(ctx.data, outer, SIGNED_RECORDS[outer], key)
        else:
            return f"not a signed record of the card ({outer:04X})"
    except cv_verify.VerifyError as exc:
        return str(exc)
    return None


def _integrity(ctx: CheckContext, arg: str | None) -> str | None:
    from jpki_sim.profiles.jpki import cv_verify

    facts = _facts(ctx)
    if isinstance(facts, str):
        return facts
    helper = facts.efs["helper"]
    try:
        cv_verify.verify_integrity(ctx.data, helper[0x0001], helper[0x0002],
                                   _issuer_key(facts, "helper"))
    except cv_verify.VerifyError as exc:
        return str(exc)
    return None


def _app_signature(ctx: CheckContext, arg: str | None) -> str | None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from jpki_sim.iso7816.apdu import CommandApdu

    assert arg is not None
    facts = _facts(ctx)
    if isinstance(facts, str):
        return facts
    apdu = CommandApdu.parse(ctx.command)
    if apdu.p1 != 0x00:
        return f"scheme {apdu.p1:02X}: the check knows P1 00 (PKCS#1 v1.5 over the data)"
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = load_pem_private_key(facts.card_keys[arg].encode(), password=None,
                                   unsafe_skip_rsa_key_validation=True)
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.public_key().public_numbers()
    k = (numbers.n.bit_length() + 7) // 8
    if len(ctx.data) != k:
        return f"{len(ctx.data)} bytes, want a {k}-byte signature"
    em = pow(int.from_bytes(ctx.data, "big"), numbers.e, numbers.n).to_bytes(k, "big")
    want = b"\x00\x01" + b"\xff" * (k - 3 - len(apdu.data)) + b"\x00" + apdu.data
    return None if em == want else f"does not verify with the {arg} application's key"


register("cv-ef", _cv_ef, APPS, PROFILE)
register("signed-record", _signed_record, APPS, PROFILE)
register("integrity", _integrity, None, PROFILE)
register("app-signature", _app_signature, APPS, PROFILE)
