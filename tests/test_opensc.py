"""OpenSC, unchanged, as users run it, against the emulated card in a vpcd reader.

Most tests narrow OpenSC to its JPKI driver (``card_drivers = jpki;`` in a
temporary opensc.conf) so that it skips the other drivers' ~29 probe APDUs;
the first tests run OpenSC's default configuration, whose probe storm the
card must answer sanely.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.state import CardState, load
from jpki_sim.transport.pcsc import list_readers
from pcsc_harness import ServedCard, opensc_available

pytestmark = [pytest.mark.pcsc, pytest.mark.opensc]

PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
AUTH_TOKEN = "JPKI (User Authentication PIN)"
SIGN_TOKEN = "JPKI (Digital Signature PIN)"


@pytest.fixture(autouse=True)
def _need_opensc() -> None:
    if not opensc_available():
        from pcsc_harness import unavailable

        unavailable("OpenSC's tools are not installed (apt-get install opensc)")


@pytest.fixture
def card(vpcd_reader: ServedCard) -> ServedCard:
    # only our reader holds a card, so "the first token with this label" is ours
    return vpcd_reader


@pytest.fixture
def jpki_only(tmp_path: Path) -> Iterator[dict[str, str]]:
    conf = tmp_path / "opensc.conf"
    conf.write_text("app default {\n    card_drivers = jpki;\n}\n")
    yield {"OPENSC_CONF": str(conf)}


def run(args: list[str], env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env.pop("OPENSC_CONF", None)
    full_env.pop("OPENSC_DRIVER", None)
    full_env.update(env or {})
    result = subprocess.run(args, env=full_env, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}")
    return result


def reader_index(card: ServedCard) -> str:
    return str(list_readers().index(card.reader))


def tries_left(output: str) -> dict[str, int]:
    """PIN label -> tries left, from ``pkcs15-tool --list-pins``."""
    found: dict[str, int] = {}
    for block in output.split("\n\n"):
        name = re.search(r"PIN \[(.+?)\]", block)
        tries = re.search(r"Tries left\s*:\s*(\d+)", block)
        if name and tries:
            found[name.group(1)] = int(tries.group(1))
    return found


def list_pins(card: ServedCard, env: dict[str, str]) -> dict[str, int]:
    out = run(["pkcs15-tool", "--reader", reader_index(card), "--list-pins"], env).stdout
    return tries_left(out)


def pem_body(text: str) -> bytes:
    m = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)
    assert m, f"no PEM certificate in {text!r}"
    return base64.b64decode("".join(m.group(1).split()))


def state_of(card: ServedCard) -> CardState:
    return load(card.card_file)


def cert_of(card: ServedCard, which: str) -> bytes:
    slot = state_of(card).slot(which)
    assert slot is not None
    return slot.cert_der


# ---------------------------------------------------------------- default configuration


def test_opensc_tool_names_jpki_with_the_default_config(card: ServedCard) -> None:
    out = run(["opensc-tool", "--reader", reader_index(card), "--name"]).stdout
    assert out.strip().splitlines()[-1] == "jpki"


def test_probe_storm_then_pins_with_the_default_config(card: ServedCard) -> None:
    r = reader_index(card)
    pins = tries_left(run(["pkcs15-tool", "--reader", r, "--list-pins"]).stdout)
    assert pins == {"User Authentication PIN": 3, "Digital Signature PIN": 5}
    listed = run(["pkcs15-tool", "--reader", r, "--list-certificates"]).stdout
    assert re.findall(r"X\.509 Certificate \[(.+?)\]", listed) == [
        "User Authentication Certificate",
        "Digital Signature Certificate",
        "User Authentication Certificate CA",
        "Digital Signature Certificate CA",
    ]
    # the probes of the other drivers changed nothing on the card
    st = state_of(card)
    assert st.pins["auth"].tries_left == 3 and st.pins["sign"].tries_left == 5
    assert card.bridge.apdu_count > 5


# ---------------------------------------------------------------- pkcs15-tool


def test_list_pins_shows_both_pins(card: ServedCard, jpki_only: dict[str, str]) -> None:
    assert list_pins(card, jpki_only) == {"User Authentication PIN": 3, "Digital Signature PIN": 5}


def test_read_certificates_returns_the_card_files_der(
    card: ServedCard, jpki_only: dict[str, str]
) -> None:
    st = state_of(card)
    r = reader_index(card)
    expected = {"01": cert_of(card, "auth"), "03": st.auth_ca_der, "04": st.sign_ca_der}
    for cert_id, der in expected.items():
        out = run(["pkcs15-tool", "--reader", r, "--read-certificate", cert_id], jpki_only).stdout
        assert pem_body(out) == der, cert_id
    # the signature certificate is private: it needs the signature PIN
    out = run(["pkcs15-tool", "--reader", r, "--read-certificate", "02", "--verify-pin",
               "--auth-id", "02", "--pin", jpki.DEFAULT_PINS["sign"]], jpki_only).stdout
    assert pem_body(out) == cert_of(card, "sign")


# ---------------------------------------------------------------- pkcs11-tool


def pkcs11_sign(token: str | None, pin: str, key_id: str, message: Path, out: Path,
                env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """pkcs11-tool --sign; token None: the first slot with a token, as the README shows."""
    which = ["--token-label", token] if token else []
    return run(["pkcs11-tool", "--module", PKCS11_MODULE, *which, "--login",
                "--pin", pin, "--sign", "-m", "SHA256-RSA-PKCS", "--id", key_id,
                "-i", str(message), "-o", str(out)], env, check=check)


def verify_signature(cert_der: bytes, message: bytes, signature: bytes) -> None:
    key = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_pkcs11_signs_with_the_auth_key(card: ServedCard, jpki_only: dict[str, str],
                                        tmp_path: Path) -> None:
    if not os.path.exists(PKCS11_MODULE):
        pytest.skip(f"no {PKCS11_MODULE} on this architecture")
    message = tmp_path / "message.txt"
    message.write_bytes(b"login to a government portal\n")
    sig = tmp_path / "auth.sig"
    # exactly the README's command: the first token is the auth PIN's
    pkcs11_sign(None, jpki.DEFAULT_PINS["auth"], "01", message, sig, jpki_only)
    verify_signature(cert_of(card, "auth"), message.read_bytes(), sig.read_bytes())


def test_pkcs11_signs_with_the_sign_key_in_its_own_slot(
    card: ServedCard, jpki_only: dict[str, str], tmp_path: Path
) -> None:
    if not os.path.exists(PKCS11_MODULE):
        pytest.skip(f"no {PKCS11_MODULE} on this architecture")
    message = tmp_path / "tax-return.xml"
    message.write_bytes(b"<return>e-Tax</return>\n")
    sig = tmp_path / "sign.sig"
    pkcs11_sign(SIGN_TOKEN, jpki.DEFAULT_PINS["sign"], "02", message, sig, jpki_only)
    verify_signature(cert_of(card, "sign"), message.read_bytes(), sig.read_bytes())
    # the auth PIN does not open the signature slot: too short, OpenSC refuses it itself
    bad = pkcs11_sign(SIGN_TOKEN, jpki.DEFAULT_PINS["auth"], "02", message,
                      tmp_path / "none.sig", jpki_only, check=False)
    assert bad.returncode != 0
    assert state_of(card).pins["sign"].tries_left == 5
    # a wrong PIN of the right form reaches the card and costs a try
    bad = pkcs11_sign(SIGN_TOKEN, "WRONG1", "02", message, tmp_path / "none.sig", jpki_only,
                      check=False)
    assert bad.returncode != 0 and "CKR_PIN_INCORRECT" in bad.stdout + bad.stderr
    assert state_of(card).pins["sign"].tries_left == 4


# ---------------------------------------------------------------- wrong PINs


def test_wrong_pins_count_down_and_block(card: ServedCard, jpki_only: dict[str, str],
                                         tmp_path: Path) -> None:
    r = reader_index(card)
    for left in (2, 1, 0):
        bad = run(["pkcs15-tool", "--reader", r, "--verify-pin", "--auth-id", "01",
                   "--pin", "0000"], jpki_only, check=False)
        assert bad.returncode != 0 and "PIN code or key incorrect" in bad.stdout + bad.stderr
        assert list_pins(card, jpki_only)["User Authentication PIN"] == left
        assert state_of(card).pins["auth"].tries_left == left
    # blocked: even the right PIN is refused, and the signature PIN is untouched
    right = run(["pkcs15-tool", "--reader", r, "--verify-pin", "--auth-id", "01",
                 "--pin", jpki.DEFAULT_PINS["auth"]], jpki_only, check=False)
    assert right.returncode != 0
    assert "Reference data not usable" in right.stdout + right.stderr  # 6984, as the real card
    assert list_pins(card, jpki_only) == {"User Authentication PIN": 0, "Digital Signature PIN": 5}
    if os.path.exists(PKCS11_MODULE):
        message = tmp_path / "m"
        message.write_bytes(b"x")
        login = pkcs11_sign(AUTH_TOKEN, jpki.DEFAULT_PINS["auth"], "01", message,
                            tmp_path / "s", jpki_only, check=False)
        # the card answers 6984 (reference data not usable) like the real one; OpenSC
        # 0.23 reports that as a failed C_Login (CKR_GENERAL_ERROR), nothing is signed
        assert login.returncode != 0 and "C_Login failed" in login.stderr
        out = tmp_path / "s"
        assert (out.read_bytes() if out.exists() else b"") == b""  # no signature written
