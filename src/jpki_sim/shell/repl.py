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

#: verbs whose arguments after the PIN's name are PINs
_PIN_VERBS = {"verify", "change-pin", "reset-pin"}
#: options of the shell's commands that take a value (the value is not an APDU)
_VALUED_OPTIONS = {"--expect-sw", "--expect-data", "--out", "--key", "--hash", "--scheme"}
#: a line that is nothing but something shaped like a PIN: typed at the wrong prompt
_BARE_PIN = re.compile(r"\d{4}|(?=[A-Z0-9]*[G-Z])[A-Z0-9]{6,16}")


def carries_pin(line: str) -> bool:
    """True when a shell line may hold a PIN: it is then never written to the history.

    The verbs with a PIN argument (``verify auth 1234``, ``change-pin ...``,
    ``reset-pin auth 5678``), ``renew`` with arguments, any APDU (plain,
    spaced, colon-separated, short form, ``--raw``, after ``apdu`` or not, any
    class byte) of an instruction whose data is a PIN, and a bare PIN-shaped
    word. Erring on the side of leaving a line out: it only costs a recall.
    """
    import shlex

    from jpki_sim.trace.model import SECRET_INS, carries_secret

    text = line.strip()
    if not text:
        return False
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if not words:
        return False
    verb = words[0].lower()
    if verb in _PIN_VERBS and len([w for w in words[1:] if not w.startswith("-")]) >= 2:
        return True
    if verb == "renew" and len(words) > 1:
        return True
    if _BARE_PIN.fullmatch(text):
        return True
    if verb == "apdu":
        words = words[1:]
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word.startswith("--"):
            skip = word.split("=", 1)[0] in _VALUED_OPTIONS and "=" not in word
            continue
        kept.append(word)
    candidate = " ".join(kept)
    from jpki_sim.shell.apdu_text import ApduTextError, parse_apdu_text

    for raw in (True, False):
        try:
            command = parse_apdu_text(candidate, raw=raw)
        except (ApduTextError, ValueError):
            continue
        if len(command) > 4 and carries_secret(command):
            return True
    # whatever did not parse: any run of hex that reads as a PIN command with data
    digits = re.sub(r"[\s:\"']", "", candidate)
    return bool(re.fullmatch(r"[0-9A-Fa-f]{10,}", digits)) and int(digits[2:4], 16) in SECRET_INS


def history_path() -> Path:
    """The history file, in the user data folder (0700), itself created 0600."""
    import platformdirs

    from jpki_sim.card.store import open_private, private_dir

    path = private_dir(platformdirs.user_data_dir("jpki-sim")) / "shell_history"
    open_private(path, "ab").close()  # created (or tightened) before prompt_toolkit appends
    return path


class SecretFilteringHistory(FileHistory):
    """File history that does not keep lines with a PIN on them (:func:`carries_pin`)."""

    def store_string(self, string: str) -> None:
        if carries_pin(string):
            return
        super().store_string(string)


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
