"""OpenSC's own tools (pkcs11-tool, pkcs15-tool) against the served card, default config."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from compat_harness import (
    AUTH_PIN,
    AUTH_TOKEN,
    SIGN_PIN,
    SIGN_TOKEN,
    Row,
    Served,
    need_tools,
    ok,
    pkcs11_module,
    run,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

pytestmark = [pytest.mark.pcsc, pytest.mark.opensc]

SLOTS = {"auth": (AUTH_TOKEN, AUTH_PIN, "01"), "sign": (SIGN_TOKEN, SIGN_PIN, "02")}

#: pkcs11-tool's name -> the hash it applies (None: RSA-PKCS, the caller gives a DigestInfo)
MECHANISMS: dict[str, hashes.HashAlgorithm | None] = {
    "RSA-PKCS": None,
    "SHA1-RSA-PKCS": hashes.SHA1(),
    "SHA224-RSA-PKCS": hashes.SHA224(),
    "SHA256-RSA-PKCS": hashes.SHA256(),
    "SHA384-RSA-PKCS": hashes.SHA384(),
    "SHA512-RSA-PKCS": hashes.SHA512(),
}

#: DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1)
SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.fixture(autouse=True)
def _opensc() -> None:
    need_tools("pkcs11-tool", "pkcs15-tool", package="opensc")


def tool(*args: str) -> list[str]:
    return ["pkcs11-tool", "--module", pkcs11_module(), *args]


def tries_left(served: Served) -> dict[str, int]:
    out = ok(run(["pkcs15-tool", "--list-pins"])).stdout
    found = {}
    for block in out.split("\n\n"):
        name = re.search(r"PIN \[(.+?)\]", block)
        tries = re.search(r"Tries left\s*:\s*(\d+)", block)
        if name and tries:
            found[name.group(1)] = int(tries.group(1))
    return found


# ---------------------------------------------------------------- pkcs11-tool --test


@pytest.mark.parametrize("slot", ["auth", "sign"])
@pytest.mark.compat("opensc", "`pkcs11-tool --test --login`, {slot} slot")
def test_pkcs11_tool_self_test(served: Served, slot: str) -> None:
    token, pin, _ = SLOTS[slot]
    r = run(tool("--token-label", token, "--test", "--login", "--pin", pin))
    out = r.stdout + r.stderr
    errors = [ln.strip() for ln in out.splitlines() if "ERR:" in ln or "failed" in ln]
    assert r.returncode == 0 and not errors and "No errors" in out, (
        f"pkcs11-tool --test on the {slot} slot: {'; '.join(errors) or out.strip()[-200:]}")
    # C_GenerateRandom is GET CHALLENGE (OpenSC 0.23.0 src/libopensc/iso7816.c:672-692)
    assert re.search(r"C_GenerateRandom\(\):\n(.*\n)?\s*seems to be OK", out), out
    # what it tested is what the card does: both kinds of signature, checked by OpenSC
    assert re.search(r"SHA256-RSA-PKCS: OK", out) and re.search(r"RSA-PKCS: OK", out)


# ---------------------------------------------------------------- pkcs15-tool --dump


@pytest.mark.compat("opensc", "`pkcs15-tool --dump`")
def test_pkcs15_dump(served: Served) -> None:
    out = ok(run(["pkcs15-tool", "--dump"])).stdout
    assert "PKCS#15 Card [JPKI]" in out
    pins = dict(re.findall(r"PIN \[(.+?)\].*?Tries left\s*:\s*(\d+)", out, re.S))
    assert pins == {"User Authentication PIN": "3", "Digital Signature PIN": "5"}
    keys = re.findall(r"Private RSA Key \[(.+?)\].*?ModLength\s*:\s*(\d+)", out, re.S)
    assert keys == [("User Authentication Key", "2048"), ("Digital Signature Key", "2048")]
    certs = re.findall(r"X\.509 Certificate \[(.+?)\]", out)
    assert certs == ["User Authentication Certificate", "Digital Signature Certificate",
                     "User Authentication Certificate CA", "Digital Signature Certificate CA"]
    serial = re.search(r"Encoded serial\s*:\s*02 \w\w ([0-9A-F]+)", out)
    assert serial and int(serial.group(1), 16) == served.cert("auth").serial_number


# ---------------------------------------------------------------- signatures


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
@pytest.mark.parametrize("key", ["auth", "sign"])
@pytest.mark.compat("opensc", "`pkcs11-tool --sign -m {mechanism}`, {key} key, verified with "
                    "the certificate")
def test_sign_and_verify(served: Served, key: str, mechanism: str, tmp_path: Path) -> None:
    token, pin, key_id = SLOTS[key]
    message = f"{key} {mechanism}: 確定申告 2026\n".encode()
    algorithm = MECHANISMS[mechanism]
    data = SHA256_DIGESTINFO + hashlib.sha256(message).digest() if algorithm is None else message
    (tmp_path / "in").write_bytes(data)
    ok(run(tool("--token-label", token, "--login", "--pin", pin, "--sign", "-m", mechanism,
                "--id", key_id, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "sig"))))
    signature = (tmp_path / "sig").read_bytes()
    public = served.cert(key).public_key()
    assert isinstance(public, rsa.RSAPublicKey) and len(signature) == 256
    if algorithm is None:
        # RSA-PKCS: PKCS#1 v1.5 over the bytes given, here a SHA-256 DigestInfo
        assert public.recover_data_from_signature(signature, padding.PKCS1v15(), None) == data
        public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        public.verify(signature, message, padding.PKCS1v15(), algorithm)


# ---------------------------------------------------------------- PINs


@pytest.mark.parametrize("slot", ["auth", "sign"])
@pytest.mark.compat("opensc", "wrong {slot} PIN: the count shown by `pkcs15-tool --list-pins`")
def test_wrong_pin_counts(served: Served, slot: str) -> None:
    token, pin, _ = SLOTS[slot]
    label = {"auth": "User Authentication PIN", "sign": "Digital Signature PIN"}[slot]
    full = {"auth": 3, "sign": 5}[slot]
    wrong = "0000" if slot == "auth" else "WRONG1"
    assert tries_left(served)[label] == full
    for left in (full - 1, full - 2):
        r = run(tool("--token-label", token, "--login", "--pin", wrong, "--list-objects"))
        assert r.returncode != 0 and "CKR_PIN_INCORRECT" in r.stdout + r.stderr
        assert tries_left(served)[label] == left
        assert served.state().pins[slot].tries_left == left
    # the right PIN restores the count (and leaves the module's card as it was)
    ok(run(tool("--token-label", token, "--login", "--pin", pin, "--list-objects")))
    assert tries_left(served) == {"User Authentication PIN": 3, "Digital Signature PIN": 5}


@pytest.mark.compat("opensc", "`pkcs11-tool --change-pin`, auth PIN")
def test_change_pin_is_not_in_the_driver(served: Served, row: Row) -> None:
    r = run(tool("--token-label", AUTH_TOKEN, "--login", "--pin", AUTH_PIN, "--change-pin",
                 "--new-pin", "4321"))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    line = next(ln.strip() for ln in out.splitlines() if "C_SetPIN" in ln)
    assert "CKR_FUNCTION_NOT_SUPPORTED" in line, out
    # the card was never asked: its PIN and counter are as before
    assert served.state().pins["auth"].tries_left == 3
    ok(run(tool("--token-label", AUTH_TOKEN, "--login", "--pin", AUTH_PIN, "--list-objects")))
    row.client_limitation(
        line,
        "OpenSC 0.23.0 src/libopensc/card-jpki.c:277-278: jpki_pin_cmd knows only VERIFY and "
        "GET_INFO (\"Card does not support PIN command\"); the card implements CHANGE "
        "REFERENCE DATA (docs/protocol.md)")
