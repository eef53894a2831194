"""The live trace of a served card: recent records, and who listens for new ones."""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jpki_sim.control")

#: recent trace records kept per card (the stream replays them to a new listener)
TRACE_KEEP = 1000
#: one trace record: (seq, unix time, kind, command, response, seconds, note);
#: kind is "apdu", "power" or "control"; command/response None where there is none;
#: seconds (the card's own time) None where it was not measured (the hot path)
Record = tuple[int, float, str, bytes | None, bytes | None, float | None, str]

class TraceBuffer:
    """Recent trace records of one card, and who listens for new ones."""

    def __init__(self, keep: int = TRACE_KEEP) -> None:
        self.records: deque[Record] = deque(maxlen=keep)
        #: the records' sequence numbers (next(seq))
        self.seq = itertools.count(1)
        self.listeners: list[Callable[[Record], None]] = []
        #: called when listeners come (True) or go (False): the served card then renews
        #: its hot path
        self.on_listeners: Callable[[bool], None] | None = None
        #: records what the card has not recorded yet (its last APDU), before any read
        #: or new record: so the trace is always in order and complete when looked at
        self.flush: Callable[[], None] | None = None

    def add(self, kind: str, command: bytes | None, response: bytes | None,
            seconds: float | None = 0.0, note: str = "") -> None:
        if self.flush is not None:
            self.flush()
        rec = (next(self.seq), time.time(), kind, command, response, seconds, note)
        self.records.append(rec)
        if self.listeners:
            self.tell(rec)

    def tell(self, rec: Record) -> None:
        """Give a new record to the listeners (ServedCard.process appends APDUs itself)."""
        for listener in self.listeners:
            try:
                listener(rec)
            except Exception:  # a broken listener must not reach the card
                log.exception("trace listener failed")

    def subscribe(self, listener: Callable[[Record], None]) -> Callable[[], None]:
        self.listeners = [*self.listeners, listener]
        if self.on_listeners is not None:
            self.on_listeners(True)

        def unsubscribe() -> None:
            self.listeners = [x for x in self.listeners if x is not listener]
            if self.on_listeners is not None:
                self.on_listeners(False)

        return unsubscribe

    def since(self, seq: int = 0) -> list[Record]:
        if self.flush is not None:
            self.flush()
        return [r for r in list(self.records) if r[0] > seq]

    def recent(self, n: int) -> list[Record]:
        if self.flush is not None:
            self.flush()
        return list(self.records)[-n:]


def record_json(rec: Record, card: int) -> dict[str, Any]:
    """A trace record as the API and the stream give it."""
    from datetime import datetime, timezone

    from jpki_sim.trace.describe import describe_command

    seq, t, kind, command, response, seconds, note = rec
    out: dict[str, Any] = {
        "seq": seq,
        "card": card,
        "time": datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds"),
        "type": kind,
        "note": note or None,
    }
    if kind == "apdu" and command is not None:
        out["command"] = command.hex().upper()
        out["what"] = describe_command(command)
        out["response"] = response.hex().upper() if response is not None else None
        out["sw"] = response[-2:].hex().upper() if response is not None else None
        out["ms"] = round(seconds * 1000, 3) if seconds is not None else None
    else:
        out["what"] = note
    return out
