"""The shell's interpreter: one line in, text out. No terminal needed.

:class:`Shell` runs a line (``execute``), a script (``run_script``), builds
the prompt and the completions. The interactive loop (:mod:`.repl`) is a thin
prompt_toolkit layer over it; tests and ``--script`` drive it directly.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TextIO

from jpki_sim.errors import JpkiSimError, UserError
from jpki_sim.iso7816.errors import ApduError, PinError
from jpki_sim.shell import admin, verbs  # noqa: F401  (they register the generic commands)
from jpki_sim.shell.apdu_text import ApduTextError, check_sw_pattern, sw_matches
from jpki_sim.shell.registry import GENERIC, Outcome, QuitShell, ShellError, VerbSet
from jpki_sim.shell.target import CardTarget
from jpki_sim.trace import redact_command
from jpki_sim.trace.describe import describe_command
from jpki_sim.trace.writer import TraceWriter

if TYPE_CHECKING:
    from jpki_sim.profiles.base import Profile

#: commands longer than this are shortened in the verbs' exchange lines
LONG_COMMAND = 24


class ExpectationFailed(JpkiSimError):
    """An ``--expect-sw`` / ``--expect-data`` did not hold: a script stops (exit 1)."""


class Shell:
    """The APDU shell on one card."""

    def __init__(
        self,
        target: CardTarget,
        out: TextIO,
        *,
        mode: str = "auto",
        trace: TraceWriter | None = None,
        ask_secret: Callable[[str], str] | None = None,
    ) -> None:
        self.target = target
        self.profile = target.profile
        self.out = out
        #: the generic commands and those of the card's profile
        self.verbs: VerbSet = profile_verbs(self.profile)
        self.client = self.profile.client(target.transport, mode=mode)
        self.trace: TraceWriter | None = None
        self.trace_path: str | None = None
        if trace is not None:
            self.start_trace(trace)
        self.client.add_observer(self)
        #: print each exchange a verb makes (``apdus on|off``)
        self.show_apdus = True
        self._printing_exchanges = False
        self.ask_secret = ask_secret

    # ------------------------------------------------------------ traces

    def start_trace(self, writer: TraceWriter, path: str | None = None) -> None:
        """Record every exchange from now on (the card's state so far as a first event)."""
        self.trace = writer
        self.trace_path = path
        self.client.add_observer(writer)
        view = self.client.view
        if view.application is None and not view.verified:
            # nothing happened yet, or the card is fresh: a cold start as the first event
            writer.reset(self.target.transport.atr(), "cold")
        else:
            pins = ", ".join(sorted(view.verified)) or "none"
            writer.comment(f"trace started mid-session: application "
                           f"{view.application_name or '-'}, verified PINs {pins}")

    def stop_trace(self) -> None:
        if self.trace is not None:
            self.client.remove_observer(self.trace)
            self.trace.close()
        self.trace = None
        self.trace_path = None

    # ------------------------------------------------------------ output

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    # ApduObserver: verbs show the exchanges they make, one line each
    def xfer(self, command: bytes, response: bytes, started: float, duration: float) -> None:
        if not (self._printing_exchanges and self.show_apdus):
            return
        shown, redacted = redact_command(command)
        text = shown.hex().upper()
        if len(shown) > LONG_COMMAND:
            text = f"{shown[:LONG_COMMAND].hex().upper()}...({len(shown)} bytes)"
        sw = response[-2:].hex().upper() if len(response) >= 2 else "(no SW)"
        data = f"{len(response) - 2} bytes + " if len(response) > 2 else ""
        note = ", PIN hidden" if redacted else ""
        self.print(f"  {text} -> {data}{sw}  ({describe_command(command)}{note})")

    def reset(self, atr: bytes, kind: str = "warm") -> None:
        pass

    # ------------------------------------------------------------ prompt

    def prompt(self) -> str:
        """``card.json:jpki[auth]> ``: the card, the application, the verified PINs."""
        if not self.target.powered:
            return f"{self.target.name}:(off)> "
        view = self.client.view
        app = view.application_name or "-"
        verified = f"[{','.join(sorted(view.verified))}]" if view.verified else ""
        return f"{self.target.name}:{app}{verified}> "

    # ------------------------------------------------------------ running lines

    def execute(self, line: str) -> Outcome | None:
        """Run one line. Raises ShellError (bad input), ExpectationFailed, QuitShell."""
        text = line.strip()
        if not text or text.startswith("#"):
            if text and self.trace is not None:
                self.trace.comment(text[1:].strip())
            return None
        first = text.split(None, 1)[0]
        spec = self.verbs.lookup(first)
        if spec is None:
            if _looks_like_apdu(text):
                spec = self.verbs.commands["apdu"]
                text = "apdu " + text
            else:
                raise ShellError(f"unknown command {first!r} (type 'help' for the list)")
        if spec.name == "apdu":
            args = verbs.parse_apdu_line(spec, text.split(None, 1)[1] if " " in text else "")
        else:
            try:
                tokens = shlex.split(text)
            except ValueError as exc:
                raise ShellError(f"cannot read the line: {exc}") from None
            try:
                args = spec.parser.parse_args(tokens[1:])
            except argparse.ArgumentError as exc:
                raise ShellError(f"{spec.name}: {exc}") from None
        expect_sw = getattr(args, "expect_sw", None)
        expect_data = getattr(args, "expect_data", None)
        try:
            if expect_sw:
                check_sw_pattern(expect_sw)
            data_re = re.compile(expect_data) if expect_data else None
        except (ApduTextError, re.error) as exc:
            raise ShellError(f"bad expectation: {exc}") from None
        if spec.card and not self.target.powered:
            raise ShellError("the card is powered off ('power on' first)")
        self._printing_exchanges = spec.card and spec.name != "apdu"
        self.client.last_exchanges = []
        outcome: Outcome | None
        try:
            outcome = spec.handler(self, args)
        except PinError as exc:
            outcome = Outcome(exc.sw, str(exc.tries_left))
            self.print(_pin_error_text(exc))
        except ApduError as exc:
            outcome = Outcome(exc.sw, "")
            self.print(f"error: {exc}")
        except (UserError, ValueError) as exc:
            raise ShellError(str(exc)) from None
        finally:
            self._printing_exchanges = False
        if outcome is None:
            outcome = Outcome()
        if outcome.sw is None and self.client.last_exchanges:
            outcome.sw = self.client.last_exchanges[-1].sw
        self._check(outcome, expect_sw, data_re)
        return outcome

    def _check(
        self, outcome: Outcome, expect_sw: str | None, data_re: re.Pattern[str] | None
    ) -> None:
        if expect_sw:
            if outcome.sw is None:
                raise ExpectationFailed(f"expected SW {expect_sw}, but no APDU was exchanged")
            if not sw_matches(expect_sw, outcome.sw):
                raise ExpectationFailed(f"expected SW {expect_sw}, got {outcome.sw:04X}")
        if data_re is not None and not data_re.search(outcome.text):
            shown = outcome.text if len(outcome.text) <= 80 else outcome.text[:77] + "..."
            raise ExpectationFailed(f"expected data matching /{data_re.pattern}/, got {shown!r}")

    def run_line(self, line: str) -> bool:
        """Interactive: run a line, print any error as one line. False when the user quits."""
        try:
            self.execute(line)
        except QuitShell:
            return False
        except ExpectationFailed as exc:
            self.print(f"FAILED: {exc}")
        except ShellError as exc:
            self.print(f"error: {exc}")
        except JpkiSimError as exc:
            self.print(f"error: {exc}")
        return True

    def run_script(
        self, lines: Iterable[str], *, echo: bool = False, source: str = "script"
    ) -> int:
        """Run a script: 0 when it ran through, 1 on a failed expectation, 2 on bad input."""
        for lineno, raw in enumerate(lines, start=1):
            line = raw.rstrip("\n")
            if echo and line.strip():
                self.print(f"{self.prompt()}{line.strip()}")
            try:
                self.execute(line)
            except QuitShell:
                return 0
            except ExpectationFailed as exc:
                self.print(f"FAILED at {source}:{lineno}: {exc}")
                return 1
            except ShellError as exc:
                self.print(f"error at {source}:{lineno}: {exc}")
                return 2
            except JpkiSimError as exc:
                self.print(f"error at {source}:{lineno}: {exc}")
                return 2
        return 0

    # ------------------------------------------------------------ completion

    def complete(self, before_cursor: str) -> list[str]:
        """Words that may complete the last word of ``before_cursor``."""
        try:
            tokens = shlex.split(before_cursor)
        except ValueError:
            return []
        if before_cursor.endswith((" ", "\t")) or not before_cursor:
            tokens.append("")
        if len(tokens) <= 1:
            word = tokens[0] if tokens else ""
            return [n for n in self.verbs.names() if n.startswith(word)]
        spec = self.verbs.lookup(tokens[0])
        if spec is None:
            return []
        word = tokens[-1]
        if len(tokens) >= 3 and tokens[-2] == "--out":
            from jpki_sim.shell.registry import path_completions

            return path_completions(word)
        if word.startswith("-"):
            return [o for o in spec.options() if o.startswith(word)]
        # the index of this positional, skipping options and their values
        index = 0
        skip = False
        for tok in tokens[1:-1]:
            if skip:
                skip = False
                continue
            if tok.startswith("--"):
                skip = tok in spec.value_options()
                continue
            index += 1
        return [c for c in spec.completions(self, index, word) if c.startswith(word)]

    # ------------------------------------------------------------ card names

    def application_names(self) -> list[str]:
        return list(self.profile.applications)

    def ef_names(self) -> list[str]:
        """EF names of the card, those of the current application first."""
        app = self.client.view.application_name
        files = self.profile.files
        return [n for n, f in files.items() if f.application == app] + [
            n for n, f in files.items() if f.application != app
        ]

    def close(self) -> None:
        self.stop_trace()
        self.target.close()


def profile_verbs(profile: Profile) -> VerbSet:
    """The generic commands joined with the profile's own (its ``shell`` hook's VERBS)."""
    if not profile.has_hook("shell"):
        return VerbSet(GENERIC)
    module = profile.hook("shell")
    own: VerbSet = module.VERBS
    return VerbSet(GENERIC, own)


def _looks_like_apdu(text: str) -> bool:
    head = text.split(" --", 1)[0]
    return bool(re.fullmatch(r"[0-9A-Fa-f][0-9A-Fa-f\s:/\"'x_-]*", head.strip()))


def _pin_error_text(exc: PinError) -> str:
    what = exc.command or "PIN"
    if exc.tries_left == 0:
        return f"{what}: refused, {exc.sw:04X}: the PIN is blocked (tries left: 0)"
    s = "try" if exc.tries_left == 1 else "tries"
    return f"{what}: wrong PIN, {exc.sw:04X}: {exc.tries_left} {s} left"
