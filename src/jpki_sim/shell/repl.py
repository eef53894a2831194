"""The interactive prompt: prompt_toolkit with history and completion over :class:`Shell`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory

from jpki_sim.shell.registry import ShellError
from jpki_sim.shell.session import Shell

#: lines that carry a PIN are kept out of the history file
_SECRET_LINE = re.compile(r"^\s*(verify|change-pin|reset-pin|renew)\s+\S+\s+\S+"
                          r"|^\s*(apdu\s+)?(00\s*)?(20|24|2c)\b", re.IGNORECASE)


def history_path() -> Path:
    import platformdirs

    folder = Path(platformdirs.user_data_dir("jpki-sim"))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / "shell_history"


class SecretFilteringHistory(FileHistory):
    """File history that does not keep lines with a PIN on them."""

    def store_string(self, string: str) -> None:
        if _SECRET_LINE.search(string) or _carries_pin_apdu(string):
            return
        super().store_string(string)


def _carries_pin_apdu(line: str) -> bool:
    from jpki_sim.shell.apdu_text import ApduTextError, parse_apdu_text
    from jpki_sim.trace import redact_command

    text = line.strip()
    if text.lower().startswith("apdu "):
        text = text[5:]
    text = text.split(" --", 1)[0]
    try:
        raw = parse_apdu_text(text, raw=True)
    except ApduTextError:
        return False
    return redact_command(raw)[1]


class ShellCompleter(Completer):
    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        word = document.get_word_before_cursor(WORD=True)
        for candidate in self.shell.complete(before):
            # a trailing space, as shells do, so the next word can be typed at once
            # (not after a folder: its contents come next)
            text = candidate if candidate.endswith("/") else candidate + " "
            yield Completion(text, start_position=-len(word), display=candidate)


def run_interactive(shell: Shell) -> int:
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession(
        history=SecretFilteringHistory(str(history_path())),
        completer=ShellCompleter(shell),
        complete_while_typing=False,
    )

    # a separate session without history: a PIN typed here is never stored,
    # and the main prompt's settings (is_password) are never touched
    secret_session: PromptSession[str] = PromptSession(is_password=True)

    def ask_secret(label: str) -> str:
        try:
            return secret_session.prompt(label)
        except (EOFError, KeyboardInterrupt):
            raise ShellError("cancelled") from None

    shell.ask_secret = ask_secret
    shell.print(f"jpki-sim shell on {shell.target.transport.name}. "
                "'help' lists the commands, Tab completes, Ctrl-D leaves.")
    while True:
        try:
            with patch_stdout():
                line = session.prompt(shell.prompt())
        except KeyboardInterrupt:
            continue
        except EOFError:
            return 0
        try:
            if not shell.run_line(line):
                return 0
        except KeyboardInterrupt:
            shell.print("interrupted")
