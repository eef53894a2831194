"""Golden-output shell scripts against the emulated card.

Each ``tests/shell_scripts/NAME.txt`` runs with ``--echo`` against a copy of
the fixed card ``tests/shell_scripts/card.json``; the whole output must equal
``NAME.out`` byte for byte. After a deliberate change of the shell's output,
regenerate with ``JPKI_SIM_UPDATE_GOLDEN=1 python -m pytest tests/test_shell_golden.py``
and review the diff.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jpki_sim.shell import CardTarget, Shell
from jpki_sim.trace.formats import load

HERE = Path(__file__).parent / "shell_scripts"
SCRIPTS = sorted(HERE.glob("*.txt"))
UPDATE = os.environ.get("JPKI_SIM_UPDATE_GOLDEN") == "1"


def _card(tmp_path: Path) -> Path:
    card = tmp_path / "card.json"
    shutil.copyfile(HERE / "card.json", card)
    return card


def run_script(card: Path, script: Path, trace: Path | None = None) -> tuple[int, str]:
    from jpki_sim.trace.writer import TraceWriter

    out = io.StringIO()
    target = CardTarget.open_file(str(card))
    writer = TraceWriter(trace, card=card.name) if trace else None
    shell = Shell(target, out, trace=writer)
    try:
        code = shell.run_script(script.read_text(encoding="utf-8").splitlines(), echo=True,
                                source=script.name)
    finally:
        shell.close()
    return code, out.getvalue()


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_golden_script(script: Path, tmp_path: Path) -> None:
    code, output = run_script(_card(tmp_path), script)
    golden = script.with_suffix(".out")
    if UPDATE:
        golden.write_text(output, encoding="utf-8")
    assert code == 0, output[-2000:]
    assert golden.exists(), f"no golden output {golden.name}: run with JPKI_SIM_UPDATE_GOLDEN=1"
    assert output == golden.read_text(encoding="utf-8")


def test_scripts_cover_the_full_session() -> None:
    # the acceptance walk: select, read cert, wrong PIN, tries left, sign
    text = (HERE / "session.txt").read_text()
    for verb in ("select jpki", "read-cert auth", "verify auth 0000", "pin-status auth", "sign "):
        assert verb in text


def test_session_trace_shows_and_hides_pins(tmp_path: Path) -> None:
    trace_path = tmp_path / "session.jsonl"
    code, _ = run_script(_card(tmp_path), HERE / "session.txt", trace_path)
    assert code == 0
    t = load(trace_path)
    commands = [x.command.hex().upper() for x in t.xfers]
    # the PINs typed (1234, 0000, ABC123) are in no command sent
    assert not any(p in c for c in commands for p in ("31323334", "30303030", "414243313233"))
    assert t.pins == "redacted"
    verifies = [x for x in t.xfers if x.command[1] == 0x20 and len(x.command) > 4]
    assert verifies and all(x.redacted for x in verifies)
    assert [f"{x.sw:04X}" for x in verifies][:2] == ["63C2", "9000"]
    # a script comment lands in the trace as a comment event
    assert t.events[1].__class__.__name__ == "Comment"
    shown = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "trace", "show", str(trace_path)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "SELECT jpki" in shown and "[tries left: 2]" in shown


def test_cli_script_exit_codes(tmp_path: Path) -> None:
    card = _card(tmp_path)
    ok = tmp_path / "ok.txt"
    ok.write_text("select jpki --expect-sw 9000\npin-status auth --expect-sw 63C3\n")
    fail = tmp_path / "fail.txt"
    fail.write_text("select jpki\nread-cert sign --expect-sw 9000\necho never\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("select jpki\n00B0 0\necho never\n")

    def run(script: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jpki_sim", "shell", "--card", str(card), "--script",
             str(script)], capture_output=True, text=True,
        )

    r = run(ok)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(fail)
    assert r.returncode == 1
    assert "FAILED at" in r.stdout and "expected SW 9000, got 6982" in r.stdout
    assert "never" not in r.stdout
    r = run(bad)
    assert r.returncode == 2 and "never" not in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "shell", "--card", str(card), "--script", "-"],
        input="select jpki\ntoken-info --expect-data JPKIAPICCTOKEN2\n",
        capture_output=True, text=True,
    )
    assert r.returncode == 0 and "token label   JPKIAPICCTOKEN2" in r.stdout
