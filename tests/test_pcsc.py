"""The emulated card through real pcscd + vpcd, read with pyscard (no mocks).

Each test gets its own fresh card (``vpcd_reader``) in vpcd slot 0; tests
that need a second reader or a server process use slot 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki_sim.iso7816.errors import ApduError, PinError
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.state import CardState, load
from jpki_sim.transport.pcsc import (
    PcscError,
    PcscTransport,
    list_readers,
    reader_status,
    resolve_reader,
)
from pcsc_harness import (
    PORTS,
    PcscSession,
    ServedCard,
    ServeProcess,
    attach,
    detach,
    stored_copy,
)

pytestmark = pytest.mark.pcsc

SELECT_JPKI = bytes.fromhex("00A4040C0A") + jpki.JPKI_AID
SHA256_DIGESTINFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def tx(t: PcscTransport, hexstr: str) -> tuple[bytes, int]:
    resp = t.transmit(bytes.fromhex(hexstr.replace(" ", "")))
    return resp[:-2], int.from_bytes(resp[-2:], "big")


def select_ef(fid: int) -> str:
    return f"00A4020C02{fid:04X}"


# ---------------------------------------------------------------- one card


def test_reader_listed_with_the_jpki_atr(vpcd_reader: ServedCard) -> None:
    assert vpcd_reader.reader in list_readers()
    status = {name: (present, atr) for name, present, atr in reader_status()}
    assert status[vpcd_reader.reader] == (True, jpki.ATR)
    with PcscTransport(vpcd_reader.reader) as t:
        assert t.atr() == jpki.ATR == bytes.fromhex("3BE000FF8131FE4514")
        assert t.protocol == "T=1"
        assert t.name == vpcd_reader.reader


def test_select_read_certificates_and_sign(vpcd_reader: ServedCard) -> None:
    assert vpcd_reader.store is not None
    state = vpcd_reader.store.state
    assert state.auth is not None and state.sign is not None
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        client.select_jpki()
        assert client.read_certificate("auth") == state.auth.cert_der
        assert client.read_certificate("auth-ca") == state.auth_ca_der
        assert client.read_certificate("sign-ca") == state.sign_ca_der
        # the signature certificate and key need the signature PIN
        with pytest.raises(ApduError, match="6982"):
            client.read_certificate("sign")
        client.verify_pin("sign", jpki.DEFAULT_PINS["sign"])
        assert client.read_certificate("sign") == state.sign.cert_der

        client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        message = b"signed through pcscd and vpcd"
        digest_info = SHA256_DIGESTINFO_PREFIX + hashlib.sha256(message).digest()
        signature = client.sign("auth", digest_info)
    assert len(signature) == 256
    key = x509.load_der_x509_certificate(state.auth.cert_der).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_raw_apdus_match_what_opensc_sends(vpcd_reader: ServedCard) -> None:
    with PcscTransport(vpcd_reader.reader) as t:
        assert tx(t, SELECT_JPKI.hex()) == (b"", 0x9000)
        assert tx(t, select_ef(jpki.EF_AUTH_PIN)) == (b"", 0x9000)
        assert tx(t, "00200080") == (b"", 0x63C3)  # retry query
        assert tx(t, select_ef(jpki.EF_AUTH_CERT)) == (b"", 0x9000)
        head, sw = tx(t, "00B0000004")
        assert sw == 0x9000 and head[:2] == b"\x30\x82"
        data, sw = tx(t, "00B0000000")  # Le 00: 256 bytes
        assert sw == 0x9000 and len(data) == 256
        assert tx(t, "00A4040C05A000000001") == (b"", 0x6A82)  # foreign AID


def test_too_short_commands_are_refused_before_the_reader(vpcd_reader: ServedCard) -> None:
    """A 1-byte message would read as a vpcd power event and hang the slot."""
    with PcscTransport(vpcd_reader.reader) as t:
        for raw in (b"", b"\x00"):
            with pytest.raises(PcscError, match="too short to send through a reader"):
                t.transmit(raw)
        # two or three bytes reach the card, which refuses them as malformed
        assert tx(t, "00A404")[1] == 0x6700
        assert tx(t, SELECT_JPKI.hex())[1] == 0x9000


def test_reset_clears_the_verified_state(vpcd_reader: ServedCard) -> None:
    with PcscTransport(vpcd_reader.reader) as t:
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_SIGN_PIN))
        assert tx(t, "0020008006" + b"ABC123".hex())[1] == 0x9000
        tx(t, select_ef(jpki.EF_SIGN_CERT))
        assert tx(t, "00B0000004")[1] == 0x9000
        assert t.reset() == jpki.ATR  # vpcd: 02 reset, 04 get ATR
        # the current application is gone too
        assert tx(t, select_ef(jpki.EF_SIGN_CERT))[1] != 0x9000
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_SIGN_CERT))
        assert tx(t, "00B0000004")[1] == 0x6982


def test_power_cycle_clears_the_verified_state(vpcd_reader: ServedCard) -> None:
    with PcscTransport(vpcd_reader.reader) as t:
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_AUTH_PIN))
        assert tx(t, "0020008004" + b"1234".hex())[1] == 0x9000
        tx(t, select_ef(jpki.EF_AUTH_KEY))
        digest_info = SHA256_DIGESTINFO_PREFIX + bytes(32)
        assert tx(t, "802A0080" + f"{len(digest_info):02X}" + digest_info.hex() + "00")[1] == 0x9000
        t.power_cycle()  # vpcd: 00 power off, 01 power on
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_AUTH_KEY))
        assert tx(t, "802A0080" + f"{len(digest_info):02X}" + digest_info.hex() + "00")[1] == 0x6982
    # the PIN counter, being persistent, was not touched by any of this
    assert vpcd_reader.store is not None
    assert load(vpcd_reader.card_file).pins["auth"].tries_left == 3


def test_new_connection_after_unpower_starts_clean(vpcd_reader: ServedCard) -> None:
    from smartcard import scard

    with PcscTransport(vpcd_reader.reader) as t:
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_SIGN_PIN))
        assert tx(t, "0020008006" + b"ABC123".hex())[1] == 0x9000
        # leave the card unpowered, as a client that ends with SCARD_UNPOWER_CARD does
        code = scard.SCardDisconnect(t._card, scard.SCARD_UNPOWER_CARD)
        assert code == scard.SCARD_S_SUCCESS
        t._card = None
    with PcscTransport(vpcd_reader.reader) as t:
        tx(t, SELECT_JPKI.hex())
        tx(t, select_ef(jpki.EF_SIGN_CERT))
        assert tx(t, "00B0000004")[1] == 0x6982


def test_wrong_pin_is_saved_as_it_happens(vpcd_reader: ServedCard) -> None:
    assert vpcd_reader.store is not None and vpcd_reader.store.path is not None
    with PcscTransport(vpcd_reader.reader) as t:
        client = JpkiClient(t)
        with pytest.raises(PinError) as err:
            client.verify_pin("auth", "9999")
        assert err.value.tries_left == 2
        # on disk before the next command
        assert load(vpcd_reader.card_file).pins["auth"].tries_left == 2
        assert client.pin_status("auth") == 2


def test_reader_errors_are_one_line() -> None:
    with pytest.raises(PcscError, match="no reader number 7"):
        resolve_reader(7, ["A", "B"])
    with pytest.raises(PcscError, match="no reader matches 'zz'"):
        resolve_reader("zz", ["Virtual PCD 00 00"])
    assert resolve_reader("00 01", ["Virtual PCD 00 00", "Virtual PCD 00 01"]) == (
        "Virtual PCD 00 01"
    )


def test_empty_reader_says_so(pcscd_session: PcscSession) -> None:
    # slot 1 has no card unless a test put one there
    reader = pcscd_session.reader_for_port(PORTS[1])
    with pytest.raises(PcscError, match="no card in reader"):
        PcscTransport(reader)


# ---------------------------------------------------------------- two cards


def test_two_cards_in_two_readers_are_independent(
    vpcd_reader: ServedCard, pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path
) -> None:
    other_reader = pcscd_session.reader_for_port(PORTS[1])
    other_store = stored_copy(jpki_state, tmp_path / "other.json")
    bridge = attach(build_card(other_store), PORTS[1], other_reader)
    try:
        with PcscTransport(vpcd_reader.reader) as a, PcscTransport(other_reader) as b:
            ca, cb = JpkiClient(a), JpkiClient(b)
            with pytest.raises(PinError):
                ca.verify_pin("auth", "0000")
            cb.verify_pin("sign", jpki.DEFAULT_PINS["sign"])
            assert ca.pin_status("auth") == 2 and cb.pin_status("auth") == 3
            # verified on b only
            assert cb.read_certificate("sign")
            with pytest.raises(ApduError, match="6982"):
                ca.read_certificate("sign")
        assert load(vpcd_reader.card_file).pins["auth"].tries_left == 2
        assert load(tmp_path / "other.json").pins["auth"].tries_left == 3
    finally:
        detach(bridge, other_reader)


# ---------------------------------------------------------------- the serve command


def test_kill_9_loses_no_counter_decrement(
    pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path
) -> None:
    reader = pcscd_session.reader_for_port(PORTS[1])
    card_file = tmp_path / "card.json"
    stored_copy(jpki_state, card_file)
    server = ServeProcess([str(card_file), "--vpcd", f"localhost:{PORTS[1]}"])
    try:
        (line,) = server.wait_ready()
        assert f"card {card_file} ready in reader '{reader}'" in line
        with PcscTransport(reader) as t:
            tx(t, SELECT_JPKI.hex())
            tx(t, select_ef(jpki.EF_SIGN_PIN))
            assert tx(t, "0020008006" + b"WRONG1".hex())[1] == 0x63C4
            os.kill(server.proc.pid, signal.SIGKILL)  # before anything else reaches the card
            server.proc.wait()
        assert load(card_file).pins["sign"].tries_left == 4
    finally:
        server.kill()
    # a new server on the same file: the card still says 4
    from jpki_sim.transport.pcsc import wait_for_card

    assert wait_for_card(reader, present=False, timeout=5)
    server = ServeProcess([str(card_file), "--vpcd", f"localhost:{PORTS[1]}"])
    try:
        server.wait_ready()
        with PcscTransport(reader) as t:
            assert JpkiClient(t).pin_status("sign") == 4
        assert server.terminate() == 0  # SIGTERM: clean stop
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)


def test_serve_reloads_a_card_file_rewritten_by_another_process(
    pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path
) -> None:
    from jpki_sim.profiles.jpki.state import save
    from jpki_sim.transport.pcsc import wait_for_card

    reader = pcscd_session.reader_for_port(PORTS[1])
    card_file = tmp_path / "card.json"
    stored_copy(jpki_state, card_file)
    server = ServeProcess([str(card_file), "--vpcd", f"localhost:{PORTS[1]}", "--json"])
    try:
        (line,) = server.wait_ready()
        event = json.loads(line)
        # ready: pcscd itself shows the card in the reader
        assert {k: event[k] for k in ("event", "card", "reader", "vpcd", "confirmed")} == {
            "event": "ready", "card": str(card_file), "reader": reader,
            "vpcd": f"localhost:{PORTS[1]}", "confirmed": True}
        # e.g. `jpki-sim card reset-pin` run meanwhile: the counter on file changes
        state = load(card_file)
        state.pins["auth"].tries_left = 1
        save(state, card_file)
        with PcscTransport(reader) as t:
            t.power_cycle()  # the next power-on picks up the file
            assert JpkiClient(t).pin_status("auth") == 1
        assert server.terminate() == 0
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)
