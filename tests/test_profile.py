"""The JPKI card in-process: the profile, the OpenSC sequences, persistence."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki_sim.card.engine import Card
from jpki_sim.card.store import CardStore
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.counter import KeyPool, default_identity, issue_card
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki import records
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX
from jpki_sim.profiles.jpki.state import CardState, load, new_store, save
from jpki_sim.testing import strategies as jst

JPKI = "00A4040C0A" + jpki.JPKI_AID.hex()
HELPER = "00A4040C0A" + jpki.HELPER_AID.hex()

#: AIDs OpenSC's other drivers probe with before its jpki driver runs
FOREIGN_AIDS = [
    "A000000063504B43532D3135",  # PKCS#15
    "A0000003974349445F0100",  # GIDS
    "A000000308000010000100",  # PIV
    "D27600012401",  # OpenPGP
    "E828BD080FA000000167455349474E",  # ESIGN
    "A00000007901",  # CAC / coolkey
    "E82B0601040181C31F0201",  # SmartCard-HSM
    "F04E66E75C02D8",  # EstEID
    "A0000000620100",
]


@pytest.fixture(scope="module")
def base_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CardState]:
    ca = TestCA.open(tmp_path_factory.mktemp("ca"))
    keys = KeyPool.generate(4)
    ident = default_identity()
    issued = date(2024, 6, 1)
    return {
        "both": issue_card(copy.deepcopy(ident), issued, ca=ca, keys=keys),
        "auth-only": issue_card(copy.deepcopy(ident), issued, ca=ca, keys=keys, with_sign=False),
        "none": issue_card(
            copy.deepcopy(ident), issued, ca=ca, keys=keys, with_sign=False, with_auth=False
        ),
    }


@pytest.fixture
def store(base_states: dict[str, CardState], tmp_path: Path) -> CardStore:
    path = tmp_path / "card.json"
    state = copy.deepcopy(base_states["both"])
    save(state, path)
    return new_store(state, path)


@pytest.fixture
def card(store: CardStore) -> Card:
    c = build_card(store)
    c.power_on()
    return c


def tx(card: Card, hexstr: str) -> tuple[bytes, str]:
    r = card.process(bytes.fromhex(hexstr.replace(" ", "")))
    return r[:-2], r[-2:].hex().upper()


def select_ef(card: Card, fid: int) -> None:
    assert tx(card, f"00A4020C02{fid:04X}")[1] == "9000"


def verify(card: Card, fid: int, pin: str | None) -> str:
    select_ef(card, fid)
    if pin is None:
        return tx(card, "00200080")[1]
    return tx(card, f"00200080{len(pin):02X}{pin.encode().hex()}")[1]


def read_like_opensc(card: Card, fid: int) -> bytes:
    """OpenSC: 4-byte header read, then 256-byte chunks from offset 0, last chunk exact."""
    select_ef(card, fid)
    head, sw = tx(card, "00B0000004")
    assert sw == "9000" and len(head) == 4 and head[:2] == b"\x30\x82"
    size = ((head[2] << 8) | head[3]) + 4
    out = b""
    while len(out) < size:
        n = min(256, size - len(out))
        chunk, sw = tx(card, f"00B0{len(out):04X}{n & 0xFF:02X}")
        assert sw == "9000" and len(chunk) == n
        out += chunk
    return out


def public_key(der: bytes) -> rsa.RSAPublicKey:
    key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


# ---------------------------------------------------------------- identity of the card


def test_atr_and_mf_get_data(card: Card) -> None:
    assert card.atr == bytes.fromhex("3BE000FF8131FE4514")
    # the contact ATR as the card keeps it: without TS, at the MF level and in an application
    assert tx(card, "00CA5F5100") == (card.atr[1:], "9000")
    tx(card, JPKI)
    assert tx(card, "00CA5F5100") == (card.atr[1:], "9000")


def test_applications_select_and_foreign_aids_6a82(card: Card) -> None:
    assert tx(card, JPKI) == (b"", "9000")
    assert tx(card, HELPER) == (b"", "9000")
    for aid in FOREIGN_AIDS:
        n = len(aid) // 2
        assert tx(card, f"00A4040C{n:02X}{aid}")[1] == "6A82", aid
        assert tx(card, f"00A40400{n:02X}{aid}00")[1] == "6A82", aid
    # the setcos probe must not be mistaken for its card
    assert tx(card, "00CADF3005")[1] == "6A88"


def test_token_info_and_certificate_presence(card: Card) -> None:
    tx(card, JPKI)
    select_ef(card, jpki.EF_TOKEN_INFO)
    label, sw = tx(card, "00B0000020")
    assert sw == "9000" and label.rstrip(b" ") == b"JPKIAPICCTOKEN2"
    whole, _ = tx(card, "00B0000000")
    assert len(whole) == 160
    select_ef(card, jpki.EF_CERT_PRESENCE)
    assert tx(card, "00B0000000") == (bytes.fromhex("8F8F00"), "9000")


# ---------------------------------------------------------------- OpenSC sequences (notes §7.3)


def test_opensc_bind_sequence(card: Card) -> None:
    assert tx(card, JPKI)[1] == "9000"
    assert verify(card, jpki.EF_AUTH_PIN, None) == "63C3"
    assert verify(card, jpki.EF_SIGN_PIN, None) == "63C5"


def test_opensc_reads_every_public_certificate(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    st = store.state
    assert st.auth is not None
    assert read_like_opensc(card, jpki.EF_AUTH_CERT) == st.auth.cert_der
    assert read_like_opensc(card, jpki.EF_AUTH_CA_CERT) == st.auth_ca_der
    assert read_like_opensc(card, jpki.EF_SIGN_CA_CERT) == st.sign_ca_der
    x509.load_der_x509_certificate(st.auth.cert_der)


def test_sign_certificate_needs_the_sign_pin(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    select_ef(card, jpki.EF_SIGN_CERT)
    assert tx(card, "00B0000004")[1] == "6982"
    assert verify(card, jpki.EF_AUTH_PIN, jpki.DEFAULT_PINS["auth"]) == "9000"
    select_ef(card, jpki.EF_SIGN_CERT)
    assert tx(card, "00B0000004")[1] == "6982"  # the auth PIN does not open it
    assert verify(card, jpki.EF_SIGN_PIN, jpki.DEFAULT_PINS["sign"]) == "9000"
    assert store.state.sign is not None
    assert read_like_opensc(card, jpki.EF_SIGN_CERT) == store.state.sign.cert_der


def test_whole_certificate_in_one_extended_read(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    select_ef(card, jpki.EF_AUTH_CERT)
    data, sw = tx(card, "00B00000000000")
    assert store.state.auth is not None
    der = store.state.auth.cert_der
    assert sw == "9000" and data.startswith(der)
    assert set(data[len(der) :]) <= {0xFF}  # filler after the DER


def test_opensc_signature_with_auth_key(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    select_ef(card, jpki.EF_AUTH_KEY)
    digest = hashlib.sha256(b"message").digest()
    di = SHA256_DIGEST_INFO_PREFIX + digest
    sig, sw = tx(card, f"802A0080{len(di):02X}{di.hex()}00")
    assert sw == "9000" and len(sig) == 256
    assert store.state.auth is not None
    public_key(store.state.auth.cert_der).verify(
        sig, b"message", padding.PKCS1v15(), hashes.SHA256()
    )


def test_signing_needs_the_keys_own_pin(card: Card) -> None:
    tx(card, JPKI)
    di = SHA256_DIGEST_INFO_PREFIX + bytes(32)
    select_ef(card, jpki.EF_AUTH_KEY)
    assert tx(card, f"802A0080{len(di):02X}{di.hex()}00")[1] == "6982"
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    select_ef(card, jpki.EF_SIGN_KEY)
    assert tx(card, f"802A0080{len(di):02X}{di.hex()}00")[1] == "6982"
    # the key EF cannot be read either way
    select_ef(card, jpki.EF_AUTH_KEY)
    assert tx(card, "00B0000000")[1] == "6982"


def test_sign_key_signs_with_signature_password(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    # pkcs11-tool's order: SELECT 001B, VERIFY, again, then SELECT 001A, sign
    assert verify(card, jpki.EF_SIGN_PIN, "ABC123") == "9000"
    assert verify(card, jpki.EF_SIGN_PIN, "ABC123") == "9000"
    select_ef(card, jpki.EF_SIGN_KEY)
    di = SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(b"e-Tax").digest()
    sig, sw = tx(card, f"802A0080{len(di):02X}{di.hex()}00")
    assert sw == "9000"
    assert store.state.sign is not None
    public_key(store.state.sign.cert_der).verify(sig, b"e-Tax", padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("scheme", [0, 1, 2, 3, 4, 5])
def test_every_signing_scheme_verifies(card: Card, store: CardStore, scheme: int) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    message = b"scheme test"
    digest = hashlib.sha256(message).digest()
    data = {
        0: SHA256_DIGEST_INFO_PREFIX + digest,
        1: message,
        2: digest,
        3: message,
        4: digest,
        5: message,
    }[scheme]
    # P2 = 80|SFI names the key without a SELECT
    sig, sw = tx(card, f"802A{scheme:02X}97{len(data):02X}{data.hex()}00")
    assert sw == "9000" and len(sig) == 256
    assert store.state.auth is not None
    pub = public_key(store.state.auth.cert_der)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    if scheme in (0, 2, 3):
        pub.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    elif scheme == 1:
        # PKCS#1 v1.5 over the bare hash: recover the encoded message by hand
        em = pow(int.from_bytes(sig, "big"), pub.public_numbers().e, pub.public_numbers().n)
        assert em.to_bytes(256, "big").endswith(b"\x00" + digest)
        assert em.to_bytes(256, "big")[:2] == b"\x00\x01"
    else:
        pub.verify(sig, digest, pss, utils.Prehashed(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            pub.verify(
                sig, hashlib.sha256(b"other").digest(), pss, utils.Prehashed(hashes.SHA256())
            )


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("802A06 80 20" + "00" * 32 + "00", "6A86"),  # unknown scheme
        ("802A02 80 1F" + "00" * 31 + "00", "6700"),  # scheme 02 needs 32 bytes
        ("802A00 80 F6" + "00" * 246 + "00", "6700"),  # over 245 bytes
        ("802A00 80 20" + "00" * 32 + "80", "6700"),  # Le below 256
        ("802A00 81 20" + "00" * 32 + "00", "6A88"),  # SFI 1 is a certificate, not a key
        ("802A00 00 20" + "00" * 32 + "00", "6A86"),
    ],
)
def test_signature_errors(card: Card, apdu: str, sw: str) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    select_ef(card, jpki.EF_AUTH_KEY)
    assert tx(card, apdu)[1] == sw


def test_sign_with_current_ef_not_a_key(card: Card) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    select_ef(card, jpki.EF_AUTH_CERT)
    assert tx(card, "802A008020" + "00" * 32 + "00")[1] == "6A88"


# ---------------------------------------------------------------- PIN rules of the profile


def test_pin_counts_down_and_blocks_as_the_notes_say(card: Card) -> None:
    tx(card, JPKI)
    assert [verify(card, jpki.EF_AUTH_PIN, "0000") for _ in range(3)] == ["63C2", "63C1", "63C0"]
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "6984"
    assert verify(card, jpki.EF_AUTH_PIN, None) == "63C0"
    answers = [verify(card, jpki.EF_SIGN_PIN, "WRONG1") for _ in range(5)]
    assert answers == ["63C4", "63C3", "63C2", "63C1", "63C0"]
    assert verify(card, jpki.EF_SIGN_PIN, "ABC123") == "6984"


def test_lowercase_sign_password_is_a_mismatch_costing_a_try(card: Card) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_SIGN_PIN, "abc123") == "63C4"


def test_change_pin_enforces_the_policy(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_SIGN_PIN, "ABC123") == "9000"
    for bad in ("abc123", "ABC12", "A" * 17, "ABC-123"):
        assert tx(card, f"00240180{len(bad):02X}{bad.encode().hex()}")[1] == "6A80", bad
    assert tx(card, "0024018008" + b"NEWPASS1".hex())[1] == "9000"
    assert load(store.path).pins["sign"].value == "NEWPASS1"  # type: ignore[arg-type]
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    assert tx(card, "0024018005" + b"12345".hex())[1] == "6A80"
    assert tx(card, "0024018004" + b"9876".hex())[1] == "9000"


# ---------------------------------------------------------------- the helper application


def test_helper_my_number_and_basic_info(card: Card, store: CardStore) -> None:
    tx(card, HELPER)
    select_ef(card, jpki.EF_HELPER_MY_NUMBER)
    assert tx(card, "00B0000000")[1] == "6982"
    assert verify(card, jpki.EF_HELPER_PIN, None) == "63C3"
    assert verify(card, jpki.EF_HELPER_PIN, "1234") == "9000"
    select_ef(card, jpki.EF_HELPER_MY_NUMBER)
    raw, sw = tx(card, "00B0000011")
    assert sw == "9000" and raw[:3] == b"\xff\x10\x0c" and len(raw) == 17
    assert raw[3:15].decode() == store.state.identity.my_number
    select_ef(card, jpki.EF_HELPER_BASIC_INFO)
    raw, sw = tx(card, "00B0000000")
    assert sw == "9000"
    info = records.decode_helper_basic_info(raw)
    ident = store.state.identity
    assert info["name"] == ident.name
    assert info["address"] == ident.address
    assert info["sex"] == ident.sex
    assert str(info["birthdate"]).replace("-", "") == ident.birthdate.strftime("%Y%m%d")


def test_jpki_pin_does_not_open_the_helper(card: Card) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "1234") == "9000"
    tx(card, HELPER)
    select_ef(card, jpki.EF_HELPER_MY_NUMBER)
    assert tx(card, "00B0000000")[1] == "6982"


# ---------------------------------------------------------------- cards without certificates


def _card_for(state: CardState) -> Card:
    c = build_card(new_store(copy.deepcopy(state)))
    c.power_on()
    return c


def test_card_without_sign_certificate(base_states: dict[str, CardState]) -> None:
    card = _card_for(base_states["auth-only"])
    tx(card, JPKI)
    select_ef(card, jpki.EF_CERT_PRESENCE)
    assert tx(card, "00B0000003") == (bytes.fromhex("008F00"), "9000")
    # OpenSC's bind still works: both retry queries answer 63xx
    assert verify(card, jpki.EF_AUTH_PIN, None) == "63C3"
    assert verify(card, jpki.EF_SIGN_PIN, None) == "63C0"
    assert verify(card, jpki.EF_SIGN_PIN, "ABC123") == "6984"
    select_ef(card, jpki.EF_SIGN_CERT)
    assert tx(card, "00B0000004")[1] == "6982"
    select_ef(card, jpki.EF_SIGN_CA_CERT)
    assert tx(card, "00B0000004")[1] == "9000"


def test_card_without_any_certificate(base_states: dict[str, CardState]) -> None:
    card = _card_for(base_states["none"])
    tx(card, JPKI)
    select_ef(card, jpki.EF_CERT_PRESENCE)
    assert tx(card, "00B0000003") == (bytes.fromhex("000000"), "9000")
    select_ef(card, jpki.EF_AUTH_CERT)
    assert tx(card, "00B0000004")[1] == "6B00"
    assert verify(card, jpki.EF_AUTH_PIN, None) == "63C0"


# ---------------------------------------------------------------- persistence


def test_wrong_pin_is_on_disk_at_once(card: Card, store: CardStore) -> None:
    tx(card, JPKI)
    assert verify(card, jpki.EF_AUTH_PIN, "0000") == "63C2"
    assert store.path is not None
    on_disk = json.loads(store.path.read_text())
    assert on_disk["pins"]["auth"]["tries_left"] == 2
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_read_only_apdus_do_not_write_the_card_file(card: Card, store: CardStore) -> None:
    assert store.path is not None
    before = store.path.stat().st_mtime_ns
    tx(card, JPKI)
    verify(card, jpki.EF_AUTH_PIN, None)
    read_like_opensc(card, jpki.EF_AUTH_CERT)
    tx(card, HELPER)
    tx(card, "00A4040C05A000000001")
    tx(card, "00FF0000")
    assert store.writes == 0
    assert store.path.stat().st_mtime_ns == before


def test_crash_after_the_counter_write_still_costs_the_try(
    card: Card, store: CardStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power is lost right after the first write of a VERIFY with the right PIN."""
    real_commit = store.commit

    class PowerLoss(BaseException):
        pass

    def commit_then_die() -> None:
        real_commit()
        raise PowerLoss

    tx(card, JPKI)
    select_ef(card, jpki.EF_AUTH_PIN)
    monkeypatch.setattr(store, "commit", commit_then_die)
    card2 = build_card(store)  # rebuilt so its PIN objects use the dying commit
    card2.power_on()
    tx(card2, JPKI)
    select_ef(card2, jpki.EF_AUTH_PIN)
    with pytest.raises(PowerLoss):
        card2.process(bytes.fromhex("0020008004" + b"1234".hex()))
    assert store.path is not None
    assert load(store.path).pins["auth"].tries_left == 2


# ---------------------------------------------------------------- never crash, never leak state


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from(["", JPKI, HELPER]),
    raw=st.one_of(
        st.binary(max_size=300),
        jst.malformed_apdus(),
        jst.command_apdus().map(lambda a: a.to_bytes()),
    ),
)
def test_any_bytes_answer_a_status_word_and_touch_no_pin(
    base_states: dict[str, CardState], prefix: str, raw: bytes
) -> None:
    store = new_store(copy.deepcopy(base_states["both"]))
    card = build_card(store)
    card.power_on()
    if prefix:
        tx(card, prefix)
    resp = card.process(raw)
    assert len(resp) >= 2 and resp[-2] in (0x90, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6D, 0x6E)
    pin_command = len(raw) > 4 and raw[0] & 0xF0 == 0 and raw[1] in (0x20, 0x24)
    if not pin_command:
        assert store.writes == 0
        assert all(p.tries_left == p.max_tries for p in store.state.pins.values())
