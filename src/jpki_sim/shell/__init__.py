"""The APDU shell: ``jpki-sim shell``.

The interpreter (:class:`~jpki_sim.shell.session.Shell`) is independent of the
terminal; :mod:`jpki_sim.shell.repl` adds prompt_toolkit (history, completion)
for interactive use.
"""

from __future__ import annotations

from jpki_sim.shell.registry import Outcome, QuitShell, ShellError
from jpki_sim.shell.session import ExpectationFailed, Shell
from jpki_sim.shell.target import CardTarget

__all__ = ["CardTarget", "ExpectationFailed", "Outcome", "QuitShell", "Shell", "ShellError"]
