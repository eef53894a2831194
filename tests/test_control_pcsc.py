"""The control service of a real ``jpki-sim serve``, seen by a PC/SC client through pcscd.

serve runs as a child process on vpcd slot 1 with ``--control 127.0.0.1:0``;
the client is pyscard through the machine's pcscd. Also the pytest plugin's
served-card controls (``jpki_reader.remove()``, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.control.client import ControlClient
from jpki_sim.profiles.jpki.state import CardState, load
from jpki_sim.transport.pcsc import PcscError, PcscTransport, wait_for_card
from pcsc_harness import PORTS, PcscSession, ServeProcess, jpki_sim_command, stored_copy

pytest_plugins = ["pytester"]

SLOT1 = f"localhost:{PORTS[1]}"
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
EMPTY_VERIFY = bytes.fromhex("0020008000")
VERIFY_1234 = bytes.fromhex("002000800431323334")


class Served:
    def __init__(self, server: ServeProcess, ready: dict[str, Any], reader: str, card: Path):
        self.server = server
        self.ready = ready
        self.reader = reader
        self.card = card
        self.client = ControlClient(ready["control"], token_file=ready["token_file"])


@pytest.fixture
def served(pcscd_session: PcscSession, jpki_state: CardState, tmp_path: Path) -> Iterator[Served]:
    reader = pcscd_session.reader_for_port(PORTS[1])
    card = tmp_path / "card.json"
    stored_copy(jpki_state, card)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    server = ServeProcess([str(card), "--vpcd", SLOT1, "--json", "--control", "127.0.0.1:0"],
                          env=env)
    try:
        (line,) = server.wait_ready(timeout=30)
        yield Served(server, json.loads(line), reader, card)
        assert server.terminate() == 0
    finally:
        server.kill()
    assert wait_for_card(reader, present=False, timeout=5)


def _listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexaddr, hexport = local.split(":")
            raw = bytes.fromhex(hexaddr)
            if width == 8:
                addr = ".".join(str(b) for b in raw[::-1])
            else:
                words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
                addr = bytes(b"".join(words)).hex()
            found.append((addr, int(hexport, 16)))
    return found


@pytest.mark.pcsc
def test_ready_event_names_the_service_and_only_loopback_listens(served: Served) -> None:
    ready = served.ready
    assert ready["event"] == "ready" and ready["reader"] == served.reader
    assert ready["control"].startswith("http://127.0.0.1:")
    token_file = Path(ready["token_file"])
    assert token_file.stat().st_mode & 0o777 == 0o600
    listening = _listening_sockets(served.server.proc.pid)
    assert listening, "serve listens on its control port"
    assert all(addr == "127.0.0.1" or addr == "00000000000000000000000000000001"
               for addr, _ in listening), listening
    # 401 without the token, from the running serve
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(ready["control"] + "api/cards", timeout=10)
    assert err.value.code == 401
    doc = served.client.state(0)
    assert doc["reader"] == served.reader and doc["present"] and doc["attached"]


@pytest.mark.pcsc
def test_remove_and_insert_are_seen_by_a_pcsc_client(served: Served) -> None:
    with PcscTransport(served.reader) as t:
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        doc = served.client.remove()
        assert doc["present"] is False and doc["result"]["reader_shows_absent"] is True
        assert wait_for_card(served.reader, present=False, timeout=1)
        with pytest.raises(PcscError):
            t.transmit(SELECT_JPKI)  # the card is gone under the client's feet
    with pytest.raises(PcscError):
        PcscTransport(served.reader)  # an empty reader
    doc = served.client.insert()
    assert doc["present"] is True and doc["result"]["reader_shows_present"] is True
    with PcscTransport(served.reader) as t:
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"


@pytest.mark.pcsc
def test_forced_sw_and_delay_show_in_the_client_answers(served: Served) -> None:
    with PcscTransport(served.reader) as t:
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        served.client.fault(0, sw={"sw": "6A82", "count": 2})
        assert [t.transmit(SELECT_JPKI) for _ in range(3)] == [
            bytes.fromhex("6A82"), bytes.fromhex("6A82"), b"\x90\x00"]
        served.client.fault(0, delay={"ms": 400, "ins": ["A4"]})
        t0 = time.monotonic()
        assert t.transmit(SELECT_AUTH_PIN) == b"\x90\x00"
        assert time.monotonic() - t0 >= 0.4  # the answer came, after the delay
        served.client.clear_faults(0)
        assert served.client.state(0)["faults"]["delay"] is None


@pytest.mark.pcsc
def test_a_torn_verify_costs_the_try_and_the_client_sees_a_reader_error(served: Served) -> None:
    with PcscTransport(served.reader) as t:
        t.transmit(SELECT_JPKI)
        t.transmit(SELECT_AUTH_PIN)
        served.client.fault(0, tear={"count": 1, "ins": ["20"]})
        with pytest.raises(PcscError):
            t.transmit(VERIFY_1234)  # the right PIN: torn after the try was spent
    assert load(served.card).pins["auth"].tries_left == 2
    # the card comes back by itself and counts the spent try
    assert wait_for_card(served.reader, present=True, timeout=10)
    for _ in range(50):
        try:
            with PcscTransport(served.reader) as t:
                t.transmit(SELECT_JPKI)
                t.transmit(SELECT_AUTH_PIN)
                assert t.transmit(EMPTY_VERIFY) == bytes.fromhex("63C2")
                break
        except PcscError:
            time.sleep(0.2)  # pcscd may still be settling after the removal
    else:
        pytest.fail("the card did not come back after the tear")
    assert served.client.state(0)["pins"]["auth"]["tries_left"] == 2


@pytest.mark.pcsc
def test_block_from_ctl_makes_verify_answer_6984(served: Served) -> None:
    args = ["--control", served.ready["control"], "--token-file", served.ready["token_file"]]
    run = subprocess.run([*jpki_sim_command(), "ctl", "pin", "auth", "block", *args, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pins"]["auth"]["blocked"] is True
    with PcscTransport(served.reader) as t:
        t.transmit(SELECT_JPKI)
        t.transmit(SELECT_AUTH_PIN)
        assert t.transmit(VERIFY_1234) == bytes.fromhex("6984")
    run = subprocess.run([*jpki_sim_command(), "ctl", "status", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "auth 0/3" in run.stdout
    run = subprocess.run([*jpki_sim_command(), "ctl", "pin", "auth", "tries", "x", *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    run = subprocess.run([*jpki_sim_command(), "ctl", "status", "--control", "127.0.0.1:1",
                          "--token-file", served.ready["token_file"]],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "no control service at" in run.stderr


# ---------------------------------------------------------------- the pytest plugin


PLUGIN_TEST = """
from jpki_sim.transport.pcsc import PcscError, PcscTransport, wait_for_card

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
EMPTY_VERIFY = bytes.fromhex("0020008000")


def test_controls(jpki_reader):
    with PcscTransport(jpki_reader) as t:
        t.transmit(SELECT_JPKI)
        t.transmit(SELECT_AUTH_PIN)
        jpki_reader.set_tries("auth", 1)
        assert t.transmit(EMPTY_VERIFY) == bytes.fromhex("63C1")
        jpki_reader.fault(sw="6F00", count=1)
        assert t.transmit(EMPTY_VERIFY) == bytes.fromhex("6F00")
        assert t.transmit(EMPTY_VERIFY) == bytes.fromhex("63C1")
    jpki_reader.remove()
    assert wait_for_card(jpki_reader, present=False, timeout=1)
    jpki_reader.insert()
    assert wait_for_card(jpki_reader, present=True, timeout=1)
    assert jpki_reader.card.state.pins["auth"].tries_left == 1
    assert any(e["note"] == "card removed" for e in jpki_reader.trace())


def test_the_next_test_finds_the_card_in_and_no_fault(jpki_reader):
    jpki_reader.remove()
    jpki_reader.fault(mute=True)


def test_and_it_is(jpki_reader):
    with PcscTransport(jpki_reader) as t:
        assert t.transmit(SELECT_JPKI) == bytes.fromhex("9000")
"""


@pytest.mark.pcsc
def test_the_plugin_reader_controls(pytester: pytest.Pytester, pcscd_session: object,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from jpki_sim.transport.pcscd import READER_LOCK_HELD_ENV

    monkeypatch.setenv(READER_LOCK_HELD_ENV, "1")  # this session holds the PC/SC lock already
    pytester.makepyfile(test_controls=PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
