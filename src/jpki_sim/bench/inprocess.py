"""The card under test, measured in this process: its APDUs, its signature vs bare cryptography."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import ISSUED, BenchError, Figure, Progress, Settings, timed

# ---------------------------------------------------------------- the card under test

#: the commands measured, as (name, what it is)
COMMANDS = {
    "select_fid": "SELECT EF by FID (00 A4 02 0C 02 000A)",
    "select_aid": "SELECT JPKI AP by AID (00 A4 04 0C 0A ...)",
    "read_binary_256": "READ BINARY 256 bytes (00 B0 01 00 00)",
    "cert_read": "auth certificate, OpenSC style: SELECT, 4-byte header, 256-byte chunks",
    "empty_verify": "empty VERIFY, retry counter query (00 20 00 80)",
    "verify_memory": "VERIFY auth PIN, in-memory card store",
    "verify_file": "VERIFY auth PIN, file-backed card store (2 atomic writes)",
}


class Apdus:
    """The APDUs of the benchmark, built once."""

    def __init__(self) -> None:
        from jpki_sim.profiles.jpki import ids as jpki

        self.select_aid = bytes((0x00, 0xA4, 0x04, 0x0C, len(jpki.JPKI_AID))) + jpki.JPKI_AID
        self.select_auth_cert = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_CERT.to_bytes(2, "big")
        self.select_auth_pin = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_PIN.to_bytes(2, "big")
        self.select_auth_key = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_KEY.to_bytes(2, "big")
        self.read_256 = bytes.fromhex("00B0010000")  # offset 256, Le 00 = 256 bytes
        self.read_header = bytes.fromhex("00B0000004")
        self.empty_verify = bytes.fromhex("00200080")
        pin = jpki.DEFAULT_PINS["auth"].encode()
        self.verify = bytes((0x00, 0x20, 0x00, 0x80, len(pin))) + pin


def cert_read_apdus(header: bytes) -> list[bytes]:
    """The READ BINARY chunks OpenSC sends after the 4-byte header ``30 82 HH LL``."""
    total = ((header[2] << 8) | header[3]) + 4
    out = []
    for offset in range(0, total, 256):
        le = min(256, total - offset) & 0xFF  # Le 00 means 256
        out.append(bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, le)))
    return out


def check(resp: bytes, want_sw: bytes, what: str) -> bytes:
    if resp[-2:] != want_sw:
        raise BenchError(f"{what}: card answered {resp[-2:].hex().upper()}, not {want_sw.hex()}")
    return resp


def make_state(work: Path) -> tuple[Any, Any]:
    """A card state issued by a fresh test CA in ``work`` (and the CA)."""
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.ca import TestCA

    ca = TestCA.open(work / "ca")
    state = issuer.issue_card(issuer.default_identity(), ISSUED, ca=ca)
    return state, ca


# ---------------------------------------------------------------- in-process


def bench_inprocess(cfg: Settings, state: Any, work: Path, progress: Progress) -> dict[str, Any]:
    from jpki_sim.profiles import registry
    from jpki_sim.profiles.jpki.state import new_store, open_store, save

    a = Apdus()
    ok = b"\x90\x00"
    card = registry.get("jpki").build(new_store(copy.deepcopy(state)))
    card.power_on()
    process = card.process
    n = cfg.batch_apdus
    figures = {name: Figure(name, ops_per_sample=n) for name in COMMANDS}

    check(process(a.select_aid), ok, "SELECT AID")
    check(process(a.select_auth_cert), ok, "SELECT EF 000A")
    header = check(process(a.read_header), ok, "READ BINARY header")[:4]
    chunks = cert_read_apdus(header)
    figures["cert_read"].apdus_per_op = 2 + len(chunks)
    figures["cert_read"].ops_per_sample = cert_n = max(1, n // figures["cert_read"].apdus_per_op)

    def read_cert() -> None:
        process(a.select_auth_cert)
        process(a.read_header)
        for chunk in chunks:
            process(chunk)

    file_store = open_store(saved_copy(save, state, work / "verify-file.json"))
    file_card = registry.get("jpki").build(file_store)
    file_card.power_on()
    for c in (card, file_card):
        check(c.process(a.select_aid), ok, "SELECT AID")
        check(c.process(a.select_auth_pin), ok, "SELECT EF 0018")
        check(c.process(a.verify), ok, "VERIFY")  # the PIN is right: counters stay full
    file_n = max(2, n // 200)  # each costs two fsynced writes of the card file
    figures["verify_file"].ops_per_sample = file_n

    def setup_ef() -> None:
        process(a.select_aid)
        process(a.select_auth_cert)

    def setup_pin() -> None:
        process(a.select_aid)
        process(a.select_auth_pin)

    plan: list[tuple[str, Callable[[], None], Callable[[], Any], int]] = [
        ("select_fid", setup_ef, lambda: process(a.select_auth_cert), n),
        ("select_aid", setup_ef, lambda: process(a.select_aid), n),
        ("read_binary_256", setup_ef, lambda: process(a.read_256), n),
        ("cert_read", setup_ef, read_cert, cert_n),
        ("empty_verify", setup_pin, lambda: process(a.empty_verify), n),
        ("verify_memory", setup_pin, lambda: process(a.verify), n),
        ("verify_file", lambda: None, lambda: file_card.process(a.verify), file_n),
    ]
    # the answers are checked once before timing, so a broken card cannot look fast
    setup_ef()
    if len(check(process(a.read_256), ok, "READ BINARY")) != 258:
        raise BenchError("READ BINARY of 256 bytes returned another length")
    setup_pin()
    check(process(a.empty_verify), b"\x63\xc3", "empty VERIFY")
    task = progress.task("in-process APDUs", cfg.runs * len(plan))
    for _run in range(cfg.runs):
        # interleaved: every command sees the same slice of the machine's load
        for name, setup, op, count in plan:
            setup()
            timed(op, max(1, count // 10))  # warm-up
            figures[name].add(timed(op, count), count)
            progress.advance(task)
    progress.done(task)
    writes = file_store.writes
    return {
        "commands": {name: figures[name].to_json() for name in COMMANDS},
        "descriptions": COMMANDS,
        "verify_file_writes": writes,
    }


def saved_copy(save: Callable[..., None], state: Any, path: Path) -> Path:
    save(copy.deepcopy(state), path)
    return path


def bench_signature(cfg: Settings, state: Any, progress: Progress) -> dict[str, Any]:
    """The signature APDU vs a bare cryptography signature of the same DigestInfo."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from jpki_sim.profiles import registry
    from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX
    from jpki_sim.profiles.jpki.state import new_store

    a = Apdus()
    ok = b"\x90\x00"
    digest = hashlib.sha256(b"jpki-sim benchmark").digest()
    info = SHA256_DIGEST_INFO_PREFIX + digest
    sign_apdu = bytes((0x80, 0x2A, 0x00, 0x80, len(info))) + info + b"\x00"

    card = registry.get("jpki").build(new_store(copy.deepcopy(state)))
    card.power_on()
    process = card.process
    for apdu in (a.select_aid, a.select_auth_pin, a.verify, a.select_auth_key):
        check(process(apdu), ok, f"APDU {apdu.hex()}")
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = load_pem_private_key(state.auth.key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    pad, prehashed = padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())

    def bare() -> bytes:
        return key.sign(digest, pad, prehashed)

    first = check(process(sign_apdu), ok, "COMPUTE DIGITAL SIGNATURE")
    if first[:-2] != bare():
        raise BenchError("the card's signature differs from cryptography's")
    card_fig = Figure("signature_apdu")
    bare_fig = Figure("bare_cryptography")
    perf = time.perf_counter
    total = cfg.signatures
    task = progress.task("signatures", total)
    for i in range(total):
        # alternate which goes first, so neither always follows the other's cache effects
        for fig, fn in ((card_fig, lambda: process(sign_apdu)), (bare_fig, bare))[:: 1 if i % 2
                                                                                     else -1]:
            t0 = perf()
            fn()
            fig.add(perf() - t0)
        progress.advance(task)
    progress.done(task)
    return {
        "card": card_fig.to_json(),
        "bare": bare_fig.to_json(),
        "ratio": card_fig.median / bare_fig.median,
        "scheme": "80 2A 00 80, SHA-256 DigestInfo, PKCS#1 v1.5, RSA-2048",
    }
