"""Bounded fault tests (issue 11): concurrent writers, kill -9 loops, a full disk.

Every test here is bounded (seconds) and decides pass or fail on invariants,
never on how fast something was: waits have generous deadlines only to stop a
hang from hanging the suite.

- N processes hammering VERIFY on one card file: every try is spent exactly
  once, the counter never rises.
- ``kill -9`` loops of ``jpki-sim apdu``: no free try, the file always whole.
- ``kill -9`` loops of ``jpki-sim serve`` with a PC/SC client retrying, on a
  pcscd of the test's own (private namespaces, :mod:`isolation`): every
  restart is ready (the reader shows the card) and serves, no free try.
- A pcscd that serve started dies with serve, even after ``kill -9``; a stale
  pcscd socket is cleared.
- A full (small tmpfs) disk: one-line errors, exit 2, the file unchanged, no
  PIN in any output.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jpki_sim
from isolation import IsolatedPcscd, Namespace, pid_alive, require_namespaces, wait_until
from jpki_sim.profiles.jpki.state import CardState, load, save
from jpki_sim.transport import pcscd
from pcsc_harness import jpki_sim_command, unavailable

#: the children run the code this process imported
SRC = str(Path(jpki_sim.__file__).resolve().parents[1])
SELECT_JPKI = "00A4040C0AD392F000260100000001"
SELECT_SIGN_PIN = "00A4020C02001B"
WRONG_SIGN = "0020008006" + b"WRONG1".hex().upper()
#: the sign PIN gets the most tries a counter can hold, so a run spends many
TRIES = 15


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture
def many_tries_card(jpki_state: CardState, tmp_path: Path) -> Path:
    """A card file whose sign PIN has 15 tries (the most a 63Cx answer can report)."""
    state = copy.deepcopy(jpki_state)
    pin = state.pins["sign"]
    pin.max_tries = pin.tries_left = TRIES
    path = tmp_path / "card.json"
    save(state, path)
    return path


def seen_tries(sws: list[str]) -> list[int]:
    return [int(sw[3], 16) for sw in sws if sw.startswith("63C")]


# ---------------------------------------------------------------- N writers


HAMMER = r"""
import json, sys
from jpki_sim.profiles import registry
from jpki_sim.transport.inprocess import InProcessTransport
store = registry.open_store(sys.argv[1])
card = InProcessTransport(registry.profile_of(store).build(store))
for apdu in sys.argv[2:4]:
    assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()  # the barrier: every process is loaded before any sends
sws = []
while True:
    sw = card.transmit(bytes.fromhex(sys.argv[4]))[-2:].hex().upper()
    sws.append(sw)
    if sw == "6984":
        break
print(json.dumps(sws))
"""


def test_processes_hammering_verify_lose_no_decrement(many_tries_card: Path) -> None:
    """Each process loaded the card with 15 tries; together they spend exactly 15."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, str(many_tries_card), SELECT_JPKI, SELECT_SIGN_PIN,
             WRONG_SIGN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env(),
        )  # fmt: skip
        for _ in range(4)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n", p.stderr
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    every = [x for sws in results for x in seen_tries(sws)]
    # 15 tries, 15 answers 63Cx with x = 14 .. 0, each exactly once: no try spent twice
    # or not at all, whatever the interleaving
    assert sorted(every) == list(range(TRIES))
    for sws in results:
        mine = seen_tries(sws)
        assert mine == sorted(mine, reverse=True)  # a process never sees the counter rise
        assert sws[-1] == "6984"
    assert load(many_tries_card).pins["sign"].tries_left == 0


def test_apdu_commands_run_at_once_lose_no_decrement(many_tries_card: Path) -> None:
    """The same through the command line: three `jpki-sim apdu` runs of 8 wrong VERIFYs."""
    args = [*jpki_sim_command(), "apdu", "--card", str(many_tries_card), "--json",
            SELECT_JPKI, SELECT_SIGN_PIN, *[WRONG_SIGN] * 8]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env()) for _ in range(3)]
    sws = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        sws += [json.loads(line)["sw"] for line in out.splitlines()[2:]]
    assert len(sws) == 24
    assert sorted(seen_tries(sws)) == list(range(TRIES))
    assert sws.count("6984") == 24 - TRIES
    assert load(many_tries_card).pins["sign"].tries_left == 0


# ---------------------------------------------------------------- kill -9 of apdu


def test_kill_9_loop_of_apdu_gives_no_free_try(many_tries_card: Path) -> None:
    folder = many_tries_card.parent
    last = TRIES
    rng = random.Random(11)
    for _round in range(10):
        proc = subprocess.Popen(
            [*jpki_sim_command(), "apdu", "--card", str(many_tries_card), "--json",
             SELECT_JPKI, SELECT_SIGN_PIN, *[WRONG_SIGN] * 3],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(),
        )  # fmt: skip
        assert proc.stdout is not None
        answered: list[str] = []
        # kill it at a random point: before its card is loaded, between VERIFYs, anywhere
        deadline = time.monotonic() + rng.uniform(0.0, 1.0)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        answered = [json.loads(line)["sw"] for line in out.splitlines() if line.startswith("{")]
        on_disk = load(many_tries_card).pins["sign"].tries_left  # never torn: it loads
        assert on_disk <= last  # never rises
        for x in seen_tries(answered):
            assert on_disk <= x  # every answered try is on disk
        # the tries it was told about were spent
        assert last - on_disk >= len(seen_tries(answered))
        last = on_disk
        if last == 0:
            break
    # whatever a killed writer left is gone after the next open
    load(many_tries_card)
    from jpki_sim.profiles.jpki.state import open_store

    open_store(many_tries_card)
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- a full disk


def test_a_full_disk_changes_nothing_and_leaks_no_pin(jpki_state: CardState,
                                                      tmp_path: Path) -> None:
    require_namespaces()
    mnt = "/mnt/jpki-sim-full"
    with Namespace(tmpfs={mnt: "size=96k,mode=0700"}, pcscd_dir=False, env=env()) as ns:
        card = f"{mnt}/card.json"
        outside = tmp_path / "card.json"
        save(copy.deepcopy(jpki_state), outside)
        cmd = [*jpki_sim_command()]
        assert ns.run(["cp", str(outside), card]).returncode == 0
        # one write first, so the lock file exists; then fill the disk to the last byte
        ok = ns.run([*cmd, "card", "reset-pin", card, "--pin", "auth", "--new-pin", "1234"])
        assert ok.returncode == 0, ok.stderr
        ns.run(["sh", "-c", f"cat /dev/zero > {mnt}/filler"])
        before = ns.run(["cat", card]).stdout
        from jpki_sim.issuer.lifecycle import renewal_opens

        state = load(outside)
        assert state.auth is not None
        certs_due = renewal_opens(state.auth.expires).isoformat()
        card_due = renewal_opens(state.expires).isoformat()
        attempts = [
            ["card", "reset-pin", card, "--pin", "auth", "--new-pin", "5678"],
            ["card", "change-address", card, "東京都千代田区霞が関２丁目１番２号", "--at",
             state.issued.isoformat()],
            ["card", "renew", card, "--auth-pin", "1234", "--sign-pin", "ABC123", "--at",
             certs_due],
            ["card", "renew", card, "--new-card", "--at", card_due],
        ]
        for argv in attempts:
            run = ns.run([*cmd, *argv])
            assert run.returncode == 2, (argv, run.stdout, run.stderr)
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("jpki-sim: error: "), run.stderr
            assert "No space left on device" in lines[0]
            assert "Traceback" not in run.stderr
            assert ns.run(["cat", card]).stdout == before, argv
        # a VERIFY on the full disk: refused before any comparison (6F00), nothing spent,
        # and neither the answer nor the log shows the PIN
        run = ns.run([*cmd, "apdu", "--card", card, "--json", SELECT_JPKI, "00A4020C020018",
                      "0020008004" + b"4321".hex()])
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout.splitlines()[-1])["sw"] == "6F00"
        for text in (run.stdout, run.stderr):
            assert "34333231" not in text.upper() and "4321" not in text
        assert "Traceback" not in run.stderr
        assert ns.run(["cat", card]).stdout == before
        leftovers = ns.run(["sh", "-c", f"ls -a {mnt}"]).stdout.split()
        assert not [n for n in leftovers if n.endswith(".tmp")], leftovers


# ---------------------------------------------------------------- serve and pcscd


def require_isolated_pcsc() -> None:
    require_namespaces()
    try:
        import smartcard  # noqa: F401
    except ImportError:
        unavailable("pyscard is not installed (pip install -e '.[test]')")
    if pcscd.find_binary() is None or pcscd.vpcd_driver() is None:
        unavailable("pcscd and the vpcd driver are needed (tools/setup.sh installs them)")


CLIENT = r"""
import json, sys, time
from smartcard.scard import *
out = open(sys.argv[1], "a", buffering=1)
apdus = [bytes.fromhex(a) for a in sys.argv[2:5]]
gap = float(sys.argv[5])
def log(**d):
    out.write(json.dumps({"t": time.monotonic(), **d}) + "\n")
hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
while True:
    if hr != SCARD_S_SUCCESS:
        time.sleep(0.1); hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER); continue
    hr2, card, proto = SCardConnect(ctx, "Virtual PCD 00 00", SCARD_SHARE_SHARED,
                                    SCARD_PROTOCOL_T1)
    if hr2 != SCARD_S_SUCCESS:
        log(err="connect"); time.sleep(0.05)
        if hr2 in (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED, SCARD_E_INVALID_HANDLE):
            SCardReleaseContext(ctx); hr, ctx = SCardEstablishContext(SCARD_SCOPE_USER)
        continue
    while True:
        sws = []
        for apdu in apdus:
            r, resp = SCardTransmit(card, proto, list(apdu))
            if r != SCARD_S_SUCCESS:
                break
            sws.append(bytes(resp[-2:]).hex().upper())
        if len(sws) < len(apdus):
            log(err="transmit"); break
        log(sw=sws[-1])
        time.sleep(gap)
    SCardDisconnect(card, SCARD_RESET_CARD)
"""


def _serve(ns: Namespace, card: Path, *extra: str) -> tuple[subprocess.Popen[str], Path]:
    err = card.parent / f"serve-{time.monotonic_ns()}.err"
    proc = ns.popen([*jpki_sim_command(), "serve", str(card), "--json", *extra],
                    stdout=subprocess.PIPE, stderr=open(err, "w"), text=True)  # noqa: SIM115
    return proc, err


def _ready(proc: subprocess.Popen[str], err: Path, timeout: float) -> dict:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            pytest.fail(f"serve not ready within {timeout} s: {err.read_text()[-2000:]}")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"serve exited: {err.read_text()[-2000:]}")
        event = json.loads(line)
        if event.get("event") == "ready":
            return event


def _client_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_kill_9_loop_of_serve_with_a_client_retrying(many_tries_card: Path,
                                                     tmp_path: Path) -> None:
    """Every restart gets ready and serves the retrying client; no try is ever free."""
    require_isolated_pcsc()
    log = tmp_path / "client.log"
    log.write_text("")
    rng = random.Random(4)
    with IsolatedPcscd(env=env()) as ns:
        ns.popen([sys.executable, "-c", CLIENT, str(log), SELECT_JPKI, SELECT_SIGN_PIN,
                  WRONG_SIGN, "0.15"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _round in range(6):
            proc, err = _serve(ns, many_tries_card)
            event = _ready(proc, err, timeout=30)
            assert event["confirmed"] is True and event["reader"] == "Virtual PCD 00 00"
            since = time.monotonic()
            # ready means usable: the client gets an answer (a 63Cx or, once blocked, 6984)
            assert wait_until(lambda since=since: any(
                "sw" in e and e["t"] > since for e in _client_log(log)), 30), (
                err.read_text()[-2000:])
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    answers = [e["sw"] for e in _client_log(log) if "sw" in e]
    tries = seen_tries(answers)
    assert tries, answers
    assert tries == sorted(tries, reverse=True) and len(set(tries)) == len(tries)  # never rises
    on_disk = load(many_tries_card).pins["sign"].tries_left
    assert on_disk <= tries[-1] if tries[-1] > 0 else on_disk == 0  # every answer is on disk
    assert TRIES - on_disk >= len(tries)


def test_a_pcscd_serve_started_dies_with_it_even_after_kill_9(jpki_state: CardState,
                                                             tmp_path: Path) -> None:
    require_isolated_pcsc()
    card = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), card)
    with Namespace(env=env()) as ns:  # no pcscd runs here: serve starts its own
        proc, err = _serve(ns, card)
        _ready(proc, err, timeout=30)
        started = re.search(r"started pcscd \(pid (\d+)", err.read_text())
        assert started, err.read_text()
        daemon = int(started.group(1))
        assert pid_alive(daemon)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: not pid_alive(daemon), 10), "pcscd outlived serve"
        # it got SIGTERM, so it cleaned up after itself: no stale socket for the next one
        assert wait_until(lambda: not ns.path("/run/pcscd/pcscd.comm").exists(), 5)


def test_a_stale_pcscd_socket_is_cleared_and_serve_gets_ready(jpki_state: CardState,
                                                             tmp_path: Path) -> None:
    require_isolated_pcsc()
    card = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), card)
    with IsolatedPcscd(env=env()) as ns:
        assert ns.pcscd is not None
        ns.pcscd.send_signal(signal.SIGKILL)  # leaves pcscd.comm and pcscd.pid behind
        ns.pcscd.wait(10)
        sock = ns.path("/run/pcscd/pcscd.comm")
        assert sock.exists()
        # and the pid it names is now another process (pid reuse), which pcscd itself
        # takes for a running pcscd and refuses to start
        assert ns.pid is not None
        ns.path("/run/pcscd/pcscd.pid").write_text(f"{ns.pid}\n")
        proc, err = _serve(ns, card)
        _ready(proc, err, timeout=30)
        text = err.read_text()
        assert "left from a killed pcscd" in text and "removed it" in text, text
        proc.terminate()
        proc.wait(10)
