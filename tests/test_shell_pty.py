"""The shell as a user meets it: a real pseudo-terminal driven with pexpect.

Tab completion, history (arrow up, and the history file), a full session
(select, read a certificate, a wrong PIN and the tries left, a hidden PIN
prompt, signing), malformed input, and leaving with Ctrl-D.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect")

CARD = Path(__file__).parent / "shell_scripts" / "card.json"
# prompt_toolkit draws the prompt's trailing space as a cursor move: match without it
PROMPT_NONE = "card.json:->"
PROMPT_JPKI = "card.json:jpki>"
PROMPT_AUTH = "card.json:jpki[auth]>"
UP = "\x1b[A"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    card = tmp_path / "card.json"
    shutil.copyfile(CARD, card)
    env = dict(os.environ)
    env.update({
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HOME": str(tmp_path),
        "TERM": "xterm",
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "NO_COLOR": "1",
    })
    child = pexpect.spawn(
        sys.executable, ["-m", "jpki_sim", "shell", "--card", str(card)],
        cwd=str(tmp_path), env=env, encoding="utf-8", timeout=20, dimensions=(40, 200),
    )
    yield child, tmp_path
    if child.isalive():
        child.terminate(force=True)


def test_interactive_session(session: tuple[Any, Path]) -> None:
    child, tmp_path = session
    child.expect_exact("'help' lists the commands")
    child.expect_exact(PROMPT_NONE)

    # Tab completes the command and then the application name
    # (what Tab inserted shows in the result: the line run is "select jpki")
    child.send("sel\t")
    child.send("jp\t")
    child.send("\r")
    child.expect_exact("selected application jpki")
    child.expect_exact(PROMPT_JPKI)

    # the certificate, read and decoded
    child.send("read-c\t")
    child.sendline(" auth")
    child.expect_exact("auth certificate, ")
    child.expect(r"subject\s+C=JP, CN=")
    child.expect_exact("valid")
    child.expect_exact(PROMPT_JPKI)

    # a wrong PIN, and the tries left
    child.sendline("verify auth 0000")
    child.expect_exact("wrong PIN, 63C2: 2 tries left")
    child.expect_exact(PROMPT_JPKI)
    child.sendline("pin-status auth")
    child.expect_exact("2 tries left (of 3)")
    child.expect_exact(PROMPT_JPKI)

    # Ctrl-C at the hidden PIN prompt cancels the command, nothing else
    child.sendline("verify sign")
    child.expect_exact("sign PIN:")
    child.sendcontrol("c")
    child.expect_exact("error: cancelled")
    child.expect_exact(PROMPT_JPKI)

    # the PIN asked for, hidden: it must not be echoed
    child.sendline("verify auth")
    child.expect_exact("auth PIN:")
    child.sendline("1234")
    child.expect_exact("auth PIN verified")
    child.expect_exact(PROMPT_AUTH)
    assert "1234" not in (child.before or "")

    child.sendline("sign 'hello from the pty'")
    child.expect_exact("signature verifies with the auth certificate")
    child.expect_exact(PROMPT_AUTH)

    # malformed input: one line, and the shell goes on
    child.sendline("00A4040")
    child.expect_exact("error: odd number of hex digits")
    child.expect_exact(PROMPT_AUTH)
    child.sendline("frobnicate")
    child.expect_exact("error: unknown command 'frobnicate'")
    child.expect_exact(PROMPT_AUTH)

    # history: arrow up brings back the last line
    child.sendline("pin-status sign")
    child.expect_exact("5 tries left (of 5)")
    child.expect_exact(PROMPT_AUTH)
    child.send(UP)
    child.expect_exact("pin-status sign")
    child.send("\r")
    child.expect_exact("5 tries left (of 5)")
    child.expect_exact(PROMPT_AUTH)

    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    history = (tmp_path / "data" / "jpki-sim" / "shell_history").read_text()
    assert "select jpki" in history and "pin-status sign" in history
    assert "0000" not in history  # lines with a PIN stay out of the history file


def test_history_survives_a_restart(session: tuple[Any, Path]) -> None:
    child, tmp_path = session
    child.expect_exact(PROMPT_NONE)
    child.sendline("token-info")
    child.expect_exact("JPKIAPICCTOKEN2")
    child.expect_exact(PROMPT_JPKI)
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()

    again = pexpect.spawn(
        sys.executable, ["-m", "jpki_sim", "shell", "--card", str(tmp_path / "card.json")],
        cwd=str(tmp_path), env=child.env, encoding="utf-8", timeout=20, dimensions=(40, 200),
    )
    try:
        again.expect_exact(PROMPT_NONE)
        again.send(UP)
        again.expect_exact("exit")  # the last line of the previous run
        again.send(UP)
        again.expect_exact("token-info")
        again.send("\r")
        again.expect_exact("token label   JPKIAPICCTOKEN2")
        again.expect_exact(PROMPT_JPKI)
        again.sendeof()
        again.expect(pexpect.EOF)
    finally:
        again.close(force=True)


def test_tab_lists_ambiguous_choices(session: tuple[Any, Path]) -> None:
    child, _ = session
    child.expect_exact(PROMPT_NONE)
    child.send("read-cert a\t")
    # two candidates: the menu shows both
    child.expect_exact("auth-ca")
    child.sendcontrol("c")  # abandons the line; the shell goes on
    # "exit" and not Ctrl-D: typed text waits in the pty until the next prompt
    # reads it, a Ctrl-D sent between two prompts would be taken by the tty
    child.sendline("echo still    here")  # typed with 4 spaces, printed with one
    child.expect_exact("still here")
    child.sendline("exit")
    child.expect(pexpect.EOF)
