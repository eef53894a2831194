"""JpkiClient: the exact APDU bytes it sends, and how it reads the answers.

Most tests play a scripted transport that checks every command byte for byte
against what the real card's readers send (OpenSC's JPKI driver); the last
group runs the client against the in-process emulated card.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import ApduError, PinError
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client import (
    BasicInfo,
    JpkiClient,
    decode_basic_info,
    decode_my_number,
    der_length,
)
from jpki_sim.profiles.jpki.state import CardState

SELECT_JPKI = "00A4040C0AD392F000260100000001"
SELECT_HELPER = "00A4040C0AD3921000310001010408"


class ScriptedTransport:
    """Answers a fixed script and fails on any command it did not expect."""

    name = "scripted"

    def __init__(self, script: Iterable[tuple[str, str]]) -> None:
        self.script = [(bytes.fromhex(c), bytes.fromhex(r)) for c, r in script]
        self.sent: list[bytes] = []
        self.resets = 0

    def transmit(self, apdu: bytes) -> bytes:
        assert self.script, f"unexpected extra command {apdu.hex().upper()}"
        expected, response = self.script.pop(0)
        assert apdu.hex().upper() == expected.hex().upper()
        self.sent.append(apdu)
        return response

    def atr(self) -> bytes:
        return jpki.ATR

    def reset(self) -> bytes:
        self.resets += 1
        return jpki.ATR

    def close(self) -> None:
        pass

    def done(self) -> None:
        assert not self.script, f"{len(self.script)} scripted commands never sent"


def fake_cert(total: int) -> bytes:
    """A DER-looking SEQUENCE of ``total`` bytes (30 82 HH LL + body)."""
    body = bytes((i * 7) & 0xFF for i in range(total - 4))
    return b"\x30\x82" + (total - 4).to_bytes(2, "big") + body


def test_select_forms() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C02000A", "9000"),
        (SELECT_HELPER, "9000"),
    ])
    c = JpkiClient(t)
    c.select_jpki()
    assert c.view.application_name == "jpki"
    c.select_ef(jpki.EF_AUTH_CERT)
    assert c.view.ef == 0x000A
    c.select_helper()
    assert c.view.application_name == "helper" and c.view.ef is None
    t.done()


def test_select_unknown_ef_raises_with_sw() -> None:
    t = ScriptedTransport([(SELECT_JPKI, "9000"), ("00A4020C020099", "6A82")])
    c = JpkiClient(t)
    c.select_jpki()
    with pytest.raises(ApduError) as exc:
        c.select_ef(0x0099)
    assert exc.value.sw == 0x6A82
    assert "6A82" in str(exc.value)


def test_read_certificate_like_opensc() -> None:
    cert = fake_cert(600)  # 2 full chunks and a remainder of 88
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C02000A", "9000"),
        ("00B0000004", cert[:4].hex() + "9000"),
        ("00B0000000", cert[:256].hex() + "9000"),
        ("00B0010000", cert[256:512].hex() + "9000"),
        ("00B0020058", cert[512:].hex() + "9000"),
    ])
    c = JpkiClient(t)
    assert c.read_certificate("auth") == cert
    t.done()


def test_read_certificate_exact_multiple_of_chunk() -> None:
    cert = fake_cert(512)
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C020002", "9000"),
        ("00B0000004", cert[:4].hex() + "9000"),
        ("00B0000000", cert[:256].hex() + "9000"),
        ("00B0010000", cert[256:].hex() + "9000"),
    ])
    assert JpkiClient(t).read_certificate("sign-ca") == cert
    t.done()


def test_read_sign_certificate_without_pin_is_6982() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C020001", "9000"),
        ("00B0000004", "6982"),
    ])
    with pytest.raises(ApduError) as exc:
        JpkiClient(t).read_certificate("sign")
    assert exc.value.sw == 0x6982


def test_read_certificate_unknown_name() -> None:
    with pytest.raises(ValueError, match="auth-ca"):
        JpkiClient(ScriptedTransport([])).read_certificate("root")


def test_der_length_forms() -> None:
    assert der_length(bytes.fromhex("3082062B")) == 0x62B + 4
    assert der_length(bytes.fromhex("3081C8")) == 0xC8 + 3
    assert der_length(bytes.fromhex("3010")) == 0x12
    with pytest.raises(ValueError):
        der_length(bytes.fromhex("FFFFFFFF"))


def test_pin_status_and_verify() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C020018", "9000"),
        ("00200080", "63C3"),
        ("00A4020C020018", "9000"),
        ("002000800431313131", "63C2"),
        ("00A4020C020018", "9000"),
        ("002000800431323334", "9000"),
    ])
    c = JpkiClient(t)
    assert c.pin_status("auth") == 3
    with pytest.raises(PinError) as exc:
        c.verify_pin("auth", "1111")
    assert exc.value.tries_left == 2 and exc.value.sw == 0x63C2
    assert "auth" not in c.view.verified
    c.verify_pin("auth", "1234")
    assert c.view.verified == {"auth"}
    t.done()


def test_blocked_pin_is_pin_error_with_zero_tries() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C02001B", "9000"),
        ("0020008006414243313233", "6984"),
    ])
    with pytest.raises(PinError) as exc:
        JpkiClient(t).verify_pin("sign", "ABC123")
    assert exc.value.tries_left == 0 and exc.value.sw == 0x6984


def test_pin_status_blocked_reads_63c0() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"), ("00A4020C02001B", "9000"), ("00200080", "63C0"),
    ])
    assert JpkiClient(t).pin_status("sign") == 0


def test_helper_pin_selects_helper_application() -> None:
    t = ScriptedTransport([
        (SELECT_HELPER, "9000"), ("00A4020C020011", "9000"), ("00200080", "63C3"),
    ])
    assert JpkiClient(t).pin_status("helper") == 3
    t.done()


def test_change_pin_verifies_old_then_changes() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C020018", "9000"),
        ("002000800431323334", "9000"),
        ("00A4020C020018", "9000"),
        ("002401800435363738", "9000"),
    ])
    JpkiClient(t).change_pin("auth", "5678", old="1234")
    t.done()


def test_sign_sends_case4_with_le_00() -> None:
    digest_info = bytes(51)
    sig = bytes(range(256))
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C020017", "9000"),
        ("802A008033" + digest_info.hex() + "00", sig.hex() + "9000"),
    ])
    assert JpkiClient(t).sign("auth", digest_info) == sig
    t.done()


def test_sign_scheme_is_p1_and_sign_key_is_001a() -> None:
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"),
        ("00A4020C02001A", "9000"),
        ("802A038003616263" + "00", "6982"),
    ])
    with pytest.raises(ApduError) as exc:
        JpkiClient(t).sign("sign", b"abc", scheme=jpki.SIGN_SHA256_PKCS1)
    assert exc.value.sw == 0x6982


def test_token_label() -> None:
    label = b"JPKIAPICCTOKEN2".ljust(32, b" ")
    t = ScriptedTransport([
        (SELECT_JPKI, "9000"), ("00A4020C020006", "9000"), ("00B0000020", label.hex() + "9000"),
    ])
    assert JpkiClient(t).token_label() == "JPKIAPICCTOKEN2"


MY_NUMBER_EF = bytes.fromhex("FF100C") + b"123456789018" + b"\xff\xff"


def test_my_number() -> None:
    t = ScriptedTransport([
        (SELECT_HELPER, "9000"),
        ("00A4020C020001", "9000"),
        ("00B0000008", MY_NUMBER_EF[:8].hex() + "9000"),
        ("00B0000807", MY_NUMBER_EF[8:15].hex() + "9000"),
    ])
    assert JpkiClient(t).my_number() == "123456789018"
    t.done()


def _basic_info_ef() -> bytes:
    from jpki_sim.profiles.jpki import records

    ef = records.encode_helper_basic_info("番号\u3000花子", "東京都千代田区１－１", "19930331", "2")
    return ef + b"\xff" * 10


def test_basic_info_decodes_the_card_layout() -> None:
    info = decode_basic_info(_basic_info_ef())
    assert info == BasicInfo("番号\u3000花子", "東京都千代田区１－１", "19930331", "2")
    assert info.birth_date is not None and info.birth_date.year == 1993


def test_basic_info_reads_header_then_rest() -> None:
    ef = _basic_info_ef()
    total = len(ef) - 10
    t = ScriptedTransport([
        (SELECT_HELPER, "9000"),
        ("00A4020C020002", "9000"),
        ("00B0000008", ef[:8].hex() + "9000"),
        (f"00B00008{total - 8:02X}", ef[8:total].hex() + "9000"),
    ])
    assert JpkiClient(t).basic_info().sex == "2"
    t.done()


def test_decode_my_number_rejects_wrong_tag() -> None:
    with pytest.raises(ValueError):
        decode_my_number(bytes.fromhex("FF200C") + b"123456789018")


# ---------------------------------------------------------------- 61xx / 6Cxx


def test_auto_mode_follows_61xx_and_reports_exchanges() -> None:
    t = ScriptedTransport([
        ("00B0000000", "AABB6102"),
        ("00C0000002", "CCDD9000"),
    ])
    c = JpkiClient(t, mode="auto")
    resp = c.transmit_apdu(bytes.fromhex("00B0000000"))
    assert resp.data == bytes.fromhex("AABBCCDD") and resp.sw == 0x9000
    assert [e.command.hex().upper() for e in c.last_exchanges] == ["00B0000000", "00C0000002"]


def test_auto_mode_resends_with_le_from_6cxx() -> None:
    t = ScriptedTransport([
        ("00B0000010", "6C04"),
        ("00B0000004", "010203049000"),
    ])
    c = JpkiClient(t)
    resp = c.transmit_apdu(CommandApdu(0, 0xB0, 0, 0, b"", 16))
    assert resp.data == bytes.fromhex("01020304")
    assert len(c.last_exchanges) == 2


def test_transparent_mode_reports_61xx_as_is() -> None:
    t = ScriptedTransport([("00B0000000", "AABB6102")])
    c = JpkiClient(t, mode="transparent")
    resp = c.transmit_apdu(bytes.fromhex("00B0000000"))
    assert resp.sw == 0x6102 and resp.data == bytes.fromhex("AABB")
    assert len(c.last_exchanges) == 1


def test_observer_sees_every_exchange_and_reset() -> None:
    seen: list[tuple[str, ...]] = []

    class Recorder:
        def xfer(self, command: bytes, response: bytes, started: float, duration: float) -> None:
            seen.append(("xfer", command.hex(), response.hex(), started, duration))

        def reset(self, atr: bytes, kind: str = "warm") -> None:
            seen.append(("reset", atr.hex(), kind))

    t = ScriptedTransport([("00B0000000", "6101"), ("00C0000001", "419000")])
    ticks = iter([10.0, 10.5, 11.0, 11.25])  # the injected clock: start, end of each exchange
    c = JpkiClient(t, observer=Recorder(), clock=lambda: next(ticks))
    c.transmit_apdu(bytes.fromhex("00B0000000"))
    c.view.verified.add("auth")
    c.reset()
    assert seen == [
        ("xfer", "00b0000000", "6101", 10.0, 0.5),
        ("xfer", "00c0000001", "419000", 11.0, 0.25),
        ("reset", jpki.ATR.hex(), "warm"),
    ]
    assert c.view.verified == set() and t.resets == 1


def test_transmit_raw_sends_malformed_bytes_unchanged() -> None:
    t = ScriptedTransport([("00B0", "6700")])
    assert JpkiClient(t).transmit_raw(bytes.fromhex("00B0")) == bytes.fromhex("6700")


def test_bad_mode_refused() -> None:
    with pytest.raises(ValueError):
        JpkiClient(ScriptedTransport([]), mode="fast")


# ---------------------------------------------------------------- against the in-process card


ClientAndState = tuple[JpkiClient, CardState]


@pytest.fixture
def card_client() -> ClientAndState:
    from pathlib import Path

    from jpki_sim.profiles.jpki.build import build_card
    from jpki_sim.profiles.jpki.state import load, new_store
    from jpki_sim.transport.inprocess import InProcessTransport

    state = load(Path(__file__).parent / "shell_scripts" / "card.json")
    store = new_store(state)  # in memory: the fixture file is never changed
    return JpkiClient(InProcessTransport(build_card(store))), state


def test_in_process_certificates_are_the_issued_bytes(card_client: ClientAndState) -> None:
    client, state = card_client
    assert state.auth is not None and state.sign is not None
    assert client.read_certificate("auth") == state.auth.cert_der
    assert client.read_certificate("auth-ca") == state.auth_ca_der
    assert client.read_certificate("sign-ca") == state.sign_ca_der
    with pytest.raises(ApduError) as exc:
        client.read_certificate("sign")
    assert exc.value.sw == 0x6982
    client.verify_pin("sign", jpki.DEFAULT_PINS["sign"])
    assert client.read_certificate("sign") == state.sign.cert_der


def test_in_process_pins(card_client: ClientAndState) -> None:
    client, _state = card_client
    assert client.pin_status("auth") == 3
    with pytest.raises(PinError) as exc:
        client.verify_pin("auth", "0000")
    assert exc.value.tries_left == 2
    assert client.pin_status("auth") == 2
    client.verify_pin("auth", "1234")
    assert client.pin_status("auth") == 3  # an empty VERIFY still answers 63Cx when verified
    assert client.view.verified == {"auth"}
    client.change_pin("auth", "4321")
    client.reset()
    assert client.view.verified == set()
    with pytest.raises(PinError):
        client.verify_pin("auth", "1234")
    client.verify_pin("auth", "4321")


@pytest.mark.parametrize("scheme", range(6))
def test_in_process_signatures_verify(card_client: ClientAndState, scheme: int) -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

    from jpki_sim.profiles.jpki.signing import digest_info

    client, state = card_client
    client.verify_pin("auth", "1234")
    message = b"signed by the in-process card"
    digest = hashlib.sha256(message).digest()
    data = {0: digest_info("sha256", digest), 2: digest, 4: digest}.get(scheme, message)
    sig = client.sign("auth", data, scheme=scheme)
    assert len(sig) == 256
    assert state.auth is not None
    public = x509.load_der_x509_certificate(state.auth.cert_der).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    if scheme == 1:
        assert public.recover_data_from_signature(sig, padding.PKCS1v15(), None) == digest
    elif scheme in (4, 5):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        public.verify(sig, digest, pss, utils.Prehashed(hashes.SHA256()))
    else:
        public.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())


def test_in_process_helper_application(card_client: ClientAndState) -> None:
    client, state = card_client
    with pytest.raises(ApduError):
        client.my_number()
    client.verify_pin("helper", "1234")
    assert client.my_number() == state.identity.my_number
    info = client.basic_info()
    assert (info.name, info.address, info.sex) == (
        state.identity.name, state.identity.address, state.identity.sex)
    assert info.birth_date == state.identity.birthdate
    assert client.token_label() == "JPKIAPICCTOKEN2"
    assert client.certificate_presence() == bytes.fromhex("8F8F00")
    # selecting the JPKI application dropped the helper PIN
    assert client.view.verified == set()
