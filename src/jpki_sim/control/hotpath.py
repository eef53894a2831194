"""The served card's hot path: its lock and its clock.

The vpcd bridge answers a served card's APDUs on the card's hot path
(:data:`~jpki_sim.iso7816.transport.HotPath`) taking no lock and reading no
clock: :class:`CardLock` closes the path while a change is made (a Dekker-style
handoff with the bridge's gate), and :class:`CoarseClock` gives the time the
bridge stamps the exchanges with.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable

#: how often the served cards' clock is brought up to date: the resolution of the
#: times of the APDUs the bridge's hot path records
CLOCK_TICK = 0.005


class CoarseClock:
    """The Unix time in ``now[0]``, kept current by a daemon thread every ``tick`` seconds.

    The bridge stamps each exchange on the hot path with ``now[0]``: a read that costs
    no call and makes no object, where two clock readings per APDU (two calls, two
    floats) were a measurable share of what the served card cost through pcscd. So
    the times of those APDUs are right to within a tick or so (the order is exact:
    the records' numbers). Started at first use, and again in a forked child (where
    threads do not survive).
    """

    def __init__(self, tick: float = CLOCK_TICK) -> None:
        self.tick = tick
        self.now: list[float] = [time.time()]
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def start(self) -> list[float]:
        """The clock (its thread started if it was not): the list the bridge reads."""
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    self.now[0] = time.time()
                    thread = threading.Thread(target=self._run, name="jpki-sim clock",
                                              daemon=True)
                    thread.start()
                    self._thread = thread
        return self.now

    def _run(self) -> None:
        now, tick, clock, sleep = self.now, self.tick, time.time, time.sleep
        while True:
            now[0] = clock()
            sleep(tick)

    def _after_fork(self) -> None:
        self._guard = threading.Lock()
        if self._thread is not None:
            self._thread = None
            self.start()


#: the served cards' clock (one per process)
CLOCK = CoarseClock()

#: the hot path's handoff relies on the interpreter lock (iso7816.transport.HotPath);
#: a free-threaded build gets no hot path: the bridge then calls process()
HOT_PATH_SAFE = getattr(sys, "_is_gil_enabled", lambda: True)()


class CardLock:
    """The served card's lock: every change to the card, and every command off the
    bridge's hot path, holds it.

    Re-entrant, like ``threading.RLock``, and it also closes the card's hot path while
    held: taken the first time, it sets ``card.hot`` to None and waits for the command
    the bridge may be answering on the path (the path's gate); released the last time,
    it offers a new path (faults and listeners as they are then). So the bridge's
    commands take no lock (an uncontended lock's acquire and release cost, the caches
    being cold after every round trip through pcscd, more than the whole rest of the
    wrapper) and never meet a change half made. Never taken inside the engine's
    ``process`` (nothing there calls back into the served card).
    """

    def __init__(self, close: Callable[[], None], offer: Callable[[], None]) -> None:
        #: called when taken the first time (the path closed, the APDU in flight
        #: answered) and when released the last time (a new path offered)
        self._close, self._offer = close, offer
        self._lock = threading.RLock()
        self._depth = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._depth += 1
        if self._depth == 1:
            self._close()
        return True

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._offer()
        finally:
            self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
