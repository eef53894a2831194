"""Record a session as vectors and replay it: the recorder's masking, the replay transport.

A shell-like session drives :class:`JpkiClient` over a tracing transport; the
trace becomes a vector file that must pass against a fresh card of the same
profile (whose keys, serials and signatures all differ from the recorded
ones only where the recorder masked them) and fail against another profile.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jpki_sim import trace
from jpki_sim.iso7816.errors import PinError
from jpki_sim.issuer import presets as profiles
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.signing import digest_info
from jpki_sim.transport.inprocess import InProcessTransport
from jpki_sim.transport.replay import ReplayCard, ReplayDivergence, ReplayTransport
from jpki_sim.vectors import loader, recorder, runner
from jpki_sim.vectors.targets import InProcessTarget

DIGEST = digest_info("sha256", hashlib.sha256(b"recorded session").digest())


def session(client: JpkiClient) -> dict[str, Any]:
    """What a user does in the shell: read, verify, sign, make a mistake, reset."""
    seen: dict[str, Any] = {}
    seen["label"] = client.token_label()
    seen["presence"] = client.certificate_presence()
    seen["auth_cert"] = client.read_certificate("auth")
    seen["auth_tries"] = client.pin_status("auth")
    client.verify_pin("auth", "1234")
    seen["auth_sig"] = client.sign("auth", DIGEST)
    client.verify_pin("sign", "ABC123")
    seen["sign_cert"] = client.read_certificate("sign")
    seen["pss"] = client.sign("sign", hashlib.sha256(b"x").digest(), scheme=jpki.SIGN_PSS_SHA256)
    try:
        client.verify_pin("helper", "0000")
    except PinError as exc:
        seen["helper_wrong"] = exc.tries_left
    client.verify_pin("helper", "1234")
    seen["my_number"] = client.my_number()
    seen["basic_info"] = client.basic_info()
    client.reset()
    seen["after_reset"] = client.pin_status("sign")
    return seen


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    card, _store = profiles.card("default")
    path = tmp_path / "session.jsonl"
    with trace.TraceWriter(path, card="default card") as writer:
        writer.comment("a recorded shell session")
        client = JpkiClient(trace.TracingTransport(InProcessTransport(card), writer))
        seen = session(client)
    return path, seen


def test_recorded_session_passes_on_a_fresh_card(recorded: tuple[Path, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    path, seen = recorded
    assert seen["helper_wrong"] == 2
    out = tmp_path / "session-vectors.jsonl"
    rec = recorder.record_file(path, out)
    (vf,) = loader.load_suite([out])
    (vector,) = vf.vectors
    assert vector.id == "session" and vector.destructive  # it sent a wrong PIN
    # a fresh card has other keys and serials: only masking lets it pass
    other = profiles.CardFactory()
    result = runner.play(vector, InProcessTarget(other))
    assert result.status == runner.PASSED, "\n".join(result.diff)
    assert rec.masked["signature"] == 2 and rec.masked["PIN"] == 4


def test_recorded_vectors_mask_what_varies(recorded: tuple[Path, dict[str, Any]],
                                           tmp_path: Path) -> None:
    path, seen = recorded
    out = tmp_path / "v.jsonl"
    recorder.record_file(path, out)
    text = out.read_text()
    steps = [json.loads(line) for line in text.splitlines()[2:]]
    commands = [s["command"] for s in steps if s["event"] == "xfer"]
    assert "00200080{pin:auth}" in commands and "00200080{wrong-pin:helper}" in commands
    assert "2A2A2A2A" not in text  # no redacted PIN left to replay
    assert seen["auth_cert"].hex().upper() not in text  # certificate bytes masked
    signs = [s for s in steps if s["event"] == "xfer" and s["command"].startswith("802A")]
    assert [s["check"] for s in signs] == [["len:256", "signature-verifies:auth"],
                                            ["len:256", "signature-verifies:sign"]]
    assert {"event": "comment", "text": "a recorded shell session"} in steps
    assert any(s["event"] == "reset" and s["atr"] == jpki.ATR.hex().upper() for s in steps)
    presence = [s for s in steps if s.get("data") == "8F8F00"]
    assert presence  # what does not vary stays exact


def test_recorded_vectors_fail_on_another_card(recorded: tuple[Path, dict[str, Any]],
                                               tmp_path: Path) -> None:
    path, _seen = recorded
    out = tmp_path / "v.jsonl"
    recorder.record_file(path, out, profile="auth-only")
    (vector,) = loader.all_vectors(loader.load_suite([out]))
    result = runner.play(vector, InProcessTarget())
    assert result.status == runner.FAILED
    assert "- data 8F8F00" in result.diff and "+ data 008F00" in result.diff


def test_replay_transport_serves_the_session_back(recorded: tuple[Path, dict[str, Any]]) -> None:
    path, seen = recorded
    player = ReplayTransport(path)
    assert player.name == "replay:default card"
    again = session(JpkiClient(player))
    assert again == seen  # the same certificates, signatures, facts, tries
    assert player.finished
    player.check_finished()


def test_replay_divergence_is_clear(recorded: tuple[Path, dict[str, Any]]) -> None:
    path, _seen = recorded
    player = ReplayTransport(path)
    client = JpkiClient(player)
    client.token_label()
    with pytest.raises(ReplayDivergence, match=r"diverged at exchange 4 of \d+: the trace has "
                       r"00A4020C020008, got 00A4020C02000A"):
        client.read_certificate("auth")
    short = ReplayTransport(path)
    JpkiClient(short).token_label()
    with pytest.raises(ReplayDivergence, match=r"recorded exchange\(s\) never came"):
        short.check_finished()


def test_replay_matches_redacted_pins_by_length(recorded: tuple[Path, dict[str, Any]]) -> None:
    path, _seen = recorded
    t = trace.load(path)
    assert any(x.redacted for x in t.xfers)
    player = ReplayTransport(t)
    client = JpkiClient(player)
    client.token_label(), client.certificate_presence(), client.read_certificate("auth")
    client.pin_status("auth")
    client.verify_pin("auth", "9999")  # any 4 digits: the trace has only ****
    with pytest.raises(ReplayDivergence):
        ReplayTransport(t).transmit(b"\x00\xa4\x04\x0c")


def test_replay_card_never_raises(recorded: tuple[Path, dict[str, Any]]) -> None:
    path, _seen = recorded
    card = ReplayCard(path)
    assert card.power_on() == jpki.ATR
    assert card.process(bytes.fromhex("00A4040C0AD392F000260100000001")) == b"\x90\x00"
    assert card.process(bytes.fromhex("00B0000004")) == b"\x6f\x00"
    assert card.divergence is not None and "exchange 2" in str(card.divergence)
    assert card.process(bytes.fromhex("00A4020C020006")) == b"\x6f\x00"  # stays diverged


def test_serve_style_trace_with_power_events(tmp_path: Path) -> None:
    """serve --trace logs pcscd's power-ups and -downs: the vector plays them."""
    card, _store = profiles.card("default")
    path = tmp_path / "serve.jsonl"
    with trace.TraceWriter(path, card="Virtual PCD 00 00") as writer:
        t = InProcessTransport(card)
        writer.reset(card.power_on(), "cold")
        client = JpkiClient(trace.TracingTransport(t, writer))
        client.verify_pin("auth", "1234")
        writer.power_off()
        card.power_off()
        writer.reset(card.power_on(), "cold")
        client.forget()
        client.select_jpki()
        client.select_ef(jpki.EF_AUTH_KEY)
        resp = client.transmit_apdu(bytes.fromhex("802A00800400010203" + "00"))
        assert resp.sw == 0x6982  # the power cycle dropped the PIN
    rec = recorder.record(trace.load(path), vector_id="serve")
    kinds = [s["event"] for s in rec.steps if s["event"] != "xfer"]
    assert kinds == ["reset", "power-off", "power-on"]
    vector = loader.loads(rec.dumps()).vectors[0]
    assert runner.play(vector, InProcessTarget()).status == runner.PASSED


def test_cli_record_then_run(recorded: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    path, _seen = recorded
    out = tmp_path / "recorded.jsonl"
    cmd = [sys.executable, "-m", "jpki_sim", "vectors"]
    done = subprocess.run([*cmd, "record", str(path), "-o", str(out), "--id", "my-session",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["vector"] == "my-session" and info["masked"]["signature"] == 2
    done = subprocess.run([*cmd, "run", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"


def test_cli_record_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"format": "jpki-sim-trace", "version": 1}\n')
    done = subprocess.run([sys.executable, "-m", "jpki_sim", "vectors", "record", str(bad),
                           "-o", str(tmp_path / "o.jsonl")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "jpki-sim: error: the trace has no exchanges to record"


# ---------------------------------------------------------------- any session records faithfully

_J = "00A4040C0AD392F000260100000001"
_H = "00A4040C0AD3921000310001010408"
_USEFUL = [
    _J, _H, "00A4000C", "00CA5F5100", "00200080", "00200098", "0020009B", "00200091",
    "0020008004" + b"1234".hex(), "0020008004" + b"9999".hex(), "002000800631323334",
    "0020008006" + b"ABC123".hex(), "00240180045678", "0024018004" + b"4321".hex(),
    "802A008033" + DIGEST.hex() + "00", "802A0097" + "20" + "11" * 32 + "00",
    "802A049A20" + "22" * 32 + "00", "00B0000000", "00B0000004", "00B0880003",
    "00B08A0000", "00B0810004", "00B0000100", "00B07FFF01", "00B00000000000",
] + [f"00A4020C02{fid}" for fid in ("0001", "0002", "0006", "0008", "000A", "000B", "0011",
                                        "0017", "0018", "001A", "001B", "0003")]


def _commands() -> Any:
    from hypothesis import strategies as st

    from jpki_sim.testing import strategies as jst

    useful = st.sampled_from(_USEFUL).map(bytes.fromhex)
    iso = jst.raw_command_apdus(max_data=24).map(
        lambda c: bytes((c[0] & 0x8C,)) + c[1:]  # mostly the card's own classes
    )
    return st.lists(st.one_of(useful, useful, useful, iso, jst.malformed_apdus()),
                    min_size=1, max_size=25)


def test_any_session_records_into_a_vector_that_passes(tmp_path_factory: Any) -> None:
    """Whatever a session sends, its recording replays on a fresh card of the profile."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(_commands())
    def check(commands: list[bytes]) -> None:
        card, _store = profiles.card("default")
        path = tmp_path_factory.mktemp("prop") / "t.jsonl"
        with trace.TraceWriter(path) as writer:
            transport = trace.TracingTransport(InProcessTransport(card), writer)
            for i, command in enumerate(commands):
                if i % 7 == 6:
                    transport.reset()
                transport.transmit(command)
        rec = recorder.record(trace.load(path), vector_id="prop")
        vector = loader.loads(rec.dumps()).vectors[0]
        result = runner.play(vector, InProcessTarget())
        assert result.status == runner.PASSED, "\n".join(result.diff)

    check()


def test_real_shell_session_recorded_and_run(tmp_path: Path) -> None:
    """`jpki-sim shell --trace`, then `vectors record`, then `vectors run`: as a user does it."""
    import subprocess
    import sys

    from jpki_sim.issuer import presets as profiles

    card = tmp_path / "card.json"
    profiles.factory().store("default", str(card))
    script = tmp_path / "session.txt"
    script.write_text(
        "select jpki\nread-cert auth\npin-status\nverify auth 9999\nverify auth 1234\n"
        "sign --hash sha256 --text hello\nselect helper\nverify helper 1234\nmy-number\n"
    )
    trace_file, vectors_file = tmp_path / "session.jsonl", tmp_path / "session-vectors.jsonl"

    def jpki_sim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jpki_sim", *args],
                              capture_output=True, text=True, timeout=120)

    shell = jpki_sim("shell", "--card", str(card), "--script", str(script),
                     "--trace", str(trace_file))
    assert shell.returncode == 0, shell.stderr
    assert "signature verifies" in shell.stdout
    rec = jpki_sim("vectors", "record", str(trace_file), "-o", str(vectors_file))
    assert rec.returncode == 0, rec.stderr
    assert "{pin:auth}" in vectors_file.read_text()  # the right PIN as a template
    run = jpki_sim("vectors", "run", str(vectors_file))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"
