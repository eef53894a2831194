"""``jpki-sim apdu`` end to end: the walk-through of the README, as a user runs it."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.counter import KeyPool, default_identity, issue_card
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX
from jpki_sim.profiles.jpki.state import CardState, load, save

JPKI_SELECT = "00A4040C0A" + jpki.JPKI_AID.hex().upper()


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> CardState:
    ca = TestCA.open(tmp_path_factory.mktemp("ca"))
    return issue_card(default_identity(), date(2024, 6, 1), ca=ca, keys=KeyPool.generate(2))


@pytest.fixture
def card_file(issued: CardState, tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    save(copy.deepcopy(issued), path)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jpki_sim", "apdu", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_read_certificate_in_chunks_verify_and_sign(card_file: Path, tmp_path: Path) -> None:
    state = load(card_file)
    assert state.auth is not None
    size = len(state.auth.cert_der)
    chunks = [f"00B0{off:04X}{min(256, size - off) & 0xFF:02X}" for off in range(0, size, 256)]
    der_path = tmp_path / "auth.der"
    r = run(
        "--card",
        str(card_file),
        "--data-out",
        str(der_path),
        JPKI_SELECT,
        "00 A4 02 0C 02 00 0A",
        *chunks,
    )
    assert r.returncode == 0, r.stderr
    assert "9000 success" in r.stdout
    assert der_path.read_bytes() == state.auth.cert_der
    if shutil.which("openssl"):
        out = subprocess.run(
            ["openssl", "x509", "-inform", "DER", "-in", str(der_path), "-noout", "-subject"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0 and "C = JP" in out.stdout

    digest = hashlib.sha256(b"hello").digest()
    di = (SHA256_DIGEST_INFO_PREFIX + digest).hex()
    r = run(
        "--card",
        str(card_file),
        "--json",
        JPKI_SELECT,
        "00A4020C020018",
        "0020008004" + b"1234".hex(),
        "00A4020C020017",
        f"802A008033{di}00",
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["sw"] for x in lines] == ["9000"] * 5
    assert set(lines[0]) == {"command", "data", "sw"}
    sig = bytes.fromhex(lines[-1]["data"])
    key = x509.load_der_x509_certificate(der_path.read_bytes()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(sig, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_wrong_pins_count_down_across_runs_and_block(card_file: Path) -> None:
    wrong = "0020008004" + b"9999".hex()
    seen = []
    for _ in range(4):
        r = run("--card", str(card_file), "--json", JPKI_SELECT, "00A4020C020018", wrong)
        seen.append(json.loads(r.stdout.splitlines()[-1])["sw"])
    assert seen == ["63C2", "63C1", "63C0", "6984"]
    r = run("--card", str(card_file), JPKI_SELECT, "00 A4 02 0C 02 00 18", "00 20 00 80")
    assert "63C0 verification failed, no tries left (blocked)" in r.stdout
    assert load(card_file).pins["auth"].tries_left == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["00A"], "odd number of hex digits"),
        (["zz00"], "not hex"),
        (["00A4040C05A0"], "does not fit"),
        (["00"], "at least 4"),
    ],
)
def test_bad_apdus_are_one_line_errors(card_file: Path, args: list[str], message: str) -> None:
    before = card_file.read_bytes()
    r = run("--card", str(card_file), *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert card_file.read_bytes() == before


def test_missing_and_corrupt_card_files(tmp_path: Path) -> None:
    r = run("--card", str(tmp_path / "nope.json"), "00A40000")
    assert r.returncode == 2 and "no such card file" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run("--card", str(bad), "00A40000")
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": 1}')
    r = run("--card", str(foreign), "00A40000")
    assert r.returncode == 2 and "not a jpki-sim card file" in r.stderr
