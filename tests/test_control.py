"""The control service over real HTTP (uvicorn on loopback), without PC/SC.

A served card is driven in-process through its ``process()`` (what the vpcd
bridge calls), so these tests run everywhere; test_control_pcsc.py repeats
the essentials through pcscd.
"""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from jpki_sim.control.hotpath import CLOCK, CLOCK_TICK, CoarseClock
from jpki_sim.control.livetrace import record_json
from jpki_sim.control.runner import ControlRunner
from jpki_sim.control.served import ServedCard
from jpki_sim.errors import UserError
from jpki_sim.issuer import presets
from jpki_sim.issuer.ca import TestCA
from jpki_sim.profiles.jpki.state import load, open_store, save
from jpki_sim.transport.vpcd import DropConnection

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
EMPTY_VERIFY = bytes.fromhex("0020008000")
VERIFY_1234 = bytes.fromhex("002000800431323334")
VERIFY_9999 = bytes.fromhex("002000800439393939")
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def keys() -> Any:
    from jpki_sim.issuer.counter import KeyPool

    return KeyPool.generate(2)


def new_state(keys: Any) -> Any:
    """A card of its own (own serials) from the presets' test CA, issued 2025-04-01."""
    from datetime import date

    from jpki_sim.issuer.counter import default_identity, issue_card

    return issue_card(default_identity(), date(2025, 4, 1), ca=presets.factory().ca, keys=keys)


@pytest.fixture
def card_file(tmp_path: Path, keys: Any) -> Path:
    path = tmp_path / "card.json"
    save(new_state(keys), path)
    return path


@pytest.fixture
def served(card_file: Path) -> ServedCard:
    card = ServedCard(open_store(card_file))
    card.power_on()
    return card


@pytest.fixture
def runner(served: ServedCard, tmp_path: Path) -> Iterator[ControlRunner]:
    r = ControlRunner.start([served], "127.0.0.1:0", token_dir=tmp_path / "run")
    try:
        yield r
    finally:
        r.stop()


def call(r: ControlRunner, method: str, path: str, body: Any = None, *,
         token: str | None = "", headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, parsed JSON or bytes, headers) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        h["Authorization"] = f"Bearer {token or r.token}"
    req = urllib.request.Request(r.url.rstrip("/") + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status, hdrs = resp.read(), resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, exc.headers
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw, hdrs


def verify_state(served: ServedCard) -> None:
    assert served.process(SELECT_JPKI) == b"\x90\x00"
    assert served.process(SELECT_AUTH_PIN) == b"\x90\x00"


# ---------------------------------------------------------------- security


def test_the_api_and_the_dashboard_need_the_token(runner: ControlRunner) -> None:
    assert call(runner, "GET", "/api", token=None)[0] == 401
    assert call(runner, "GET", "/api", token="wrong")[0] == 401
    status, doc, headers = call(runner, "GET", "/api")
    assert status == 200 and doc["cards"] == 1
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    # a POST must carry the header: a token in the query is for GET (the event stream) only
    url = f"/api/cards/0/remove?token={runner.token}"
    assert call(runner, "POST", url, {}, token=None)[0] == 401
    assert call(runner, "GET", f"/api/cards/0?token={runner.token}", token=None)[0] == 200
    # the dashboard: an explanation without the token, the page with it
    status, page, _ = call(runner, "GET", "/", token=None)
    assert status == 401 and b"Token needed" in page
    status, page, headers = call(runner, "GET", f"/?token={runner.token}", token=None)
    assert status == 200 and b"/static/dashboard.js" in page
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # a browser's CORS preflight gets no permission
    status, _, headers = call(runner, "OPTIONS", "/api/cards/0/remove", token=None,
                              headers={"Origin": "http://evil.example",
                                       "Access-Control-Request-Method": "POST"})
    assert status in (401, 405)
    assert "access-control-allow-origin" not in {k.lower() for k in headers}


def test_the_token_file_is_private_and_goes_with_the_service(served: ServedCard,
                                                            tmp_path: Path) -> None:
    r = ControlRunner.start([served], "127.0.0.1:0", token_dir=tmp_path / "run")
    try:
        assert r.token_file is not None
        assert r.token_file.read_text().strip() == r.token
        assert r.token_file.stat().st_mode & 0o777 == 0o600
        assert r.token_file.name == f"control-{r.server.sock.getsockname()[1]}.token"
        other = ControlRunner.start([served], "127.0.0.1:0", token_dir=tmp_path / "run")
        assert other.token != r.token  # a new token at each start
        other.stop()
    finally:
        r.stop()
    assert not r.token_file.exists()


def test_a_non_loopback_address_needs_the_flag(served: ServedCard, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UserError, match="not a loopback address"):
        ControlRunner.start([served], "0.0.0.0:0", token_dir=tmp_path)
    r = ControlRunner.start([served], "0.0.0.0:0", token_dir=tmp_path, allow_remote=True)
    try:
        assert r.server.sock.getsockname()[0] == "0.0.0.0"
        assert "beyond this machine" in caplog.text
    finally:
        r.stop()
    r = ControlRunner.start([served], "127.0.0.1:0", token_dir=tmp_path)
    try:
        assert r.server.sock.getsockname()[0] == "127.0.0.1"
    finally:
        r.stop()


# ---------------------------------------------------------------- the card's state and PINs


def test_state_names_reader_holder_certificates_counters(runner: ControlRunner) -> None:
    status, doc, _ = call(runner, "GET", "/api/cards/0")
    assert status == 200
    assert doc["present"] is True and doc["powered"] is True
    assert doc["atr"] == "3BE000FF8131FE4514"
    assert doc["holder"]["name"] == "番号　花子"
    auth = doc["certificates"]["auth"]
    assert auth["present"] and auth["expires"] == "2030-03-31"
    assert auth["renewal_opens"] == "2030-01-01" and auth["grace_ends"] == "2030-06-30"
    assert doc["pins"]["sign"] == {"set": True, "tries_left": 5, "max_tries": 5,
                                   "blocked": False}
    assert doc["revoked"] == [] and doc["faults"]["mute"] is False
    assert call(runner, "GET", "/api/cards/3")[0] == 404


def test_pin_controls_go_through_the_retry_counter(runner: ControlRunner, served: ServedCard,
                                                   card_file: Path) -> None:
    verify_state(served)
    status, doc, _ = call(runner, "POST", "/api/cards/0/pins/auth/tries", {"tries": 1})
    assert status == 200 and doc["pins"]["auth"]["tries_left"] == 1
    assert load(card_file).pins["auth"].tries_left == 1  # in the card file at once
    assert served.process(EMPTY_VERIFY) == bytes.fromhex("63C1")
    call(runner, "POST", "/api/cards/0/pins/auth/block")
    assert served.process(VERIFY_1234) == bytes.fromhex("6984")
    call(runner, "POST", "/api/cards/0/pins/auth/unblock")
    assert served.process(EMPTY_VERIFY) == bytes.fromhex("63C3")
    call(runner, "POST", "/api/cards/0/pins/auth/change", {"new": "5678"})
    assert served.process(bytes.fromhex("002000800435363738")) == b"\x90\x00"
    assert load(card_file).pins["auth"].value == "5678"
    # bad input: one clear error, nothing changed
    status, doc, _ = call(runner, "POST", "/api/cards/0/pins/auth/tries", {"tries": 9})
    assert status == 400 and "0 to 3" in doc["error"]
    status, doc, _ = call(runner, "POST", "/api/cards/0/pins/auth/change", {"new": "12"})
    assert status == 400 and "4" in doc["error"]
    assert call(runner, "POST", "/api/cards/0/pins/nope/block")[0] == 404
    req = urllib.request.Request(runner.url + "api/cards/0/pins/auth/tries", data=b"not json",
                                 method="POST", headers={"Authorization": f"Bearer {runner.token}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert load(card_file).pins["auth"].value == "5678"


# ---------------------------------------------------------------- faults


def test_forced_sw_and_delay(runner: ControlRunner, served: ServedCard) -> None:
    verify_state(served)
    status, doc, _ = call(runner, "POST", "/api/cards/0/faults",
                          {"sw": {"sw": "6A82", "count": 2, "ins": ["20"]}})
    assert status == 200 and doc["faults"]["sw"] == {"sw": "6A82", "count": 2, "ins": ["20"]}
    assert served.process(SELECT_AUTH_PIN) == b"\x90\x00"  # another INS: not forced
    assert [served.process(EMPTY_VERIFY) for _ in range(3)] == [
        bytes.fromhex("6A82"), bytes.fromhex("6A82"), bytes.fromhex("63C3")]
    call(runner, "POST", "/api/cards/0/faults", {"delay": {"ms": 300, "ins": ["20"]}})
    t0 = time.monotonic()
    assert served.process(EMPTY_VERIFY) == bytes.fromhex("63C3")
    assert time.monotonic() - t0 >= 0.3  # answered, and not before the delay
    status, doc, _ = call(runner, "DELETE", "/api/cards/0/faults")
    assert doc["faults"] == {"delay": None, "sw": None, "mute": False, "tear": None}
    status, doc, _ = call(runner, "POST", "/api/cards/0/faults", {"sw": {"sw": "6A8"}})
    assert status == 400 and "two bytes" in doc["error"]
    assert call(runner, "POST", "/api/cards/0/faults", {"bogus": 1})[0] == 400
    assert call(runner, "DELETE", "/api/cards/0/faults/bogus")[0] == 404


def test_a_torn_verify_costs_the_try_even_with_the_right_pin(
        runner: ControlRunner, served: ServedCard, card_file: Path) -> None:
    verify_state(served)
    call(runner, "POST", "/api/cards/0/faults", {"tear": {"count": 1, "ins": ["20"]}})
    with pytest.raises(DropConnection):
        served.process(VERIFY_1234)  # the right PIN, torn
    assert load(card_file).pins["auth"].tries_left == 2  # spent, and never given back
    assert not served.powered and served.faults.tear is None
    served.power_on()
    verify_state(served)
    assert served.process(VERIFY_1234) == b"\x90\x00"  # the tear is spent: normal again
    assert load(card_file).pins["auth"].tries_left == 3
    notes = [e["note"] or "" for e in call(runner, "GET", "/api/cards/0/trace")[1]]
    assert any(n.startswith("torn:") for n in notes)


def test_a_mute_card_holds_the_command_until_cleared_or_removed(
        runner: ControlRunner, served: ServedCard) -> None:
    verify_state(served)
    call(runner, "POST", "/api/cards/0/faults", {"mute": True})
    answers: list[Any] = []
    t = threading.Thread(target=lambda: answers.append(served.process(EMPTY_VERIFY)))
    t.start()
    t.join(0.5)
    assert t.is_alive() and answers == []  # no answer while mute
    call(runner, "DELETE", "/api/cards/0/faults/mute")
    t.join(5)
    assert answers == [bytes.fromhex("63C3")]
    call(runner, "POST", "/api/cards/0/faults", {"mute": True})
    errors: list[BaseException] = []

    def held() -> None:
        try:
            served.process(EMPTY_VERIFY)
        except DropConnection as exc:
            errors.append(exc)

    t = threading.Thread(target=held)
    t.start()
    t.join(0.3)
    call(runner, "POST", "/api/cards/0/remove")
    t.join(5)
    assert len(errors) == 1  # removed while mute: the command gets no answer at all
    call(runner, "POST", "/api/cards/0/insert")


def test_the_bridges_hot_path_follows_the_faults_and_the_engine(served: ServedCard) -> None:
    """No hot path while a fault is set (the bridge must take process(), which applies
    it); a new one when the faults are cleared, a counted fault is used up, or the
    engine is rebuilt (so a bridge holding the old one notices when it checks)."""
    from jpki_sim.control import faults

    hot = served.hot
    assert hot is not None and hot[0] == served.engine.process and hot[1] == [False]
    served.set_faults(faults.parse({"sw": {"sw": "6A82", "count": 1}}))
    assert served.hot is None
    assert served.process(SELECT_JPKI) == b"\x6a\x82"  # the fault, then used up
    after = served.hot
    assert after is not None and after is not hot
    served.rebuild()
    assert served.hot is not None and served.hot is not after
    assert served.hot[0] == served.engine.process
    served.set_faults(faults.parse({"mute": True}))
    assert served.hot is None
    served.clear_faults()
    assert served.hot is not None
    # the hot path records as process() does, when the bridge calls it after the answer
    answer, gate, record, clock = served.hot
    assert clock is CLOCK.now
    start = served.trace.recent(1)[-1][0]
    resp = answer(SELECT_JPKI)
    assert record == served._pending.append  # no listener: the queue's own append
    record((SELECT_JPKI, resp, 1.0))
    rec = served.trace.since(start)[-1]
    # the time the bridge read from the clock; the card's own time not measured
    assert rec[1:] == (1.0, "apdu", SELECT_JPKI, b"\x90\x00", None, "")
    assert record_json(rec, 0)["ms"] is None
    # someone listens to the live trace: the recorder tells them at once
    told: list[Any] = []
    unsubscribe = served.trace.subscribe(told.append)
    assert served.hot is not None and served.hot[2] == served._record
    served.hot[2]((SELECT_JPKI, resp, 2.0))
    assert [(r[1], r[3]) for r in told] == [(2.0, SELECT_JPKI)]
    unsubscribe()
    assert served.hot is not None and served.hot[2] == served._pending.append


def test_a_change_closes_the_hot_path_and_waits_for_the_apdu_in_flight(
        served: ServedCard) -> None:
    """The handoff of iso7816.transport.HotPath, the card's side: while the bridge
    answers on the hot path (its gate set), a change through the card's lock waits for
    the answer; while the lock is held the card offers no hot path, and a new one
    (its same gate) after."""
    hot = served.hot
    assert hot is not None
    answer, gate, _record, _clock = hot
    inside, go_on = threading.Event(), threading.Event()
    engine_process = served.engine.process

    def slow(raw: bytes) -> bytes:  # the engine, held in the middle of a command
        inside.set()
        assert go_on.wait(5)
        return engine_process(raw)

    order: list[str] = []

    def bridge() -> None:  # the bridge's steps on its hot path, as vpcd.py makes them
        gate[0] = True
        try:
            if served.hot is hot:
                slow(SELECT_JPKI)
                order.append("answered")
        finally:
            gate[0] = False

    def change() -> None:
        with served.lock:
            order.append("changed")
            assert served.hot is None  # closed: a bridge now calls process()

    b = threading.Thread(target=bridge)
    b.start()
    assert inside.wait(5)
    c = threading.Thread(target=change)
    c.start()
    time.sleep(0.1)
    assert order == [] and served.hot is None  # closed at once, waiting for the answer
    go_on.set()
    b.join(5)
    c.join(5)
    assert order == ["answered", "changed"]
    after = served.hot
    assert after is not None and after is not hot and after[1] is gate and not gate[0]
    # a bridge holding the path from before a change finds it is no longer the card's
    with served.lock:
        assert served.hot is not after
    assert served.hot is not after


def test_api_changes_and_hot_path_apdus_through_a_bridge_meet_no_deadlock(
        card_file: Path) -> None:
    """A bridge's APDUs on the hot path while another thread changes the card over and
    over: every APDU answered, every change made, the counter where the changes left it."""
    from jpki_sim.profiles.jpki.state import new_store
    from jpki_sim.transport.vpcd import VpcdBridge

    served = ServedCard(new_store(load(card_file)))  # in memory: no fsync per change

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    bridge = VpcdBridge(served, port=port, label="stress")
    served.attach(bridge)
    bridge.start()
    conn, _ = listener.accept()
    conn.settimeout(10)
    stop = threading.Event()
    changes = 0

    def changer() -> None:
        nonlocal changes
        while not stop.is_set():
            served.set_tries("auth", changes % 4)
            changes += 1
            time.sleep(0.0005)  # a busy API, not a lock held without pause

    t = threading.Thread(target=changer)
    try:
        conn.sendall(b"\x00\x01\x01")  # power on
        t.start()
        retries = bytes.fromhex("0020008000")
        select_pin = bytes.fromhex("00A4020C020018")
        for apdu in [SELECT_JPKI, select_pin] + [retries] * 1000:
            conn.sendall(len(apdu).to_bytes(2, "big") + apdu)
            head = b""
            while len(head) < 2:
                head += conn.recv(2 - len(head))
            n = int.from_bytes(head, "big")
            body = b""
            while len(body) < n:
                body += conn.recv(n - len(body))
            assert body[-2:] in (b"\x90\x00",) or body[0] == 0x63 or body == b"\x69\x83", body
    finally:
        stop.set()
        t.join(10)
        conn.close()
        bridge.stop()
        listener.close()
    assert not t.is_alive() and changes > 10  # the changes met the APDUs
    assert served.pins_json()["auth"]["tries_left"] == (changes - 1) % 4
    assert served.hot is not None and not served._gate[0]


def test_hot_path_apdus_are_timed_by_the_coarse_clock_to_within_its_tick(
        served: ServedCard) -> None:
    """The clock the bridge reads keeps up with the time (a few ticks at most behind),
    and a forked child has one that runs (threads do not survive fork)."""
    import os

    assert served.hot is not None and served.hot[3] is CLOCK.start()
    slack = max(20 * CLOCK_TICK, 0.5)  # a busy machine may delay a tick; not by seconds
    for _ in range(5):
        time.sleep(3 * CLOCK_TICK)
        assert abs(time.time() - CLOCK.now[0]) < slack
    clock = CoarseClock(tick=0.01)
    assert clock.start() is clock.now and clock.start() is clock.now  # one thread
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: is its clock running?
        try:
            before = clock.now[0]
            time.sleep(0.2)
            os.write(write, b"1" if clock.now[0] > before and abs(
                time.time() - clock.now[0]) < 0.2 else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_the_trace_is_complete_and_in_order_while_read_from_another_thread(
        served: ServedCard) -> None:
    """Exchanges become trace records in batches; a reader in another thread (the API)
    flushes them: none is lost, none doubled, the numbers follow the exchanges, and a
    power event lands after the APDUs before it."""
    n = 401  # more than a few of any batch
    commands = [bytes.fromhex("00B000") + bytes([i % 256, 1]) for i in range(n)]
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.extend(r[0] for r in served.trace.since(seen[-1] if seen else 0))

    start = served.trace.recent(1)[-1][0]
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    verify_state(served)
    for c in commands:
        served.process(c)
    served.power_off()
    done.set()
    t.join(10)
    records = served.trace.since(start)
    assert [r[3] for r in records if r[2] == "apdu"] == [SELECT_JPKI, SELECT_AUTH_PIN, *commands]
    assert records[-1][2:3] == ("power",) and records[-1][6] == "power off"
    numbers = [r[0] for r in records]
    assert numbers == list(range(start + 1, start + 1 + len(records)))
    # what the reader saw along the way: increasing, never the same record twice
    assert seen == sorted(set(seen))


def test_the_trace_masks_pins(runner: ControlRunner, served: ServedCard) -> None:
    verify_state(served)
    served.process(VERIFY_9999)
    trace = call(runner, "GET", "/api/cards/0/trace")[1]
    verifies = [e for e in trace if e["type"] == "apdu" and e["command"].startswith("0020")]
    assert verifies[-1]["command"] == "00200080042A2A2A2A"
    assert verifies[-1]["sw"] == "63C2" and verifies[-1]["what"].startswith("VERIFY")
    assert "39393939" not in json.dumps(trace)
    since = trace[-1]["seq"]
    served.process(EMPTY_VERIFY)
    assert [e["command"] for e in call(runner, "GET", f"/api/cards/0/trace?since={since}")[1]] \
        == ["0020008000"]
    # a PIN under another class or in the odd (BER-TLV) form is masked as well
    since = call(runner, "GET", "/api/cards/0/trace")[1][-1]["seq"]
    for command in ("802000800439393939", "0C2000800439393939", "002100800439393939",
                    "00240080083131313139393939", "002C0080043939393939"[:-2]):
        served.process(bytes.fromhex(command))
    shown = [e["command"] for e in call(runner, "GET", f"/api/cards/0/trace?since={since}")[1]]
    assert len(shown) == 5 and not any("3939" in c or "3131" in c for c in shown), shown
    assert shown[0] == "802000800" + "42A2A2A2A"


def test_the_event_stream_sends_apdus_live(runner: ControlRunner, served: ServedCard) -> None:
    from jpki_sim.control.client import ControlClient

    client = ControlClient(runner.url, token=runner.token)
    got: list[dict[str, Any]] = []

    def listen() -> None:
        for e in client.stream(0):
            got.append(e)
            if e.get("command") == "0020008000":
                return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.5)
    verify_state(served)
    served.process(EMPTY_VERIFY)
    served.settle()  # as the bridge does once the answer left
    t.join(10)
    assert [e["command"] for e in got if e["type"] == "apdu"][-3:] == [
        SELECT_JPKI.hex().upper(), SELECT_AUTH_PIN.hex().upper(), "0020008000"]


# ---------------------------------------------------------------- the card's life


def _ocsp_status(r: ControlRunner, cert_der: bytes, issuer: x509.Certificate) -> Any:
    cert = x509.load_der_x509_certificate(cert_der)
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    status, body, headers = _post_ocsp(r, req.public_bytes(serialization.Encoding.DER))
    assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(body).certificate_status


def _post_ocsp(r: ControlRunner, der: bytes, ctype: str = "application/ocsp-request"
               ) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(r.url + "ocsp", data=der, method="POST",
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_revoke_expire_renew_through_the_issuer(runner: ControlRunner, served: ServedCard,
                                                card_file: Path) -> None:
    state = served.store.state
    ca = TestCA.open(state.ca_dir, create=False)
    auth_der = state.auth.cert_der
    assert _ocsp_status(runner, auth_der, ca.auth.cert) is ocsp.OCSPCertStatus.GOOD
    status, doc, _ = call(runner, "POST", "/api/cards/0/revoke", {"which": "auth"})
    assert status == 200 and doc["certificates"]["auth"]["revoked"] is True
    # the cached good answer is gone at once
    assert _ocsp_status(runner, auth_der, ca.auth.cert) is ocsp.OCSPCertStatus.REVOKED
    assert call(runner, "POST", "/api/cards/0/revoke", {"which": "auth"})[0] == 400
    status, doc, _ = call(runner, "POST", "/api/cards/0/expire", {"what": "certificates"})
    assert status == 200, doc
    assert doc["certificates"]["auth"]["expired"] is True and doc["card"]["expired"] is False
    assert load(card_file).auth.cert_der == doc_cert(served)
    status, doc, _ = call(runner, "POST", "/api/cards/0/renew", {})
    assert status == 200, doc
    assert doc["result"]["renewed"]["auth"]["kind"] == "re-issue"
    assert doc["certificates"]["auth"]["expired"] is False
    # the engine serves the new certificate
    assert served.store.state.auth.serial == int(doc["certificates"]["auth"]["serial"], 16)
    status, doc, _ = call(runner, "PUT", "/api/clock", {"date": "2099-01-01"})
    assert doc == {"date": "2099-01-01", "today": "2099-01-01", "fixed": True}
    assert call(runner, "GET", "/api/cards/0")[1]["as_of"] == "2099-01-01"
    assert call(runner, "PUT", "/api/clock", {"date": "tomorrow"})[0] == 400
    call(runner, "PUT", "/api/clock", {"date": None})


def doc_cert(served: ServedCard) -> bytes:
    from jpki_sim.profiles.jpki import ids

    aid = ids.APPLICATIONS["jpki"]
    return served.engine.applications[aid].files[ids.EF_AUTH_CERT].content[
        : len(served.store.state.auth.cert_der)]


def test_swap_to_a_preset_and_back_to_a_file(runner: ControlRunner, served: ServedCard,
                                             card_file: Path) -> None:
    status, doc, _ = call(runner, "POST", "/api/cards/0/swap", {"preset": "pin-blocked"})
    assert status == 200, doc
    assert doc["pins"]["auth"]["blocked"] and doc["result"]["preset"] == "pin-blocked"
    assert Path(doc["file"]).stat().st_mode & 0o777 == 0o600
    verify_state(served)
    assert served.process(VERIFY_1234) == bytes.fromhex("6984")
    status, doc, _ = call(runner, "POST", "/api/cards/0/swap", {"file": str(card_file)})
    assert status == 200 and doc["file"] == str(card_file.resolve())
    assert doc["pins"]["auth"]["tries_left"] == 3
    assert call(runner, "POST", "/api/cards/0/swap", {"preset": "nope"})[0] == 400
    assert call(runner, "POST", "/api/cards/0/swap", {"file": "/nonexistent.json"})[0] == 400


# ---------------------------------------------------------------- OCSP and CRLs


@pytest.fixture
def ocsp_runner(served: ServedCard) -> Iterator[ControlRunner]:
    r = ControlRunner.start([], "127.0.0.1:0", control=False, request_timeout=1.0,
                            cas=[TestCA.open(served.store.state.ca_dir, create=False)])
    try:
        yield r
    finally:
        r.stop()


def _request(served: ServedCard, nonce: bool = False) -> tuple[bytes, Any]:
    state = served.store.state
    ca = TestCA.open(state.ca_dir, create=False)
    cert = x509.load_der_x509_certificate(state.auth.cert_der)
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.auth.cert, hashes.SHA1())
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER), ca


def test_ocsp_http_rules(ocsp_runner: ControlRunner, served: ServedCard) -> None:
    der, ca = _request(served)
    status, body, headers = _post_ocsp(ocsp_runner, der)
    assert status == 200 and headers["Content-Type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(body).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert _post_ocsp(ocsp_runner, der, "text/plain")[0] == 415
    assert _post_ocsp(ocsp_runner, b"\x30" * 20_000)[0] == 413
    status, body, _ = _post_ocsp(ocsp_runner, b"junk")
    assert status == 200  # answered in OCSP's own terms
    assert ocsp.load_der_ocsp_response(body).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # GET with the request in the path (RFC 6960 A.1), with RFC 5019 caching headers
    path = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    with urllib.request.urlopen(f"{ocsp_runner.url}ocsp/{path}", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        assert "max-age=" in resp.headers["Cache-Control"] and resp.headers["Expires"]
        assert ocsp.load_der_ocsp_response(resp.read()).certificate_status is \
            ocsp.OCSPCertStatus.GOOD
    # the CRL at the path the certificate names
    cert = x509.load_der_x509_certificate(served.store.state.auth.cert_der)
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = next(n.value for n in dp[0].full_name if isinstance(n, x509.UniformResourceIdentifier))
    path = urllib.parse.urlsplit(url).path
    with urllib.request.urlopen(f"{ocsp_runner.url.rstrip('/')}{path}", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/pkix-crl"
        crl = x509.load_der_x509_crl(resp.read())
    assert crl.issuer == ca.auth.cert.subject
    for bad in ("/nothing", "/crl/other.crl", "/api/cards"):  # no control API here at all
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{ocsp_runner.url.rstrip('/')}{bad}", timeout=10)
        assert err.value.code == 404


def test_ocsp_answers_are_presigned_and_a_nonce_is_honoured(
        ocsp_runner: ControlRunner, served: ServedCard) -> None:
    responder = ocsp_runner.service.ocsp
    assert responder.presign([served.store.state.auth.cert_der]) == 2  # SHA-1 and SHA-256
    signed = responder.signed
    der, ca = _request(served)
    for _ in range(3):
        status, body, _ = _post_ocsp(ocsp_runner, der)
        assert ocsp.load_der_ocsp_response(body).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert responder.signed == signed  # a look-up, never a signature
    der, _ = _request(served, nonce=True)
    resp = ocsp.load_der_ocsp_response(_post_ocsp(ocsp_runner, der)[1])
    nonce = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"0123456789abcdef" and responder.signed == signed + 1


def test_ocsp_200_parallel_requests_no_reset(ocsp_runner: ControlRunner,
                                             served: ServedCard) -> None:
    der, _ = _request(served)
    host, port = ocsp_runner.server.sock.getsockname()[:2]
    barrier = threading.Barrier(200)

    def one(_i: int) -> int:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        barrier.wait(30)  # every connection open before any request goes out
        conn.request("POST", "/ocsp", der, {"Content-Type": "application/ocsp-request"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert ocsp.load_der_ocsp_response(body).certificate_status is ocsp.OCSPCertStatus.GOOD
        return resp.status

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(one, range(200))) == [200] * 200


@pytest.mark.parametrize("half", ["headers", "body", "nothing"])
def test_a_half_sent_request_is_closed_within_the_timeout(ocsp_runner: ControlRunner,
                                                          half: str) -> None:
    host, port = ocsp_runner.server.sock.getsockname()[:2]
    with socket.create_connection((host, port), timeout=10) as s:
        if half == "headers":
            s.sendall(b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Ty")
        elif half == "body":
            s.sendall(b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request"
                      b"\r\nContent-Length: 100\r\n\r\n0123456789")
        t0 = time.monotonic()
        s.settimeout(10)  # the service's timeout here is 1 s: closed long before this
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert time.monotonic() - t0 < 10
    assert b"200 OK" not in data
    # the service still answers others
    assert urllib.request.urlopen(f"{ocsp_runner.url}crl/auth.crl", timeout=10).status == 200


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
@pytest.mark.parametrize("nonce", [False, True])
def test_openssl_ocsp_verifies_good_and_revoked(ocsp_runner: ControlRunner, served: ServedCard,
                                                tmp_path: Path, nonce: bool, keys: Any) -> None:
    state = served.store.state
    ca = TestCA.open(state.ca_dir, create=False)
    root = tmp_path / "root.pem"
    root.write_bytes(ca.auth.cert.public_bytes(serialization.Encoding.PEM))
    other = new_state(keys).auth
    from datetime import datetime, timezone

    ca.revoke(other.serial, at=datetime(2026, 1, 1, tzinfo=timezone.utc), reason="keyCompromise")
    for name, der in (("good.pem", state.auth.cert_der), ("revoked.pem", other.cert_der)):
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        (tmp_path / name).write_bytes(pem)
    for name, want in (("good.pem", "good"), ("revoked.pem", "revoked")):
        run = subprocess.run(
            [OPENSSL, "ocsp", "-issuer", str(root), "-CAfile", str(root),
             "-cert", str(tmp_path / name), "-url", f"{ocsp_runner.url}ocsp",
             *([] if nonce else ["-no_nonce"])],
            capture_output=True, text=True, timeout=30, check=False)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out
        assert "Response verify OK" in out and f"{tmp_path / name}: {want}" in out
        assert "WARNING" not in out  # with a nonce, it is echoed
    assert "Reason: keyCompromise" in out


def test_the_cards_front_is_served_with_the_token_and_follows_the_card(
        runner: ControlRunner, served: ServedCard) -> None:
    """GET /api/cards/N/face.png: the card's front from its data, as the dashboard shows it."""
    import io

    from PIL import Image

    status, doc, _ = call(runner, "GET", "/api/cards/0")
    url = doc["face_image"]
    assert status == 200 and url.startswith("/api/cards/0/face.png?v=")
    assert call(runner, "GET", url, token=None)[0] == 401
    assert call(runner, "GET", url, token="wrong")[0] == 401
    status, png, headers = call(runner, "GET", url)
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(png)) as front:
        assert (front.format, front.size) == ("PNG", (1270, 828))
    # with ?token= as the dashboard's <img> asks for it
    with urllib.request.urlopen(runner.url.rstrip("/") + url + "&token=" + runner.token,
                                timeout=30) as resp:
        assert resp.read() == png
    assert call(runner, "GET", "/api/cards/7/face.png")[0] == 404
    # a new address: a new picture at a new URL
    status, doc, _ = call(runner, "POST", "/api/cards/0/issue",
                          {"address": "東京都清瀬市上清戸１丁目２番３号"})
    assert status == 200, doc
    assert doc["face_image"] != url
    status, again, _ = call(runner, "GET", doc["face_image"])
    assert status == 200 and again != png
