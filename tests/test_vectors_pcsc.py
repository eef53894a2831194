"""The same vector files through pcscd + vpcd, and a recorded trace replayed through them.

Uses the PC/SC harness (``pcsc_harness.py``): skipped locally without pcscd or
vpcd, a failure in CI (``JPKI_SIM_REQUIRE_PCSC=1``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jpki_sim import trace
from jpki_sim.issuer import presets as profiles
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.signing import digest_info
from jpki_sim.transport.inprocess import InProcessTransport
from jpki_sim.transport.pcscd import READER_LOCK_HELD_ENV as LOCK_HELD_ENV
from jpki_sim.transport.replay import ReplayCard
from jpki_sim.vectors import loader, runner
from jpki_sim.vectors.model import Vector, Xfer
from jpki_sim.vectors.targets import (
    InProcessTarget,
    ReaderTarget,
    ServedTarget,
)
from pcsc_harness import PORTS, attach, detach

pytestmark = pytest.mark.pcsc

REPO = Path(__file__).resolve().parent.parent
SUITE = loader.all_vectors(loader.load_suite([REPO / "vectors"]))


@pytest.fixture(scope="module")
def served(vpcd_slot0: object) -> Iterator[ServedTarget]:
    target = ServedTarget(vpcd_slot0.bridge, vpcd_slot0.reader)  # type: ignore[attr-defined]
    try:
        yield target
    finally:
        target.close()


@pytest.mark.parametrize("vector", SUITE, ids=[f"{v.feature}/{v.id}" for v in SUITE])
def test_vector_passes_through_pcscd(vector: Vector, served: ServedTarget) -> None:
    result = runner.play(vector, served)
    one_byte = [s for s in vector.steps if isinstance(s, Xfer) and len(s.command) == 2]
    if one_byte:
        # the one thing vpcd cannot carry: the runner must skip it, and say why
        assert result.status == runner.SKIPPED and "1-byte command" in result.reason
        return
    assert result.status == runner.PASSED, "\n".join(
        [f"{vector.id}: {vector.purpose} ({vector.where})", *result.diff]
    )


def test_cli_run_pcsc_serves_its_own_card(pcscd_session: object) -> None:
    """`jpki-sim vectors run --pcsc` attaches its own card on a free vpcd slot."""
    env = dict(os.environ, **{LOCK_HELD_ENV: "1"})  # this test session holds the lock
    done = subprocess.run([sys.executable, "-m", "jpki_sim", "vectors", "run", "--pcsc", "-q"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{len(SUITE) - 1} passed, 0 failed, 1 skipped"


def test_reader_target_skips_what_does_not_fit(vpcd_reader: object) -> None:
    """--reader: a card is matched to profiles from outside; setup and PIN vectors are skipped."""
    reader = vpcd_reader.reader  # type: ignore[attr-defined]
    target = ReaderTarget(reader, pins={"auth": "1234"})
    try:
        picked = [v for v in SUITE if v.id in (
            "select-jpki-aid", "auth-only-presence", "auth-pin-verify", "sign-pin-verify",
            "auth-pin-countdown-to-blocked", "auth-pin-blocked-right-pin", "read-auth-cert-header",
            "read-auth-cert-chunks",
        )]
        report = runner.run_suite(picked, target)
        by_id = {r.id: r for r in report.results}
        assert by_id["select-jpki-aid"].status == runner.PASSED
        assert by_id["read-auth-cert-header"].status == runner.PASSED
        assert "its own data" in by_id["read-auth-cert-chunks"].reason
        assert by_id["auth-pin-verify"].status == runner.PASSED
        assert "does not fit" in by_id["auth-only-presence"].reason
        assert "--pin sign=" in by_id["sign-pin-verify"].reason
        assert "emulated card" in by_id["auth-pin-countdown-to-blocked"].reason
        assert "emulated card" in by_id["auth-pin-blocked-right-pin"].reason
        report = runner.run_suite([v for v in SUITE if v.id == "auth-pin-wrong-length-costs-try"],
                                  target)
        assert report.results[0].reason == "changes the card irreversibly (run with --destructive)"
    finally:
        target.close()


def test_replayed_trace_through_vpcd(pcscd_session: object, tmp_path: Path) -> None:
    """A recorded session served back on a vpcd reader answers reader software as recorded."""
    from jpki_sim.transport.pcsc import PcscTransport

    card, _store = profiles.card("default")
    path = tmp_path / "session.jsonl"
    digest = digest_info("sha256", hashlib.sha256(b"replay").digest())

    def run(client: JpkiClient) -> tuple[bytes, int, bytes]:
        cert = client.read_certificate("auth")
        tries = client.pin_status("auth")
        client.verify_pin("auth", "1234")
        return cert, tries, client.sign("auth", digest)

    with trace.TraceWriter(path) as writer:
        seen = run(JpkiClient(trace.TracingTransport(InProcessTransport(card), writer)))

    replay = ReplayCard(path)
    reader = pcscd_session.reader_for_port(PORTS[1])  # type: ignore[attr-defined]
    bridge = attach(replay, PORTS[1], reader)
    try:
        with PcscTransport(reader) as transport:
            assert transport.atr() == jpki.ATR
            assert run(JpkiClient(transport)) == seen
        assert replay.divergence is None and replay.player.finished
    finally:
        detach(bridge, reader)


def test_cli_replay_serves_a_trace(pcscd_session: object, tmp_path: Path) -> None:
    """`jpki-sim vectors replay TRACE`: reader software gets the recorded answers, then it ends."""
    import json

    from jpki_sim.transport.pcsc import PcscTransport

    card, _store = profiles.card("default")
    path = tmp_path / "session.jsonl"
    with trace.TraceWriter(path) as writer:
        recorded = JpkiClient(trace.TracingTransport(InProcessTransport(card), writer))
        label, presence = recorded.token_label(), recorded.certificate_presence()
    env = dict(os.environ, **{LOCK_HELD_ENV: "1"})
    proc = subprocess.Popen([sys.executable, "-m", "jpki_sim", "vectors", "replay", str(path),
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert "ready in reader " in ready, ready + proc.stderr.read()
        reader = ready.rsplit("ready in reader ", 1)[1].strip()
        with PcscTransport(reader) as transport:
            client = JpkiClient(transport)
            assert (client.token_label(), client.certificate_presence()) == (label, presence)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["replayed"] == result["exchanges"] == 5 and result["divergence"] is None


def test_cli_run_reader(vpcd_reader: object) -> None:
    """`--reader`: only what fits the card runs, and on the emulator it all passes."""
    import json

    reader = vpcd_reader.reader  # type: ignore[attr-defined]
    env = dict(os.environ, **{LOCK_HELD_ENV: "1"})
    done = subprocess.run([sys.executable, "-m", "jpki_sim", "vectors", "run", "--reader", reader,
                           "--pin", "auth=1234", "--pin", "sign=ABC123", "--pin", "helper=1234",
                           "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert summary["failed"] == 0 and summary["passed"] > 100 and summary["skipped"] > 50
    status = {r["id"]: r["status"] for r in report["results"]}
    assert status["sign-sign-scheme-04"] == "passed"  # signatures checked with the card's cert
    assert status["auth-pin-countdown-to-blocked"] == "skipped"
    assert status["helper-my-number-exact"] == "skipped"


class _TracedCard:
    """A card that writes everything it answers to a trace (as ``serve --trace`` does)."""

    def __init__(self, card: object, writer: trace.TraceWriter) -> None:
        self.inner = card
        self.writer = writer

    @property
    def atr(self) -> bytes:
        return self.inner.atr  # type: ignore[attr-defined,no-any-return]

    def power_on(self) -> bytes:
        atr: bytes = self.inner.power_on()  # type: ignore[attr-defined]
        self.writer.reset(atr, "cold")
        return atr

    def power_off(self) -> None:
        self.inner.power_off()  # type: ignore[attr-defined]
        self.writer.power_off()

    def reset(self) -> bytes:
        atr: bytes = self.inner.reset()  # type: ignore[attr-defined]
        self.writer.reset(atr, "warm")
        return atr

    def process(self, apdu: bytes) -> bytes:
        response: bytes = self.inner.process(apdu)  # type: ignore[attr-defined]
        self.writer.xfer(apdu, response)
        return response


@pytest.mark.opensc
def test_opensc_session_recorded_and_replayed(pcscd_session: object, tmp_path: Path) -> None:
    """OpenSC against a card: record it, the vectors pass on a fresh card, OpenSC replays it."""
    from pcsc_harness import opensc_available

    if not opensc_available():
        pytest.skip("OpenSC's tools are not installed")
    reader = pcscd_session.reader_for_port(PORTS[1])  # type: ignore[attr-defined]
    env = dict(os.environ, OPENSC_DRIVER="jpki")

    def opensc() -> list[str]:
        outs = []
        for args in (["--list-certificates"], ["--read-certificate", "01"]):
            done = subprocess.run(["pkcs15-tool", "--reader", reader, *args], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr
            outs.append(done.stdout)
        return outs

    path = tmp_path / "opensc.jsonl"
    card, _store = profiles.card("default")
    with trace.TraceWriter(path, card=reader) as writer:
        bridge = attach(_TracedCard(card, writer), PORTS[1], reader)
        try:
            first = opensc()
        finally:
            detach(bridge, reader)
    assert "User Authentication Certificate" in first[0]
    assert first[1].startswith("-----BEGIN CERTIFICATE-----")

    from jpki_sim.vectors import recorder

    out = tmp_path / "opensc-vectors.jsonl"
    recorder.record_file(path, out)
    (vector,) = loader.all_vectors(loader.load_suite([out]))
    # a fresh factory: other keys, other serials than the recorded card
    assert runner.play(vector, InProcessTarget(profiles.CardFactory())).status == runner.PASSED

    replay = ReplayCard(path)
    bridge = attach(replay, PORTS[1], reader)
    try:
        again = opensc()
    finally:
        detach(bridge, reader)
    assert replay.divergence is None, str(replay.divergence)
    assert again == first
