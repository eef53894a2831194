"""The whole chip through real pcscd + vpcd: OpenSC's self-test, a Myna Portal-style login,
a client that starts at the MF, the security status across resets, ATR variants.

Every test here talks to the emulated card only through PC/SC (pyscard, or
OpenSC's tools as users run them).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from jpki_sim.iso7816.errors import ApduError
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.cv_verify import parse_cv, verify_cv
from jpki_sim.profiles.jpki.records_cv import cv_contents
from jpki_sim.profiles.jpki.signing import digest_info
from jpki_sim.profiles.jpki.state import load
from jpki_sim.transport.pcsc import PcscTransport, wait_for_card
from pcsc_harness import (
    PORTS,
    PcscSession,
    ServedCard,
    ServeProcess,
    jpki_sim_command,
    opensc_available,
    stored_copy,
    unavailable,
)

pytestmark = pytest.mark.pcsc

PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
SLOTS = {
    "JPKI (User Authentication PIN)": "auth",
    "JPKI (Digital Signature PIN)": "sign",
}


def card_status(path: Path) -> dict:
    done = subprocess.run([*jpki_sim_command(), "card", "status", str(path), "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    doc: dict = json.loads(done.stdout)
    return doc


def sha256_digest_info(message: bytes) -> bytes:
    return digest_info("sha256", hashlib.sha256(message).digest())


def verify_with_cert(cert_der: bytes, message: bytes, signature: bytes) -> None:
    from cryptography import x509

    key = x509.load_der_x509_certificate(cert_der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def raw(t: PcscTransport, hex_text: str) -> tuple[bytes, int]:
    r = t.transmit(bytes.fromhex(hex_text))
    return r[:-2], r[-2] << 8 | r[-1]


# ---------------------------------------------------------------- OpenSC's own self-test


@pytest.mark.opensc
@pytest.mark.parametrize("token", list(SLOTS))
def test_pkcs11_tool_test_login_reports_no_error(vpcd_reader: ServedCard, token: str) -> None:
    """``pkcs11-tool --test --login`` with OpenSC's default configuration: random numbers
    (GET CHALLENGE of 10, 100, 0 and 100 bytes), digests, signatures, verification."""
    if not opensc_available() or not os.path.exists(PKCS11_MODULE):
        unavailable("OpenSC's pkcs11-tool and module are not installed (apt-get install opensc)")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENSC_CONF", "OPENSC_DRIVER")}
    pin = jpki.DEFAULT_PINS[SLOTS[token]]
    done = subprocess.run(
        ["pkcs11-tool", "--module", PKCS11_MODULE, "--token-label", token, "--test", "--login",
         "--pin", pin],
        capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "C_GenerateRandom" in out and "seems to be OK" in out
    assert "No errors" in out, out
    assert "error" not in out.replace("No errors", "").lower(), out
    # the PIN was given right: nothing spent
    st = load(vpcd_reader.card_file)
    assert st.pins["auth"].tries_left == 3 and st.pins["sign"].tries_left == 5


# ---------------------------------------------------------------- Myna Portal-style clients


def test_myna_portal_login_reads_what_card_status_shows(vpcd_reader: ServedCard) -> None:
    """Mode 01 as jpki/myna's mpa does it: VERIFY the auth PIN, sign a digest, read 000A;
    then the card serial from the 共通AP (SELECT, READ RECORD 1 of SFI 1)."""
    status = card_status(vpcd_reader.card_file)
    state = load(vpcd_reader.card_file)
    assert state.auth is not None
    message = b"myna portal challenge"
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        signature = client.sign("auth", sha256_digest_info(message))
        cert = client.read_certificate("auth")
        info = client.card_info()
        # the same bytes as the client sends them: 00 B2 01 0C 00 after SELECT 共通AP
        raw(t, "00A4040C0A" + jpki.COMMON_AID.hex())
        record, sw = raw(t, "00B2010C00")
    assert sw == 0x9000 and record[:2] == b"\x01\x1c"
    assert cert == state.auth.cert_der
    verify_with_cert(cert, message, signature)
    chip = status["chip"]
    assert info == {"serial": chip["serial"], "municipality": chip["municipality"]["code"],
                    "expires": status["card"]["expires"]}
    assert record[2:].decode() == (chip["serial"] + chip["municipality"]["code"]
                                   + status["card"]["expires"].replace("-", ""))


def test_mode_02_one_sign_pin_several_signatures(vpcd_reader: ServedCard) -> None:
    state = load(vpcd_reader.card_file)
    assert state.sign is not None
    messages = [f"document {i}".encode() for i in range(4)]
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        client.verify_pin("sign", jpki.DEFAULT_PINS["sign"])
        signatures = [client.sign("sign", sha256_digest_info(m)) for m in messages]
        # also as MC sends it: P2 9A names the key, no SELECT
        extra, sw = raw(t, "802A009A33" + sha256_digest_info(b"one more").hex() + "00")
    assert sw == 0x9000
    for message, signature in zip(messages, signatures, strict=True):
        verify_with_cert(state.sign.cert_der, message, signature)
    verify_with_cert(state.sign.cert_der, b"one more", extra)
    assert load(vpcd_reader.card_file).pins["sign"].tries_left == 5


# ---------------------------------------------------------------- a client starting at the MF


def test_mf_client_reads_the_cv_chain_after_power_on(vpcd_reader: ServedCard) -> None:
    state = load(vpcd_reader.card_file)
    with PcscTransport(vpcd_reader.reader) as t:
        t.power_cycle()
        client = JpkiClient(t)
        chain = client.cv_chain()
        municipality = client.get_data(0x00F0)
        contact_atr = client.get_data(0x5F51)
        # F8 does not fit a short Le: the card refuses it, the client asks again extended
        _data, short_sw = raw(t, "00CA00F800")
        client.select_aid(jpki.JPKI_AID)
        refused = [raw(t, cmd)[1] for cmd in ("00CA00F8000000", "00CA7F21000000", "00CA00F000")]
        still = client.get_data(0x5F51)
        # the card manager brings the MF level back without a power cycle
        client.select_aid(jpki.CARD_MANAGER_AID)
        again = client.cv_chain()
    assert short_sw == 0x6700
    assert refused == [0x6A88, 0x6A88, 0x6A88]
    assert municipality.decode() == state.info.municipality.code
    assert contact_atr == still == jpki.ATR[1:]
    assert again == chain and len(chain) == 2
    upper, lower = (parse_cv(c) for c in chain)
    assert lower.issuer_key_id == upper.subject_key_id
    verify_cv(lower, upper.public_key)
    assert chain == [cv_contents(state.info.cv_certificates[tag]) for tag in (0xF8, 0x7F21)]


def test_common_key_answers_internal_authenticate_without_a_pin(vpcd_reader: ServedCard) -> None:
    state = load(vpcd_reader.card_file)
    assert state.info.internal_auth_key is not None
    key = load_pem_private_key(state.info.internal_auth_key.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        challenge = client.get_challenge(16)
        signature = client.common_authenticate(challenge)
        client.select_aid(jpki.JPKI_AID)
        with pytest.raises(ApduError) as refused:
            client.internal_authenticate(0x80 | jpki.EF_AUTH_KEY, challenge)
    key.public_key().verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    assert refused.value.sw == 0x6982


def test_get_challenge_never_repeats_through_pcscd(vpcd_reader: ServedCard) -> None:
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        draws = [client.get_challenge(n) for n in (8, 16, 32, 256) * 8]
    assert len(set(draws)) == len(draws)
    assert [len(d) for d in draws[:4]] == [8, 16, 32, 256]


# ---------------------------------------------------------------- PINs of the 住基AP and 共通AP


def test_juki_pins_verify_change_and_count_apart(vpcd_reader: ServedCard) -> None:
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        assert client.pin_status("juki") == 3 and client.pin_status("common") == 3
        client.verify_pin("common", jpki.DEFAULT_PINS["common"])
        client.change_pin("juki", "2468", old=jpki.DEFAULT_PINS["juki"])  # JICSAP CHANGE KEY
        client.verify_pin("juki", "2468")
        with pytest.raises(ApduError):
            client.verify_pin("common", "2468")
        left = client.pin_status("common")
    st = load(vpcd_reader.card_file)
    assert st.pins["juki"].value == "2468" and st.pins["common"].value == "1234"
    assert left == 2 and st.pins["common"].tries_left == 2 and st.pins["juki"].tries_left == 3


# ---------------------------------------------------------------- security status and resets


def test_reselect_keeps_and_another_application_clears_the_pin(vpcd_reader: ServedCard) -> None:
    """What OpenSC >= 0.24's C_Logout (SELECT of the JPKI AID) does on the card: nothing."""
    sign = "802A009733" + sha256_digest_info(b"x").hex() + "00"
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        raw(t, "00A4040C0A" + jpki.JPKI_AID.hex())  # OpenSC's logout
        after_logout = raw(t, sign)[1]
        raw(t, "00A4040C0A" + jpki.HELPER_AID.hex())
        raw(t, "00A4040C0A" + jpki.JPKI_AID.hex())
        after_leaving = raw(t, sign)[1]
    assert after_logout == 0x9000
    assert after_leaving == 0x6982


@pytest.mark.parametrize(("variant", "kept"), [("contact", False), ("contactless-06", True)])
def test_a_pcsc_reset_clears_the_pin_on_contact_only(
    vpcd_reader: ServedCard, variant: str, kept: bool
) -> None:
    assert vpcd_reader.store is not None
    vpcd_reader.store.state.info.atr = variant
    vpcd_reader.insert(build_card(vpcd_reader.store))
    sign = "802A009733" + sha256_digest_info(b"x").hex() + "00"
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        atr = t.reset()  # SCARD_RESET_CARD: vpcd delivers a warm reset
        after_reset = raw(t, sign)[1]
        t.power_cycle()  # SCARD_UNPOWER_CARD: the chip loses power
        raw(t, "00A4040C0A" + jpki.JPKI_AID.hex())
        after_power = raw(t, sign)[1]
    assert atr == jpki.ATRS[variant]
    assert after_reset == (0x9000 if kept else 0x6A88)  # contact: nothing selected any more
    assert after_power == 0x6982


# ---------------------------------------------------------------- ATR variants from the CLI


def test_issue_with_a_variant_and_serve_another(
    pcscd_session: PcscSession, tmp_path: Path
) -> None:
    reader = pcscd_session.reader_for_port(PORTS[1])
    card = tmp_path / "card.json"
    issued = subprocess.run(
        [*jpki_sim_command(), "card", "issue", str(card), "--atr", "contact-02",
         "--token-label", "JPKIAPICCTOKEN", "--ca", str(tmp_path / "ca")],
        capture_output=True, text=True, timeout=120,
    )
    assert issued.returncode == 0, issued.stderr
    for args, atr in (([], jpki.ATRS["contact-02"]),
                      (["--atr", "contactless-08"], jpki.ATRS["contactless-08"]),
                      (["--atr", "3B 02 14 50"], bytes.fromhex("3B021450"))):
        server = ServeProcess([str(card), "--vpcd", f"localhost:{PORTS[1]}", *args])
        try:
            server.wait_ready(timeout=30)
            with PcscTransport(reader) as t:
                client = JpkiClient(t)
                assert t.atr() == atr
                label = client.token_label()
                contact = client.get_data(0x5F51)
        finally:
            server.terminate()
            server.kill()
        assert wait_for_card(reader, present=False, timeout=10)
        assert label == "JPKIAPICCTOKEN"
        # a contactless reader's ATR is the reader's: the chip keeps its contact one
        assert contact == (jpki.ATR[1:] if atr[1] & 0xF0 == 0x80 else atr[1:])


def test_serve_refuses_an_unknown_atr_variant(tmp_path: Path) -> None:
    from jpki_sim.issuer import counter

    state = counter.issue_card(counter.default_identity(), ca=tmp_path / "ca")
    card = tmp_path / "card.json"
    stored_copy(state, card)
    done = subprocess.run([*jpki_sim_command(), "serve", str(card), "--atr", "contact-99"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "jpki-sim: error: no ATR 'contact-99' for the jpki card: one of "
        + ", ".join(jpki.ATRS) + ", or hex bytes"
    ]
