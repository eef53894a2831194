"""The profile seam: a card that is not JPKI, registered from the tests, through every way in.

``generic_card`` (beside this file) is a generic ISO 7816 card: one DF, one PIN
addressed by P2=81, one EF that needs it, one instruction of its own. It is
served through pcscd, driven by the shell in script mode, run by a vector file
and issued by ``card issue --profile``, with no engine file knowing it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import generic_card
from jpki_sim.card.store import CardStore
from jpki_sim.errors import UserError
from jpki_sim.profiles import registry
from jpki_sim.vectors import loader, runner
from jpki_sim.vectors.targets import InProcessTarget
from pcsc_harness import PORTS, PcscSession, ServeProcess, jpki_sim_command

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "generic" / "generic.jsonl"
SCRIPT = HERE / "generic" / "session.txt"
SLOT1 = f"localhost:{PORTS[1]}"


@pytest.fixture
def generic() -> Iterator[registry.Profile]:  # type: ignore[name-defined]
    with registry.registered(generic_card.PROFILE) as profile:
        yield profile


def env_with_the_profile(tmp_path: Path) -> dict[str, str]:
    """A child process that finds the tests' profile (and never the user's data dir)."""
    src = HERE.parent / "src"
    path = os.pathsep.join(filter(None, [str(HERE), str(src), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, JPKI_SIM_PROFILES="generic_card:PROFILE",
                XDG_DATA_HOME=str(tmp_path / "data"), HOME=str(tmp_path))


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*jpki_sim_command(), *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, env=env)


def issue(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = env_with_the_profile(tmp_path)
    card = tmp_path / "generic.json"
    done = cli("card", "issue", str(card), "--profile", "generic", env=env)
    assert done.returncode == 0, done.stderr
    return card, env


# ---------------------------------------------------------------- in-process


def test_the_card_answers_through_the_generic_engine(generic: object) -> None:
    store: CardStore[generic_card.GenericState] = CardStore(
        generic_card.PROFILE.state, generic_card.new_state())
    card = registry.get("generic").build(store)
    card.power_on()

    def tx(hexstr: str) -> str:
        return card.process(bytes.fromhex(hexstr)).hex().upper()

    assert tx("00A4040C06" + generic_card.AID.hex()) == "9000"
    assert tx("00200081") == "63C3"  # the PIN by its reference number, no SELECT
    assert tx("00200080") == "6A88"  # reference number 0: no such PIN on this card
    assert tx("0020008106" + b"123456".hex()) == "9000"
    assert tx("80EE00000201" + "0200") == "02019000"  # the profile's own instruction
    assert tx("80CA000000") == "6D00"  # what the profile did not add stays unknown
    # the counter went through the one retry-counter rule into the state
    assert tx("0020008106" + b"999999".hex()) == "63C2"
    assert store.state.pins["user"].tries_left == 2


def test_a_vector_file_names_its_card_profile_and_plays_in_process(generic: object) -> None:
    vectors = loader.all_vectors([loader.load_file(VECTORS)])
    assert {v.card_profile for v in vectors} == {"generic"}
    report = runner.run_suite(vectors, InProcessTarget(), destructive=True)
    assert (report.passed, report.failed, report.skipped) == (len(vectors), 0, 0), [
        (r.id, r.diff) for r in report.results if r.status != runner.PASSED]


def test_vectors_of_one_card_refuse_another_cards_pins(generic: object) -> None:
    text = VECTORS.read_text().replace("{pin:user}", "{pin:auth}", 1)
    with pytest.raises(UserError, match="no PIN 'auth' on the generic card"):
        loader.loads(text)


def test_an_unknown_profile_is_a_one_line_error() -> None:
    with pytest.raises(UserError, match="no card profile 'nope'; profiles: jpki"):
        registry.get("nope")


# ---------------------------------------------------------------- the command line


def test_card_issue_names_the_profile_in_the_file(tmp_path: Path) -> None:
    card, env = issue(tmp_path)
    doc = json.loads(card.read_text())
    assert (doc["format"], doc["profile"]) == ("jpki-sim-card", "generic")
    assert doc["pins"]["user"]["tries_left"] == 3
    assert oct(card.stat().st_mode & 0o777) == "0o600"
    # the JPKI holder's options describe another card
    done = cli("card", "issue", str(tmp_path / "x.json"), "--profile", "generic",
               "--name", "番号 花子", env=env)
    assert done.returncode == 2 and "--name describes a JPKI card" in done.stderr


def test_apdu_on_the_card_file_keeps_the_counter(tmp_path: Path) -> None:
    card, env = issue(tmp_path)
    done = cli("apdu", "--card", str(card), "--json", "00A4040C06" + generic_card.AID.hex(),
               "0020008106" + b"000000".hex(), env=env)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line)["sw"] for line in done.stdout.splitlines()]
    assert answers == ["9000", "63C2"]
    assert json.loads(card.read_text())["pins"]["user"]["tries_left"] == 2
    # --profile must agree with the file
    done = cli("apdu", "--card", str(card), "--profile", "jpki", "00A40000", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"jpki-sim: error: {card} is a 'generic' card, not 'jpki'"


def test_the_shell_drives_the_card_in_script_mode(tmp_path: Path) -> None:
    card, env = issue(tmp_path)
    done = cli("shell", "--card", str(card), "--script", str(SCRIPT), "--echo", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mirrored: cba" in done.stdout
    assert "FAILED" not in done.stdout
    # the JPKI verbs are not there on this card
    bad = tmp_path / "bad.txt"
    bad.write_text("read-cert auth\n")
    done = cli("shell", "--card", str(card), "--script", str(bad), env=env)
    assert done.returncode == 2 and "unknown command 'read-cert'" in done.stdout


def test_vectors_run_and_list_by_profile(tmp_path: Path) -> None:
    env = env_with_the_profile(tmp_path)
    done = cli("vectors", "run", str(VECTORS), "--profile", "generic", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed, 0 failed" in done.stdout
    done = cli("vectors", "list", str(VECTORS), "--json", env=env)
    rows = json.loads(done.stdout)
    assert {(r["card_profile"], r["profile"]) for r in rows} == {
        ("generic", "default"), ("generic", "blocked")}


# ---------------------------------------------------------------- through pcscd


@pytest.mark.pcsc
def test_served_through_pcscd_to_a_pcsc_client(pcscd_session: PcscSession,
                                                tmp_path: Path) -> None:
    from jpki_sim.transport.pcsc import PcscTransport

    card, env = issue(tmp_path)
    reader = pcscd_session.reader_for_port(PORTS[1])
    server = ServeProcess([str(card), "--vpcd", SLOT1], env=env)
    try:
        server.wait_ready(timeout=30)
        with PcscTransport(reader) as t:
            assert t.atr() == generic_card.ATR
            assert t.transmit(bytes.fromhex("00A4040C06" + generic_card.AID.hex())) == b"\x90\x00"
            assert t.transmit(bytes.fromhex("0020008106" + b"123456".hex())) == b"\x90\x00"
            assert t.transmit(bytes.fromhex("80EE0000026869" + "00")) == b"ih\x90\x00"
            assert t.transmit(bytes.fromhex("0020008106" + b"000000".hex())) == b"\x63\xc2"
    finally:
        assert server.terminate() == 0
    assert json.loads(card.read_text())["pins"]["user"]["tries_left"] == 2


@pytest.mark.pcsc
def test_vectors_run_through_pcscd(pcscd_session: PcscSession, tmp_path: Path) -> None:
    env = env_with_the_profile(tmp_path)
    env["JPKI_SIM_PCSC_LOCK_HELD"] = "1"  # this session holds the reader lock
    done = cli("vectors", "run", str(VECTORS), "--pcsc", "--port", str(PORTS[1]), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed, 0 failed" in done.stdout


def test_profiles_lists_the_registered_kinds_of_card(tmp_path: Path) -> None:
    done = cli("profiles", "--json", env=env_with_the_profile(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert list(rows) == ["jpki", "generic"]
    assert rows["generic"]["pins"]["user"] == {
        "application": "app", "fid": "0010", "p2": "81", "form": "6 to 8 digits",
        "max_tries": 3}
    assert rows["jpki"]["applications"]["jpki"] == "D392F000260100000001"
