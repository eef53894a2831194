"""Redaction: PIN data masked in every trace unless a user asks to keep it."""

from __future__ import annotations

from dataclasses import replace

from jpki_sim.trace.model import (
    PINS_REDACTED,
    REDACTION_BYTE,
    Event,
    Trace,
    Xfer,
    is_secret_command,
)

# ---------------------------------------------------------------- redaction


def redact_command(command: bytes) -> tuple[bytes, bool]:
    """The command with any PIN data replaced by ``2A`` bytes, and whether it was.

    Every command :func:`~jpki_sim.trace.model.is_secret_command` names is masked,
    whatever its class byte. Works on malformed commands too: when Lc does
    not fit, everything after the header is treated as PIN data, so nothing
    leaks through a bad length.
    """
    if not is_secret_command(command):
        return command, False
    lc = command[4]
    if lc and len(command) in (5 + lc, 6 + lc):
        start, end = 5, 5 + lc
    elif lc == 0 and len(command) >= 7:
        l2 = command[5] << 8 | command[6]
        if l2 and len(command) in (7 + l2, 9 + l2):
            start, end = 7, 7 + l2
        else:
            start, end = 5, len(command)
    else:
        start, end = 5, len(command)
    masked = command[:start] + bytes([REDACTION_BYTE]) * (end - start) + command[end:]
    return masked, True


def redact(trace: Trace) -> Trace:
    """A copy of ``trace`` with every PIN redacted."""
    events: list[Event] = []
    for e in trace.events:
        if isinstance(e, Xfer) and not e.redacted:
            cmd, done = redact_command(e.command)
            if done:
                e = replace(e, command=cmd, redacted=True)
        events.append(e)
    return Trace(trace.card, trace.created, PINS_REDACTED, events, dict(trace.extra))
