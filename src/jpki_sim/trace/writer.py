"""Writing a trace as the exchanges happen, and a transport that records its exchanges."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from jpki_sim.trace.formats import event_to_json
from jpki_sim.trace.model import (
    FORMAT,
    PINS_CLEAR,
    PINS_REDACTED,
    VERSION,
    Comment,
    PowerOff,
    Reset,
    Xfer,
    now_iso,
)
from jpki_sim.trace.redact import redact_command

# ---------------------------------------------------------------- the writer


class TraceWriter:
    """Writes a JSON Lines trace as events happen (each line flushed at once).

    Usable as a :class:`jpki_sim.client.ApduObserver` (``xfer`` / ``reset``),
    and directly by bridges (``jpki-sim serve --trace``). Thread-safe.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[str],
        *,
        card: str = "",
        keep_pins: bool = False,
        clock: Callable[[], float] = time.monotonic,
        created: str | None = None,
    ) -> None:
        if isinstance(target, (str, os.PathLike)):
            from jpki_sim.card.store import open_private

            # owner-only: a trace holds the holder's data, and PINs with keep_pins
            self._stream: IO[str] = open_private(target, "w")
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self.keep_pins = keep_pins
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self.count = 0
        header = {
            "format": FORMAT,
            "version": VERSION,
            "card": card,
            "created": created or now_iso(),
            "pins": PINS_CLEAR if keep_pins else PINS_REDACTED,
        }
        self._write(header)

    def _write(self, obj: dict[str, Any]) -> None:
        with self._lock:
            if self._stream.closed:
                return
            self._stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self._stream.flush()

    def _t(self, at: float | None) -> float:
        return round(max((self._clock() if at is None else at) - self._t0, 0.0), 6)

    def xfer(
        self, command: bytes, response: bytes, started: float | None = None, duration: float = 0.0
    ) -> None:
        """Record one exchange; ``started`` is a value of the writer's clock."""
        redacted = False
        if not self.keep_pins:
            command, redacted = redact_command(bytes(command))
        self.count += 1
        self._write(event_to_json(Xfer(self._t(started), duration, bytes(command),
                                    bytes(response), redacted)))

    def reset(self, atr: bytes, kind: str = "warm") -> None:
        self._write(event_to_json(Reset(self._t(None), bytes(atr), kind)))

    def power_off(self) -> None:
        self._write(event_to_json(PowerOff(self._t(None))))

    def comment(self, text: str) -> None:
        self._write(event_to_json(Comment(self._t(None), text)))

    def close(self) -> None:
        with self._lock:
            if self._owned and not self._stream.closed:
                self._stream.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TracingTransport:
    """Any Transport, with every exchange and reset written to a trace."""

    def __init__(self, inner: Any, writer: TraceWriter) -> None:
        self.inner = inner
        self.writer = writer
        self.name = inner.name

    def transmit(self, apdu: bytes) -> bytes:
        started = time.monotonic()
        response: bytes = self.inner.transmit(apdu)
        self.writer.xfer(apdu, response, started, time.monotonic() - started)
        return response

    def atr(self) -> bytes:
        atr: bytes = self.inner.atr()
        return atr

    def reset(self) -> bytes:
        atr: bytes = self.inner.reset()
        self.writer.reset(atr, "warm")
        return atr

    def close(self) -> None:
        self.inner.close()
