"""The vpcd bridge without pcscd: framing, control codes and connection handling.

The peer here is a small TCP listener playing vpcd's side of the socket (the
same bytes vpcd sends); the tests through real pcscd are in test_pcsc.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki_sim.iso7816.transport import EmulatedCard
from jpki_sim.transport.vpcd import (
    GET_ATR,
    POWER_OFF,
    POWER_ON,
    RESET,
    FrameParser,
    VpcdBridge,
    frame,
    parse_address,
    redact_pin,
)

ATR = bytes.fromhex("3BE000FF8131FE4514")


class LogCard:
    """A card that records power events and answers APDUs by a small rule set."""

    def __init__(self, atr: bytes = ATR) -> None:
        self._atr = atr
        self.events: list[str] = []
        self.selected = False

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> bytes:
        self.events.append("on")
        self.selected = False
        return self._atr

    def power_off(self) -> None:
        self.events.append("off")
        self.selected = False

    def reset(self) -> bytes:
        self.events.append("reset")
        self.selected = False
        return self._atr

    def process(self, apdu: bytes) -> bytes:
        self.events.append(apdu.hex().upper())
        if apdu[1] == 0xA4:
            self.selected = True
            return b"\x90\x00"
        if apdu[1] == 0xB0:  # "read": as many bytes as Le asks, to test big frames
            n = apdu[4] or 256
            return bytes(range(256))[:n] + b"\x90\x00"
        if apdu[1] == 0xCA:
            return (b"\x01" if self.selected else b"\x00") + b"\x90\x00"
        if apdu[1] == 0xEE:
            return b""  # a broken card: the bridge must not pass this on
        if apdu[1] == 0xEF:
            raise RuntimeError("card bug")
        if apdu[1] == 0xED:
            return None  # type: ignore[return-value]  # a card breaking its contract
        return b"\x6d\x00"


# ---------------------------------------------------------------- framing


def test_parser_one_message() -> None:
    assert FrameParser().feed(b"\x00\x01\x04") == [b"\x04"]


def test_parser_several_messages_in_one_segment() -> None:
    # reset then get-ATR in one segment, as vpcd sends them
    assert FrameParser().feed(bytes.fromhex("000102000104")) == [b"\x02", b"\x04"]


def test_parser_split_everywhere() -> None:
    stream = frame(b"\x01") + frame(bytes.fromhex("00A4040C02AABB")) + frame(b"\x04")
    for cut in range(len(stream) + 1):
        parser = FrameParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert got == [b"\x01", bytes.fromhex("00A4040C02AABB"), b"\x04"], cut
        assert parser.pending == 0


def test_parser_byte_by_byte_and_pending() -> None:
    parser = FrameParser()
    out: list[bytes] = []
    data = frame(b"\xaa" * 300)
    for i, b in enumerate(data):
        out += parser.feed(bytes([b]))
        if i < len(data) - 1:
            assert out == [] and parser.pending == i + 1
    assert out == [b"\xaa" * 300]


def test_parser_empty_and_maximal_messages() -> None:
    big = bytes(65535)
    assert FrameParser().feed(b"\x00\x00" + frame(big)) == [b"", big]


def test_frame_refuses_what_vpcd_cannot_carry() -> None:
    assert frame(b"\x90\x00") == b"\x00\x02\x90\x00"
    with pytest.raises(ValueError):
        frame(bytes(65536))


@given(
    st.lists(st.binary(min_size=1, max_size=600), max_size=8),
    st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20),
)
def test_parser_any_segmentation(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    parser = FrameParser()
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += parser.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == messages
    assert parser.pending == 0


def test_redact_pin_hides_verify_and_change_data() -> None:
    assert redact_pin(bytes.fromhex("002000800431323334")) == "0020008004 <4 bytes hidden>"
    assert redact_pin(bytes.fromhex("00240080083132333435363738")).endswith("<8 bytes hidden>")
    assert redact_pin(bytes.fromhex("00200080")) == "00200080"  # retry query: no PIN in it
    assert redact_pin(bytes.fromhex("00A4040C02AABB")) == "00A4040C02AABB"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:35963", ("localhost", 35963)),
        ("127.0.0.1:40000", ("127.0.0.1", 40000)),
        (":35964", ("localhost", 35964)),
        ("example.org", ("example.org", 35963)),
        ("[::1]:35963", ("::1", 35963)),
        ("35964", ("localhost", 35964)),
        ("::1", ("::1", 35963)),
        ("[::1]", ("::1", 35963)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host:port", "host:0", "host:70000"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


# ---------------------------------------------------------------- a vpcd peer


class FakeVpcd:
    """vpcd's side of the socket: listens, accepts the card, sends raw bytes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.settimeout(5)
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        self.conn = conn
        return conn

    def send(self, raw: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(raw)

    def read_frame(self) -> bytes:
        assert self.conn is not None
        header = self._exact(2)
        return self._exact((header[0] << 8) | header[1])

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            assert chunk, "bridge closed the connection"
            buf += chunk
        return buf

    def nothing_pending(self, wait: float = 0.2) -> bool:
        assert self.conn is not None
        self.conn.settimeout(wait)
        try:
            return self.conn.recv(1, socket.MSG_PEEK) == b""  # only a close is acceptable
        except TimeoutError:
            return True
        finally:
            self.conn.settimeout(5)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def vpcd_peer() -> Iterator[FakeVpcd]:
    peer = FakeVpcd()
    yield peer
    peer.close()


def served(card: EmulatedCard, peer: FakeVpcd, **kwargs: object) -> VpcdBridge:
    bridge = VpcdBridge(card, "127.0.0.1", peer.port, **kwargs)  # type: ignore[arg-type]
    bridge.start()
    peer.accept()
    return bridge


def test_control_codes(vpcd_peer: FakeVpcd) -> None:
    card = LogCard()
    attached: list[VpcdBridge] = []
    bridge = served(card, vpcd_peer, on_attached=attached.append)
    try:
        vpcd_peer.send(frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == ATR
        assert bridge.attached.is_set() and attached == [bridge]
        # power on / reset / power off get no reply; only the ATR request does
        vpcd_peer.send(frame(bytes([POWER_ON])) + frame(bytes([RESET])) + frame(bytes([POWER_OFF])))
        vpcd_peer.send(frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == ATR
        assert vpcd_peer.nothing_pending()
        assert card.events == ["on", "reset", "off"]
    finally:
        bridge.stop()


def test_apdus_get_exactly_one_frame_each(vpcd_peer: FakeVpcd) -> None:
    card = LogCard()
    bridge = served(card, vpcd_peer)
    try:
        # select, then a query that shows the selection, merged into one segment
        vpcd_peer.send(frame(bytes.fromhex("00A4040C02AABB")) + frame(bytes.fromhex("00CA000001")))
        assert vpcd_peer.read_frame() == b"\x90\x00"
        assert vpcd_peer.read_frame() == b"\x01\x90\x00"
        # a 256-byte answer, requested byte by byte
        for b in frame(bytes.fromhex("00B0000000")):
            vpcd_peer.send(bytes([b]))
        assert vpcd_peer.read_frame() == bytes(range(256)) + b"\x90\x00"
        assert vpcd_peer.nothing_pending()
        assert bridge.apdu_count == 3
    finally:
        bridge.stop()


def test_header_and_payload_in_separate_segments(vpcd_peer: FakeVpcd) -> None:
    """Debian's vpcd writes the length and the payload with two send() calls."""
    import time

    card = LogCard()
    bridge = served(card, vpcd_peer)
    select = bytes.fromhex("00A4040C02AABB")
    query = bytes.fromhex("00CA000001")
    try:
        # a lone header, then exactly its payload
        vpcd_peer.send(frame(select)[:2])
        time.sleep(0.05)  # let the header arrive as its own segment
        vpcd_peer.send(select)
        assert vpcd_peer.read_frame() == b"\x90\x00"
        # a lone header, then its payload together with the next whole message
        vpcd_peer.send(frame(query)[:2])
        time.sleep(0.05)
        vpcd_peer.send(query + frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == b"\x01\x90\x00"
        assert vpcd_peer.read_frame() == ATR
        # a lone header, then its payload in two pieces
        vpcd_peer.send(frame(query)[:2])
        time.sleep(0.05)
        vpcd_peer.send(query[:2])
        time.sleep(0.05)
        vpcd_peer.send(query[2:])
        assert vpcd_peer.read_frame() == b"\x01\x90\x00"
        # a lone header of an empty message is a whole message: nothing to answer
        vpcd_peer.send(b"\x00\x00")
        time.sleep(0.05)
        vpcd_peer.send(frame(query))
        assert vpcd_peer.read_frame() == b"\x01\x90\x00"
        assert vpcd_peer.nothing_pending()
        assert card.events == [select.hex().upper()] + [query.hex().upper()] * 3
    finally:
        bridge.stop()


def test_power_events_reach_the_card_between_apdus(vpcd_peer: FakeVpcd) -> None:
    card = LogCard()
    bridge = served(card, vpcd_peer)
    try:
        vpcd_peer.send(frame(bytes.fromhex("00A4040C02AABB")))
        assert vpcd_peer.read_frame() == b"\x90\x00"
        vpcd_peer.send(bytes.fromhex("000102000104") + frame(bytes.fromhex("00CA000001")))
        assert vpcd_peer.read_frame() == ATR
        assert vpcd_peer.read_frame() == b"\x00\x90\x00"  # the reset cleared the selection
    finally:
        bridge.stop()


def test_never_an_empty_frame(vpcd_peer: FakeVpcd) -> None:
    bridge = served(LogCard(), vpcd_peer)
    try:
        vpcd_peer.send(frame(bytes.fromhex("00EE0000")))  # card answers nothing
        assert vpcd_peer.read_frame() == b"\x6f\x00"
        vpcd_peer.send(frame(bytes.fromhex("00EF0000")))  # card raises
        assert vpcd_peer.read_frame() == b"\x6f\x00"
        vpcd_peer.send(frame(bytes.fromhex("00ED0000")))  # card answers None
        assert vpcd_peer.read_frame() == b"\x6f\x00"
        vpcd_peer.send(frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == ATR  # and the bridge is still there
    finally:
        bridge.stop()


def test_nodelay_is_set(vpcd_peer: FakeVpcd) -> None:
    bridge = served(LogCard(), vpcd_peer)
    try:
        vpcd_peer.send(frame(bytes([GET_ATR])))
        vpcd_peer.read_frame()
        sock = bridge._sock
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        bridge.stop()


def test_reconnects_after_vpcd_goes_away(vpcd_peer: FakeVpcd) -> None:
    card = LogCard()
    detached = threading.Event()
    bridge = served(card, vpcd_peer, on_detached=lambda b: detached.set())
    try:
        vpcd_peer.send(frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == ATR
        assert vpcd_peer.conn is not None
        vpcd_peer.conn.close()  # pcscd stopped
        assert detached.wait(5)
        assert card.events[-1] == "off"  # the reader lost the card: volatile state gone
        vpcd_peer.accept()  # pcscd is back: the card comes again by itself
        vpcd_peer.send(frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == ATR
        assert bridge.attached.is_set()
    finally:
        bridge.stop()


def test_refresh_hook_swaps_the_card_at_power_on(vpcd_peer: FakeVpcd) -> None:
    old, new = LogCard(), LogCard(atr=bytes.fromhex("3B00"))
    calls: list[object] = []

    def refresh(card: EmulatedCard) -> EmulatedCard:
        calls.append(card)
        return new

    bridge = served(old, vpcd_peer, refresh=refresh)
    try:
        vpcd_peer.send(frame(bytes([POWER_ON])) + frame(bytes([GET_ATR])))
        assert vpcd_peer.read_frame() == bytes.fromhex("3B00")
        assert calls == [old] and new.events == ["on"] and bridge.card is new
    finally:
        bridge.stop()


def test_trace_hook_and_pin_redaction_in_logs(
    vpcd_peer: FakeVpcd, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[bytes, bytes, float]] = []
    bridge = served(LogCard(), vpcd_peer, log_apdus=True,
                    trace=lambda c, r, d: seen.append((c, r, d)))
    verify = bytes.fromhex("002000800439383736")  # PIN "9876"
    try:
        with caplog.at_level(logging.INFO, logger="jpki_sim.vpcd"):
            vpcd_peer.send(frame(verify))
            assert vpcd_peer.read_frame() == b"\x6d\x00"
        assert seen[0][:2] == (verify, b"\x6d\x00")
        text = caplog.text
        assert "0020008004 <4 bytes hidden>" in text and "39383736" not in text
    finally:
        bridge.stop()


def test_show_pins_logs_them(vpcd_peer: FakeVpcd, caplog: pytest.LogCaptureFixture) -> None:
    bridge = served(LogCard(), vpcd_peer, log_apdus=True, show_pins=True)
    try:
        with caplog.at_level(logging.INFO, logger="jpki_sim.vpcd"):
            vpcd_peer.send(frame(bytes.fromhex("002000800439383736")))
            vpcd_peer.read_frame()
        assert "002000800439383736" in caplog.text
    finally:
        bridge.stop()


def test_stop_ends_a_blocked_bridge(vpcd_peer: FakeVpcd) -> None:
    bridge = served(LogCard(), vpcd_peer)
    vpcd_peer.send(frame(bytes([GET_ATR])))
    vpcd_peer.read_frame()
    bridge.stop(timeout=5)
    assert bridge._thread is not None and not bridge._thread.is_alive()
    assert vpcd_peer.conn is not None
    assert vpcd_peer.conn.recv(1) == b""  # the socket was closed, not left hanging


def test_waits_for_vpcd_to_appear() -> None:
    # nothing listens yet: the bridge keeps retrying until a listener comes up
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    bridge = VpcdBridge(LogCard(), "127.0.0.1", port)
    bridge.start()
    try:
        listener = socket.create_server(("127.0.0.1", port))
        listener.settimeout(10)
        conn, _ = listener.accept()
        conn.sendall(frame(bytes([GET_ATR])))
        conn.settimeout(5)
        assert conn.recv(64) == frame(ATR)
        conn.close()
        listener.close()
    finally:
        bridge.stop()


def test_a_card_settles_its_record_after_the_answer_left(vpcd_peer: FakeVpcd) -> None:
    """The bridge sends the answer, then calls the card's settle(): the card's own
    bookkeeping (a served card's trace record) is off the client's wait."""
    events: list[str] = []

    class SettlingCard(LogCard):
        def process(self, apdu: bytes) -> bytes:
            events.append("process")
            return b"\x90\x00"

        def settle(self) -> None:
            # the answer is already on its way: the peer can read it
            events.append("settle")

    bridge = served(SettlingCard(), vpcd_peer)
    try:
        vpcd_peer.send(frame(bytes.fromhex("00A40000")))
        assert vpcd_peer.read_frame() == b"\x90\x00"
        deadline = time.monotonic() + 5
        while events != ["process", "settle"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events == ["process", "settle"]
    finally:
        bridge.stop()


class HotCard(LogCard):
    """A card offering the bridge a hot path (answer, gate, record)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = [False]
        self.gate_set_in_answer: list[bool] = []
        self.records: list[tuple[bytes, bytes, float]] = []
        self.general = 0
        #: the next read of ``hot`` gives the path, then closes it and offers a new one,
        #: as a change in another thread between the bridge's read and its check would
        self.close_after_next_read = False
        self.clock = [1234.5]
        self._hot = (self.answer, self.gate, self.record, self.clock)

    @property
    def hot(self) -> tuple[Any, list[bool], Any, list[float]]:
        path = self._hot
        if self.close_after_next_read:
            self.close_after_next_read = False
            # the same parts, a new path
            self._hot = (self.answer, self.gate, self.record, self.clock)
        return path

    def answer(self, apdu: bytes) -> bytes:
        self.gate_set_in_answer.append(self.gate[0])
        if apdu[1] == 0xEF:
            raise RuntimeError("card bug")
        if apdu[1] == 0xED:
            return None  # type: ignore[return-value]  # a card breaking its contract
        return b"\x90\x00"

    def record(self, exchange: tuple[bytes, bytes, float]) -> None:
        self.records.append(exchange)

    def process(self, apdu: bytes) -> bytes:
        self.general += 1
        return b"\x6a\x82"


def test_a_hot_path_is_answered_behind_its_gate_and_recorded_after_the_answer(
        vpcd_peer: FakeVpcd) -> None:
    card = HotCard()
    bridge = served(card, vpcd_peer)
    try:
        apdu = bytes.fromhex("00A4040C00")
        vpcd_peer.send(frame(apdu))
        assert vpcd_peer.read_frame() == b"\x90\x00"
        deadline = time.monotonic() + 5
        while not card.records and time.monotonic() < deadline:
            time.sleep(0.01)
        assert card.records == [(apdu, b"\x90\x00", 1234.5)]  # the time from its clock
        assert card.gate_set_in_answer == [True] and card.general == 0
        assert not card.gate[0]  # cleared once answered
        assert bridge.apdu_count == 1
        # a hot path that raises or answers nothing: 6F00, asked once, gate cleared
        for ins in ("EF", "ED"):
            vpcd_peer.send(frame(bytes.fromhex(f"00{ins}0000")))
            assert vpcd_peer.read_frame() == b"\x6f\x00"
        assert card.general == 0 and not card.gate[0]
        assert card.gate_set_in_answer == [True, True, True]
        vpcd_peer.send(frame(apdu))
        assert vpcd_peer.read_frame() == b"\x90\x00"  # and the bridge is still there
    finally:
        bridge.stop()


def test_a_hot_path_closed_after_the_bridge_took_it_is_not_used(vpcd_peer: FakeVpcd) -> None:
    """The card closed its hot path (a change in another thread) between the bridge's
    read of it and the bridge's check behind the gate: the bridge then asks the card's
    process, and records nothing itself."""
    card = HotCard()
    bridge = served(card, vpcd_peer)
    try:
        # an ATR request answered: the bridge has looked the card over (its hasattr reads
        # ``hot`` too), so the next read of ``hot`` is the APDU's
        vpcd_peer.send(frame(b"\x04"))
        assert vpcd_peer.read_frame() == card.atr
        card.close_after_next_read = True
        vpcd_peer.send(frame(bytes.fromhex("00B0000010")))
        assert vpcd_peer.read_frame() == b"\x6a\x82"
        assert card.general == 1 and card.records == [] and card.gate_set_in_answer == []
        assert not card.gate[0]
        # and the new path is used from the next command on
        vpcd_peer.send(frame(bytes.fromhex("00B0000010")))
        assert vpcd_peer.read_frame() == b"\x90\x00"
    finally:
        bridge.stop()
