"""The one small interface every way of reaching a card implements.

Bytes in, response out. The in-process card, the PC/SC client
(:mod:`jpki_sim.pcsc`) and the replay player all implement it, so the shell,
the vector runner and the tests run unchanged against any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Transport(Protocol):
    #: Human-readable name: a card file path, a reader name, "replay:FILE".
    name: str

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the whole response (data + SW1 SW2)."""
        ...

    def atr(self) -> bytes:
        """The card's answer to reset."""
        ...

    def reset(self) -> bytes:
        """Warm-reset the card (security state is lost); return the ATR."""
        ...

    def close(self) -> None: ...


#: a hot path's gate: one flag the bridge sets while it answers on the path
Gate = list[bool]

#: what a card may offer a bridge for its commands (the ``hot`` attribute, optional):
#: the function that answers an APDU, the path's gate, a recorder the bridge calls once
#: the answer has left, with one tuple (command, answer, time), and the clock that time
#: is read from: a one-item list holding the Unix time, kept current by the card (to
#: within a few milliseconds; a read of it costs no call). A plain ``deque.append`` will
#: do for the recorder. The bridge takes no lock on it: it sets
#: ``gate[0]``, answers only if ``card.hot`` is still the same object, and clears the
#: gate; otherwise it calls ``card.process``. A card changed from another thread first
#: sets ``hot`` to None, waits for ``gate[0]`` to clear, makes the change and only then
#: offers a new path: with the interpreter lock, either the bridge sees the path gone,
#: or the change waits for the answer in flight (a Dekker-style handoff). Without an
#: interpreter lock (a free-threaded build) a card must offer no hot path.
HotPath = tuple[
    Callable[[bytes], bytes],
    Gate,
    Callable[[tuple[bytes, bytes, float]], None],
    list[float],
]


class EmulatedCard(Protocol):
    """What the card engine offers to bridges (vpcd) and the in-process transport.

    A card may also have ``hot`` (a :data:`HotPath` or None) and ``settle()``
    (called after each answer has left); bridges look for both with ``getattr``.
    """

    def power_on(self) -> bytes:
        """Cold start: clears volatile state, returns the ATR."""
        ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes:
        """Warm reset: clears volatile state, returns the ATR."""
        ...

    @property
    def atr(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, one response out. Never raises."""
        ...
