"""The shell's command table: names, help, argument parsers, completions.

Commands are plain functions registered with :func:`command`; nothing here
knows about prompt_toolkit, so scripts and tests drive the shell without a tty.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from jpki_sim.shell.session import Shell


class ShellError(Exception):
    """Bad input at the prompt: printed as one line, and the shell goes on."""


class QuitShell(Exception):
    """``exit`` / ``quit`` / end of input."""


@dataclass
class Outcome:
    """What expectations are checked against: the last status word and a text."""

    sw: int | None = None
    text: str = ""


class ShellArgParser(argparse.ArgumentParser):
    """argparse that raises :class:`ShellError` instead of exiting."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(add_help=False, exit_on_error=False, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ShellError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ShellError(message.strip() if message else f"{self.prog}: bad arguments")


Completion = Iterable[str] | Callable[["Shell"], Iterable[str]]
Handler = Callable[["Shell", argparse.Namespace], "Outcome | None"]


@dataclass
class CommandSpec:
    name: str
    summary: str
    parser: ShellArgParser
    handler: Handler
    #: talks to the card: needs it powered, takes --expect-sw / --expect-data
    card: bool = True
    #: emulated cards only
    admin: bool = False
    aliases: tuple[str, ...] = ()
    #: completions for each positional argument, in order
    positional: list[Completion] = field(default_factory=list)

    def completions(self, shell: Shell, index: int, word: str = "") -> list[str]:
        if index >= len(self.positional):
            return []
        source = self.positional[index]
        if source is PATHS:
            return path_completions(word)
        values = source(shell) if callable(source) else source
        return list(values)

    def value_options(self) -> set[str]:
        """Options followed by a value (``--key auth``), not flags (``--raw``)."""
        return {o for a in self.parser._actions if a.option_strings and a.nargs != 0
                for o in a.option_strings}

    def options(self) -> list[str]:
        opts: list[str] = []
        for action in self.parser._actions:
            opts += [o for o in action.option_strings if o.startswith("--")]
        return opts


def PATHS(shell: Shell) -> Iterable[str]:  # noqa: N802  (a marker: complete file names)
    return []


def path_completions(word: str) -> list[str]:
    """Files and folders whose path starts with ``word`` (folders end with /)."""
    import os

    folder, _, prefix = word.rpartition("/")
    base = folder + "/" if folder or word.startswith("/") else ""
    try:
        names = sorted(os.listdir(os.path.expanduser(folder) if folder else "."))
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith(prefix) and (prefix.startswith(".") or not name.startswith(".")):
            path = base + name
            out.append(path + "/" if os.path.isdir(os.path.expanduser(path)) else path)
    return out


class VerbSet:
    """A table of shell commands: the generic ones, or those of one card profile.

    A shell on a card joins the generic set with its profile's (the module its
    profile names as the ``shell`` hook exposes ``VERBS``).
    """

    def __init__(self, *parts: VerbSet) -> None:
        self.commands: dict[str, CommandSpec] = {}
        self.aliases: dict[str, str] = {}
        for part in parts:
            self.commands.update(part.commands)
            self.aliases.update(part.aliases)

    def command(
        self,
        name: str,
        summary: str,
        *,
        description: str = "",
        card: bool = True,
        admin: bool = False,
        aliases: tuple[str, ...] = (),
        positional: list[Completion] | None = None,
        setup: Callable[[ShellArgParser], None] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a shell command; ``setup`` adds its arguments."""

        def register(handler: Handler) -> Handler:
            parser = ShellArgParser(prog=name, description=description or summary)
            if setup is not None:
                setup(parser)
            if name not in ("help", "exit", "echo"):
                add_expectations(parser)
            self.commands[name] = CommandSpec(
                name, summary, parser, handler, card, admin, aliases, positional or []
            )
            for alias in aliases:
                self.aliases[alias] = name
            return handler

        return register

    def lookup(self, name: str) -> CommandSpec | None:
        return self.commands.get(self.aliases.get(name, name))

    def names(self) -> list[str]:
        return sorted(set(self.commands) | set(self.aliases))


#: the commands every card has (registered by :mod:`jpki_sim.shell.verbs`)
GENERIC = VerbSet()
command = GENERIC.command


def add_expectations(parser: ShellArgParser) -> None:
    parser.add_argument("--expect-sw", metavar="PATTERN",
                        help="fail (stop a script) unless the last status word matches, "
                             "e.g. 9000, 63C?, 9000|61??")
    parser.add_argument("--expect-data", metavar="REGEX",
                        help="fail unless the result (response data as hex for apdu, the "
                             "printed value for verbs) matches this regular expression")
