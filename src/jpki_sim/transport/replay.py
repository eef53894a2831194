"""Serve a recorded trace back as a card: regression tests of reader software.

:class:`ReplayTransport` implements :class:`jpki_sim.transport.Transport`:
each command sent must be the next command of the trace, and gets the
recorded response. Anything else is a divergence, reported with the exchange
number and both commands (:class:`ReplayDivergence`). PIN data a trace
redacted (``2A`` bytes) matches any PIN of the same length.

Power events in the trace are not matched one for one: pcscd powers a card
up and down on its own schedule, so a replay that insisted on them would fail
for no fault of the software under test. ``reset()`` answers the recorded ATR.

:class:`ReplayCard` is the same player as an
:class:`~jpki_sim.transport.EmulatedCard`, to serve through vpcd
(``jpki-sim vectors replay TRACE``); being a card it never raises: a
divergence answers ``6F00`` and is kept in :attr:`ReplayCard.divergence`.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from jpki_sim.errors import JpkiSimError
from jpki_sim.profiles.jpki import ids as jpki

if TYPE_CHECKING:
    from jpki_sim.trace.model import Trace, Xfer

#: the answer of a replayed card to a command it did not expect
SW_DIVERGED = b"\x6f\x00"


class ReplayDivergence(JpkiSimError):
    """The software under test sent something other than the recorded session."""


def _as_trace(trace: Trace | str | os.PathLike[str]) -> Trace:
    from jpki_sim.trace.formats import load
    from jpki_sim.trace.model import Trace

    if isinstance(trace, Trace):
        return trace
    return load(trace)


def _matches(recorded: Xfer, command: bytes) -> bool:
    if not recorded.redacted:
        return recorded.command == command
    from jpki_sim.trace import redact_command

    masked, _done = redact_command(command)
    return masked == recorded.command


class ReplayTransport:
    """A :class:`~jpki_sim.transport.Transport` that answers from a recorded trace, in order."""

    def __init__(self, trace: Trace | str | os.PathLike[str], name: str | None = None) -> None:
        from jpki_sim.trace.model import Reset, Xfer

        self.trace = _as_trace(trace)
        self.name = name or f"replay:{self.trace.card or 'trace'}"
        self.exchanges: list[Xfer] = [e for e in self.trace.events if isinstance(e, Xfer)]
        atrs = [e.atr for e in self.trace.events if isinstance(e, Reset)]
        self._atr = atrs[0] if atrs else jpki.ATR
        #: exchanges answered so far
        self.position = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return len(self.exchanges) - self.position

    @property
    def finished(self) -> bool:
        """True once every recorded exchange was replayed."""
        return self.remaining == 0

    def transmit(self, apdu: bytes) -> bytes:
        with self._lock:
            n = self.position
            if n >= len(self.exchanges):
                raise ReplayDivergence(
                    f"replay: exchange {n + 1} ({bytes(apdu).hex().upper()}) is past the end "
                    f"of the trace ({len(self.exchanges)} exchanges)"
                )
            recorded = self.exchanges[n]
            if not _matches(recorded, bytes(apdu)):
                raise ReplayDivergence(
                    f"replay diverged at exchange {n + 1} of {len(self.exchanges)}: "
                    f"the trace has {recorded.command.hex().upper()}, "
                    f"got {bytes(apdu).hex().upper()}"
                )
            self.position = n + 1
            return recorded.response

    def atr(self) -> bytes:
        return self._atr

    def reset(self) -> bytes:
        return self._atr

    def close(self) -> None:
        pass

    def check_finished(self) -> None:
        """Raise :class:`ReplayDivergence` when the software stopped before the trace did."""
        if not self.finished:
            nxt = self.exchanges[self.position].command.hex().upper()
            raise ReplayDivergence(
                f"replay: {self.remaining} recorded exchange(s) never came (next: {nxt})"
            )


class ReplayCard:
    """A recorded trace as an :class:`~jpki_sim.transport.EmulatedCard` (for vpcd)."""

    def __init__(self, trace: Trace | str | os.PathLike[str]) -> None:
        self.player = ReplayTransport(trace)
        #: the first divergence, if any (the card then answers 6F00 to everything)
        self.divergence: ReplayDivergence | None = None

    @property
    def atr(self) -> bytes:
        return self.player.atr()

    def power_on(self) -> bytes:
        return self.player.atr()

    def power_off(self) -> None:
        pass

    def reset(self) -> bytes:
        return self.player.atr()

    def process(self, apdu: bytes) -> bytes:
        if self.divergence is not None:
            return SW_DIVERGED
        try:
            return self.player.transmit(apdu)
        except ReplayDivergence as exc:
            self.divergence = exc
            return SW_DIVERGED
