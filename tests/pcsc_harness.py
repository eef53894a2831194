"""Fixtures for tests that go through real pcscd + vpcd (no mocks).

- ``pcscd_session``: a pcscd with vpcd readers. Uses the running one, or (as
  root) starts ``pcscd -f`` for the session and stops it at the end. Without
  pcscd the PC/SC tests skip with the reason; with ``JPKI_SIM_REQUIRE_PCSC=1``
  (set by ``.ci/run``) they fail instead.
- ``jpki_state``: one issued card state per session (RSA keys are slow);
  ``fresh_store`` gives each test its own file-backed copy.
- ``vpcd_reader``: a card served through vpcd slot 0 by an in-process
  :class:`~jpki_sim.vpcd.VpcdBridge`; the test swaps in its own card.

PC/SC sessions of different pytest runs on one machine share pcscd's fixed
socket and vpcd's fixed ports, so the session fixture holds an exclusive lock
file while it uses them: concurrent runs take turns instead of clashing.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.card.store import CardStore
from jpki_sim.profiles.jpki.state import CardState, open_store, save
from jpki_sim.transport import pcscd
from jpki_sim.transport.vpcd import DEFAULT_PORT, VpcdBridge

REQUIRE_ENV = "JPKI_SIM_REQUIRE_PCSC"
PORTS = (DEFAULT_PORT, DEFAULT_PORT + 1)


def pcsc_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: PC/SC tests must run there."""
    if pcsc_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- pcscd


def _take_lock(timeout: float = 600.0) -> Any:
    """Wait for other test runs on this machine to finish with pcscd's readers."""
    try:
        return pcscd.take_reader_lock(timeout)
    except pcscd.ReadersBusy as exc:
        unavailable(str(exc))


@dataclass
class PcscSession:
    readers: list[str]  # vpcd reader names, slot order
    started: pcscd.Pcscd | None

    def reader_for_port(self, port: int) -> str:
        name = pcscd.pcsc_reader_name(port, self.readers)
        assert name is not None, f"no vpcd reader for port {port} in {self.readers}"
        return name


@pytest.fixture(scope="session")
def pcscd_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscSession]:
    try:
        import smartcard  # noqa: F401
    except ImportError:
        unavailable("pyscard is not installed (pip install -e '.[test]')")
    if pcscd.vpcd_driver() is None:
        unavailable("the vpcd driver is not installed (apt-get install vsmartcard-vpcd)")
    conf = pcscd.vpcd_readers()
    if not any(DEFAULT_PORT in r.ports and DEFAULT_PORT + 1 in r.ports for r in conf):
        unavailable(f"no vpcd reader on ports {PORTS} in {pcscd.READER_CONF_DIR}")

    lock = _take_lock()
    started: pcscd.Pcscd | None = None
    try:
        if not pcscd.is_running():
            if pcscd.find_binary() is None:
                unavailable("pcscd is not installed (tools/setup.sh installs it)")
            if not pcscd.is_root():
                unavailable("pcscd is not running and only root can start it (sudo pcscd -f &)")
            log = tmp_path_factory.mktemp("pcscd") / "pcscd.log"
            started = pcscd.Pcscd(log_path=log).start()
        readers = pcscd.wait_for_readers(timeout=10.0)
        names = [pcscd.pcsc_reader_name(p, readers) for p in PORTS]
        if None in names:
            unavailable(f"pcscd shows no vpcd readers for ports {PORTS}: {readers}")
        session = PcscSession([n for n in names if n], started)
        yield session
        started = session.started  # a test may have restarted pcscd
    finally:
        if started is not None:
            started.stop()
        if lock is not None:
            lock.close()  # releases the reader lock


# ---------------------------------------------------------------- cards


def issue_state(ca_dir: Path) -> CardState:
    """A card issued by the project's test CA (in ``ca_dir``) with the default PINs."""
    from jpki_sim.issuer import counter as issuer

    return issuer.issue_card(issuer.default_identity(), ca=ca_dir)


@pytest.fixture(scope="session")
def jpki_state(tmp_path_factory: pytest.TempPathFactory) -> CardState:
    """One issued card per session (key generation is the slow part); copy before changing."""
    return issue_state(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def fresh_store(jpki_state: CardState, tmp_path: Path) -> CardStore:
    """A file-backed copy of the session's card with full PIN counters."""
    path = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), path)
    return open_store(path)


def stored_copy(state: CardState, path: Path) -> CardStore:
    save(copy.deepcopy(state), path)
    return open_store(path)


# ---------------------------------------------------------------- served cards


class ServedCard:
    """A card in a vpcd reader, served by a bridge thread in the test process."""

    def __init__(self, bridge: VpcdBridge, reader: str) -> None:
        self.bridge = bridge
        self.reader = reader
        self.store: CardStore | None = None

    @property
    def card_file(self) -> Path:
        assert self.store is not None and self.store.path is not None
        return self.store.path

    def insert(self, card: Any) -> None:
        """Swap the card (between PC/SC connections); pcscd may still think it powered."""
        card.power_on()
        self.bridge.replace_card(card)


def attach(card: Any, port: int, reader: str, timeout: float = 5.0) -> VpcdBridge:
    """Connect ``card`` to vpcd on ``port`` and wait until pcscd shows it present."""
    from jpki_sim.transport.pcsc import wait_for_card

    # the previous card on this slot must be gone first, else we would see its presence
    assert wait_for_card(reader, present=False, timeout=timeout), f"{reader} did not empty"
    bridge = VpcdBridge(card, port=port, label=f"test card on {port}")
    bridge.start()
    if not (bridge.attached.wait(timeout) and wait_for_card(reader, True, timeout)):
        bridge.stop()
        pytest.fail(f"card did not appear in {reader!r} within {timeout} s")
    return bridge


def detach(bridge: VpcdBridge, reader: str, timeout: float = 5.0) -> None:
    from jpki_sim.transport.pcsc import wait_for_card

    bridge.stop()
    assert wait_for_card(reader, present=False, timeout=timeout), f"{reader} kept the card"


@pytest.fixture(scope="session")
def vpcd_slot0(pcscd_session: PcscSession, jpki_state: CardState,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedCard]:
    """A bridge on vpcd slot 0 for the whole session (attaching takes a pcscd poll)."""
    from jpki_sim.profiles.jpki.build import build_card

    reader = pcscd_session.reader_for_port(PORTS[0])
    store = stored_copy(jpki_state, tmp_path_factory.mktemp("slot0") / "card.json")
    bridge = attach(build_card(store), PORTS[0], reader)
    try:
        yield ServedCard(bridge, reader)
    finally:
        detach(bridge, reader)


@pytest.fixture
def vpcd_reader(vpcd_slot0: ServedCard, fresh_store: CardStore) -> ServedCard:
    """The test's own fresh card (``.store``) in vpcd slot 0; ``.reader`` is its PC/SC name."""
    from jpki_sim.profiles.jpki.build import build_card
    from jpki_sim.transport.pcsc import wait_for_card

    vpcd_slot0.insert(build_card(fresh_store))
    vpcd_slot0.store = fresh_store
    # after a pcscd restart by an earlier test the bridge needs a moment to come back
    if not wait_for_card(vpcd_slot0.reader, True, timeout=10):
        pytest.fail(f"the slot-0 card did not come back into {vpcd_slot0.reader!r}")
    return vpcd_slot0


# ---------------------------------------------------------------- subprocesses


def jpki_sim_command() -> list[str]:
    """How to run the CLI from tests (the same interpreter, no PATH assumptions)."""
    return [sys.executable, "-m", "jpki_sim"]


def _is_ready(line: str) -> bool:
    return " ready in reader " in line or '"event": "ready"' in line


class ServeProcess:
    """``jpki-sim serve`` as a child process, with its ready line awaited."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None) -> None:
        import tempfile

        # stderr to a file: a -v server writes a line per APDU and must never block on a pipe
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="jpki-sim-serve-")
        self.proc = subprocess.Popen(
            [*jpki_sim_command(), "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.lines: list[str] = []

    def wait_ready(self, count: int = 1, timeout: float = 15.0) -> list[str]:
        """Read stdout until ``count`` ready lines; fail with stderr if the server dies."""
        import selectors

        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        ready = [line for line in self.lines if _is_ready(line)]
        while len(ready) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                self.kill()
                pytest.fail(f"serve not ready in {timeout} s: {self.stderr_text()}")
            line = self.proc.stdout.readline()
            if not line:
                pytest.fail(f"serve exited ({self.proc.wait()}): {self.stderr_text()}")
            line = line.rstrip("\n")
            self.lines.append(line)
            if _is_ready(line):
                ready.append(line)
        return ready

    def stderr_text(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-limit:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, and collect the rest of stdout into ``lines``."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=timeout)
        self.lines += out.splitlines()
        return self.proc.returncode


def opensc_available() -> bool:
    return all(shutil.which(tool) for tool in ("opensc-tool", "pkcs15-tool", "pkcs11-tool"))
