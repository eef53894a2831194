"""``jpki-sim serve`` and ``jpki-sim doctor`` as users run them, through real pcscd.

Server processes use vpcd slot 1 (slot 0 belongs to the in-process bridge of
the other PC/SC tests). The first group needs no pcscd: bad input must give
one line and exit 2 before anything is started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from jpki_sim.iso7816.errors import PinError
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.state import CardState, load
from jpki_sim.trace.formats import load as load_trace
from jpki_sim.transport import pcscd
from jpki_sim.transport.pcsc import PcscTransport, wait_for_card
from pcsc_harness import (
    PORTS,
    PcscSession,
    ServedCard,
    ServeProcess,
    jpki_sim_command,
    stored_copy,
)

SLOT1 = f"localhost:{PORTS[1]}"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*jpki_sim_command(), *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=env)


# ---------------------------------------------------------------- bad input, no pcscd needed


def test_missing_card_file_is_one_line(tmp_path: Path) -> None:
    r = cli("serve", str(tmp_path / "nope.json"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"jpki-sim: error: {tmp_path / 'nope.json'}: no such card file"
    ]


def test_same_card_twice_is_refused(jpki_state: CardState, tmp_path: Path) -> None:
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    r = cli("serve", str(card), str(tmp_path / "." / "card.json"))
    assert r.returncode == 2 and "one card file can be in one reader only" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("address", ["localhost:port", "localhost:0", "host:99999"])
def test_bad_vpcd_address(address: str) -> None:
    r = cli("serve", "--vpcd", address, "whatever.json")
    assert r.returncode == 2 and r.stderr.startswith("jpki-sim: error: --vpcd:")


def test_more_cards_than_vpcd_readers(jpki_state: CardState, tmp_path: Path) -> None:
    conf = pcscd.vpcd_readers()
    if not conf or pcscd.find_binary() is None or pcscd.vpcd_driver() is None:
        pytest.skip("needs pcscd and the vpcd driver installed")
    last = conf[-1].ports.stop - 1  # the last configured vpcd port
    cards = []
    for i in range(2):
        cards.append(str(tmp_path / f"c{i}.json"))
        stored_copy(jpki_state, Path(cards[-1]))
    r = cli("serve", "--vpcd", f"localhost:{last}", *cards)
    assert r.returncode == 2
    assert f"no vpcd reader listens on port {last + 1}" in r.stderr


# ---------------------------------------------------------------- through pcscd


@pytest.mark.pcsc
def test_serve_without_a_card_serves_the_default_card(
    pcscd_session: PcscSession, tmp_path: Path
) -> None:
    reader = pcscd_session.reader_for_port(PORTS[1])
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), HOME=str(tmp_path))
    server = ServeProcess(["--vpcd", SLOT1], env=env)
    try:
        (line,) = server.wait_ready(timeout=30)  # first use issues the card
        card_file = tmp_path / "data" / "jpki-sim" / "card.json"
        assert line.startswith(f"card {card_file} ready in reader '{reader}'")
        state = load(card_file)
        assert state.auth is not None
        with PcscTransport(reader) as t:
            client = JpkiClient(t)
            assert client.read_certificate("auth") == state.auth.cert_der
            client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        assert server.terminate() == 0
        assert server.lines[-1].startswith("stopped (")
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)


@pytest.mark.pcsc
def test_verbose_log_and_trace_hide_pins(
    pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path
) -> None:
    reader = pcscd_session.reader_for_port(PORTS[1])
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    trace_file = tmp_path / "session.jsonl"
    server = ServeProcess([str(card), "--vpcd", SLOT1, "-v", "--trace", str(trace_file)])
    try:
        server.wait_ready()
        with PcscTransport(reader) as t:
            client = JpkiClient(t)
            with pytest.raises(PinError):
                client.verify_pin("auth", "9876")
            client.verify_pin("auth", jpki.DEFAULT_PINS["auth"])
        assert server.terminate() == 0
    finally:
        server.kill()
    log = server.stderr_text(100_000)
    assert "0020008004 <4 bytes hidden>" in log
    assert "39383736" not in log and b"1234".hex().upper() not in log
    assert "< 63C2" in log  # the wrong PIN's answer is logged
    trace = load_trace(trace_file)
    verifies = [e for e in trace.xfers if e.command[1] == 0x20 and len(e.command) > 5]
    assert [e.command.hex().upper() for e in verifies] == ["00200080042A2A2A2A"] * 2
    assert [e.sw for e in verifies] == [0x63C2, 0x9000]
    assert all(e.redacted for e in verifies)
    assert wait_for_card(reader, present=False, timeout=5)


@pytest.mark.pcsc
def test_sigint_stops_serve_cleanly(
    pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path
) -> None:
    reader = pcscd_session.reader_for_port(PORTS[1])
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    server = ServeProcess([str(card), "--vpcd", SLOT1])
    try:
        server.wait_ready()
        server.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert server.proc.wait(10) == 0
        assert "Traceback" not in server.stderr_text()
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)


@pytest.mark.pcsc
def test_doctor_sees_the_served_card(vpcd_reader: ServedCard) -> None:
    r = cli("doctor", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["pcscd running"]["status"] == "ok"
    assert checks["pyscard importable"]["status"] == "ok"
    mine = checks[f"reader '{vpcd_reader.reader}'"]
    assert mine["status"] == "ok" and jpki.ATR.hex().upper() in mine["detail"]
    assert "JPKI card" in mine["detail"]


@pytest.mark.pcsc
def test_bridge_comes_back_after_pcscd_restarts(
    vpcd_reader: ServedCard, pcscd_session: PcscSession, tmp_path: Path
) -> None:
    """pcscd goes away and comes back: the bridge reconnects by itself."""
    stop_pcscd(pcscd_session)
    assert _detached(vpcd_reader)  # vpcd went with pcscd: the bridge noticed
    # from here on this session owns pcscd (and stops it at the end)
    pcscd_session.started = pcscd.Pcscd(log_path=tmp_path / "pcscd.log").start()
    pcscd.wait_for_readers([vpcd_reader.reader], timeout=10)
    assert wait_for_card(vpcd_reader.reader, True, timeout=10)
    with PcscTransport(vpcd_reader.reader) as t:
        assert JpkiClient(t).pin_status("auth") == 3


def stop_pcscd(session: PcscSession) -> None:
    """Stop the machine's pcscd, for tests of what happens without one (root, CI only).

    Only a pcscd this run started, or any when JPKI_SIM_MAY_STOP_PCSCD=1 (.ci/run sets
    it: CI owns the machine; a developer's shared pcscd is never stopped by a test).
    """
    may_stop = os.environ.get("JPKI_SIM_MAY_STOP_PCSCD", "") not in ("", "0")
    if session.started is None and not may_stop:
        pytest.skip("stops pcscd: only done on a pcscd this run started, or with "
                    "JPKI_SIM_MAY_STOP_PCSCD=1 (as .ci/run sets)")
    if not pcscd.is_root():
        pytest.skip("stopping and starting pcscd needs root")
    if session.started is not None:
        session.started.stop()
        session.started = None
    else:
        pid = pcscd.running_pid()
        if pid is None:
            pytest.skip("the running pcscd has no pid file")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pcscd.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not pcscd.is_running()


@pytest.mark.pcsc
def test_serve_starts_pcscd_when_none_runs_and_stops_it(
    pcscd_session: PcscSession, vpcd_slot0: ServedCard, jpki_state: CardState, tmp_path: Path
) -> None:
    """The README's one step on a fresh machine: no pcscd yet, `jpki-sim serve` as root."""
    stop_pcscd(pcscd_session)
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    server = ServeProcess([str(card), "--vpcd", SLOT1])
    try:
        server.wait_ready()
        assert "started pcscd (pid " in server.stderr_text()
        reader = pcscd_session.reader_for_port(PORTS[1])
        with PcscTransport(reader) as t:
            assert JpkiClient(t).pin_status("sign") == 5
        assert server.terminate() == 0
        assert not pcscd.is_running()  # the pcscd it started went with it
    finally:
        server.kill()
        # give the rest of the session its pcscd back
        if not pcscd.is_running():
            pcscd_session.started = pcscd.Pcscd(log_path=tmp_path / "pcscd.log").start()
            pcscd.wait_for_readers(pcscd_session.readers, timeout=10)
        # and the session's slot-0 card, which reconnects by itself
        assert wait_for_card(vpcd_slot0.reader, True, timeout=10)


def _detached(card: ServedCard, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while card.bridge.attached.is_set():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.pcsc
def test_serve_refuses_a_reader_that_holds_a_card(
    vpcd_reader: ServedCard, jpki_state: CardState, tmp_path: Path
) -> None:
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    r = cli("serve", str(card), "--vpcd", f"localhost:{PORTS[0]}")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"jpki-sim: error: reader '{vpcd_reader.reader}' (port {PORTS[0]}) already holds a "
        "card: is another `jpki-sim serve` running? stop it or use --vpcd with another port"
    )
    assert vpcd_reader.bridge.attached.is_set()  # the served card was not disturbed
