"""Bad input on the command line (issue 11, items 8 and 10): one line, exit 2, nothing changed.

Run as real processes: the arguments reach Python as the bytes a shell passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jpki_sim
from isolation import Namespace, require_namespaces

SRC = str(Path(jpki_sim.__file__).resolve().parents[1])
LONG = "x" * 300  # longer than NAME_MAX (255): ENAMETOOLONG
NOT_UTF8 = b"\xff\xfe\x80"


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "XDG_DATA_HOME": str(tmp_path / "data")}


def cli(tmp_path: Path, *argv: str | bytes, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jpki_sim", *argv], capture_output=True, text=True,
        input=stdin, timeout=120, env=env(tmp_path), cwd=tmp_path, check=False,
    )  # fmt: skip


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 2, (run.returncode, run.stdout[-500:], run.stderr[-2000:])
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith("jpki-sim: error: "), lines
    assert "Traceback" not in run.stderr
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a card (ok.json), its CA, a trace and a vector file."""
    folder = tmp_path_factory.mktemp("cli-input")
    run = cli(folder, "card", "issue", "ok.json", "--ca", str(folder / "ca"))
    assert run.returncode == 0, run.stderr
    trace = folder / "t.jsonl"
    trace.write_text('{"format": "jpki-sim-trace", "version": 1, "card": "c"}\n'
                     '{"event": "xfer", "t": 0, "command": "00A4040C0AD392F000260100000001",'
                     ' "response": "9000"}\n')
    return folder


LONG_NAMES = [
    ("card", "status", LONG),
    ("card", "status", f"{LONG}/card.json"),
    ("card", "issue", LONG),
    ("card", "renew", LONG),
    ("card", "reset-pin", LONG, "--pin", "auth", "--new-pin", "1234"),
    ("card", "change-address", LONG, "東京都千代田区霞が関２丁目１番２号"),
    ("apdu", "--card", LONG, "00A4040C0AD392F000260100000001"),
    ("apdu", "--card", "ok.json", "--data-out", LONG, "00A4040C0AD392F000260100000001"),
    ("shell", "--card", LONG, "--script", "-"),
    ("shell", "--card", "ok.json", "--trace", LONG, "--script", "-"),
    ("trace", "show", LONG),
    ("trace", "convert", LONG, "out.jsonl", "--to", "jsonl"),
    ("trace", "convert", "t.jsonl", LONG, "--to", "jsonl"),
    ("vectors", "record", LONG, "-o", "v.jsonl"),
    ("vectors", "record", "t.jsonl", "-o", LONG),
    ("vectors", "run", LONG),
    ("vectors", "list", LONG),
    ("vectors", "run", "--junit", LONG, "-k", "select-jpki"),
    ("serve", LONG),
    ("ca", "show", "--ca", LONG),
    ("ca", "crl", "--out", LONG, "--ca", "ca"),
]


@pytest.mark.parametrize("argv", LONG_NAMES, ids=[" ".join(a[:2]) + f" #{i}"
                                                  for i, a in enumerate(LONG_NAMES)])
def test_over_long_file_names_are_one_line_errors(workdir: Path, argv: tuple[str, ...]) -> None:
    before = (workdir / "ok.json").read_bytes()
    line = one_line_error(cli(workdir, *argv))
    assert "File name too long" in line or "no such" in line.lower(), line
    assert (workdir / "ok.json").read_bytes() == before


@pytest.mark.parametrize("argv", [
    ("card", "issue", "n.json", "--name", NOT_UTF8),
    ("card", "issue", "n.json", "--address", NOT_UTF8),
    ("card", "change-name", "ok.json", NOT_UTF8),
    ("card", "change-address", "ok.json", NOT_UTF8),
    ("card", "status", NOT_UTF8),
])
def test_arguments_that_are_not_utf8_are_refused(workdir: Path, argv: tuple) -> None:
    before = (workdir / "ok.json").read_bytes()
    line = one_line_error(cli(workdir, *argv))
    assert "not valid UTF-8" in line
    assert (workdir / "ok.json").read_bytes() == before
    assert not (workdir / "n.json").exists()


@pytest.mark.parametrize("argv", [
    ("card", "status", "ok.json", "--at", ""),
    ("card", "issue", "e.json", "--issued", "", "--ca", "ca"),
    ("card", "issue", "e.json", "--birthdate", "", "--ca", "ca"),
    ("card", "renew", "ok.json", "--at", ""),
    ("ca", "crl", "--out", "x.crl", "--ca", "ca", "--at", ""),
])
def test_empty_dates_do_not_mean_today(workdir: Path, argv: tuple[str, ...]) -> None:
    line = one_line_error(cli(workdir, *argv))
    assert "must be a date YYYY-MM-DD, got ''" in line
    assert not (workdir / "e.json").exists() and not (workdir / "x.crl").exists()


def test_birth_dates_before_meiji_are_refused(workdir: Path) -> None:
    for day in ("1800-01-01", "1868-10-22"):
        line = one_line_error(cli(workdir, "card", "issue", "old.json", "--birthdate", day,
                                  "--issued", "2000-01-01", "--ca", "ca"))
        assert "before the Meiji era" in line
    assert not (workdir / "old.json").exists()
    # the first day of Meiji has an era code (1): accepted
    ok = cli(workdir, "card", "issue", "meiji.json", "--birthdate", "1868-10-23",
             "--issued", "2000-01-01", "--ca", "ca")
    assert ok.returncode == 0, ok.stderr


def test_ca_show_never_creates_a_ca_and_ca_init_does(tmp_path: Path) -> None:
    typo = tmp_path / "mistyped-ca"
    line = one_line_error(cli(tmp_path, "ca", "show", "--ca", str(typo)))
    assert "no test CA here" in line and "jpki-sim ca init" in line
    assert not typo.exists()
    for cmd in (("ca", "crl", "--out", str(tmp_path / "x.crl")), ("ca", "show")):
        one_line_error(cli(tmp_path, *cmd, "--ca", str(typo)))
        assert not typo.exists()
    # the default CA is not made by `ca show` either
    one_line_error(cli(tmp_path, "ca", "show"))
    assert not (tmp_path / "data" / "jpki-sim" / "ca").exists()
    made = cli(tmp_path, "ca", "init", "--ca", str(typo))
    assert made.returncode == 0 and "created the test CA" in made.stdout, made.stderr
    keys = {p.name: p.read_bytes() for p in typo.iterdir() if p.suffix == ".key"}
    assert set(keys) == {"auth-ca.key", "sign-ca.key"}
    again = cli(tmp_path, "ca", "init", "--ca", str(typo))
    assert again.returncode == 0 and "already" in again.stdout
    assert {p.name: p.read_bytes() for p in typo.iterdir() if p.suffix == ".key"} == keys
    shown = cli(tmp_path, "ca", "show", "--ca", str(typo))
    assert shown.returncode == 0 and str(typo) in shown.stdout


def test_an_unwritable_card_folder_is_one_line_and_changes_nothing(workdir: Path) -> None:
    """CI runs as root, whom permission bits do not stop: a read-only mount does."""
    require_namespaces()
    mnt = "/mnt/jpki-sim-ro"
    with Namespace(tmpfs={mnt: "size=1m,mode=0700"}, pcscd_dir=False,
                   env=env(workdir)) as ns:
        card = f"{mnt}/card.json"
        assert ns.run(["cp", str(workdir / "ok.json"), card]).returncode == 0
        assert ns.run(["mount", "-o", "remount,ro", mnt]).returncode == 0
        before = ns.run(["cat", card]).stdout
        from jpki_sim.issuer.lifecycle import renewal_opens
        from jpki_sim.profiles.jpki.state import load

        state = load(workdir / "ok.json")
        assert state.auth is not None
        due = renewal_opens(state.auth.expires).isoformat()
        for argv in (
            ["card", "reset-pin", card, "--pin", "auth", "--new-pin", "5678"],
            ["card", "change-address", card, "東京都千代田区霞が関２丁目１番２号"],
            ["card", "renew", card, "--auth-pin", "1234", "--sign-pin", "ABC123", "--at", due],
            ["card", "renew", card, "--new-card", "--at", renewal_opens(state.expires).isoformat()],
            ["card", "issue", f"{mnt}/new.json", "--ca", str(workdir / "ca")],
        ):
            run = ns.run([sys.executable, "-m", "jpki_sim", *argv])
            line = one_line_error(run)
            assert "Read-only file system" in line, line
            assert ns.run(["cat", card]).stdout == before
        # reading still works
        status = ns.run([sys.executable, "-m", "jpki_sim", "card", "status", card, "--json"])
        assert status.returncode == 0, status.stderr
