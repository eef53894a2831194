"""The same shell scripts, unchanged, against the card in a PC/SC reader (pcscd + vpcd).

The fixed card of the golden scripts is served on vpcd slot 0; the output must
equal the golden output of the in-process run, but for the card's name in the
prompt (the reader's name instead of the file's).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import open_store
from jpki_sim.shell import CardTarget, Shell
from pcsc_harness import ServedCard

pytestmark = pytest.mark.pcsc

HERE = Path(__file__).parent / "shell_scripts"
#: scripts without admin verbs: they must run unchanged on a reader
PORTABLE = ["session", "raw_apdus"]


@pytest.fixture
def served(vpcd_slot0: ServedCard, tmp_path: Path) -> ServedCard:
    card = tmp_path / "card.json"
    shutil.copyfile(HERE / "card.json", card)
    store = open_store(card)
    vpcd_slot0.insert(build_card(store))
    vpcd_slot0.store = store
    return vpcd_slot0


@pytest.mark.parametrize("name", PORTABLE)
def test_golden_script_through_pcsc(served: ServedCard, name: str) -> None:
    out = io.StringIO()
    target = CardTarget.open_reader(served.reader)
    shell = Shell(target, out)
    try:
        script = HERE / f"{name}.txt"
        code = shell.run_script(script.read_text(encoding="utf-8").splitlines(), echo=True,
                                source=script.name)
    finally:
        shell.close()
    text = out.getvalue().replace(f"{target.name}:", "card.json:")
    assert code == 0, text[-2000:]
    assert text == (HERE / f"{name}.out").read_text(encoding="utf-8")


def test_cli_reader_script_and_admin_refused(served: ServedCard, tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("select jpki --expect-sw 9000\npin-status auth --expect-sw 63C3\n")
    run = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "shell", "--reader", served.reader,
         "--script", str(script)], capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 tries left (of 3)" in run.stdout
    script.write_text("power off\n")
    run = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "shell", "--reader", served.reader,
         "--script", str(script)], capture_output=True, text=True,
    )
    assert run.returncode == 2 and "emulated cards only" in run.stdout
