"""One card in a reader, under control: what the API, the plugin and serve act on.

A :class:`ServedCard` is the card the vpcd bridge talks to (it has the
:class:`~jpki_sim.iso7816.transport.EmulatedCard` methods). It wraps the
profile's engine card and adds, for the control service:

- **one lock** per card, held while the engine processes an APDU and while any
  change is made (PIN counters, a new card file, a renewal), so a change never
  lands between the two writes of a VERIFY; every write goes through the card
  store's ``transaction()`` and the PIN counters through
  :class:`~jpki_sim.card.pins.RetryCounter`, as APDUs do;
- **remove / insert**: the bridge leaves vpcd and comes back, so PC/SC
  clients see the real removal and insertion events;
- **faults** (:mod:`.faults`): delay, forced SW, mute, tear;
- **the live trace**: a ring buffer of recent APDUs and events, PINs masked
  when recorded (the profile's ``is_secret``), with listeners for the stream.

Without faults, an APDU costs two stores of a flag, a read of a list item and one
append on top of the engine: the vpcd bridge takes the card's hot path (``hot``: the
engine's ``process``, the path's gate, the queue's ``append``, the coarse clock) and
makes them itself, taking no lock and reading no clock (:mod:`.hotpath`: the card's
lock closes the path while it is held, after the APDU in flight, a Dekker-style
handoff). The trace records (:mod:`.livetrace`) are made later, in a batch
(:meth:`ServedCard.flush_trace`): before the trace is read or added to, and, while
someone listens to the stream, right after the answer has left; the queue keeps as
many unread exchanges as the trace keeps records. Other callers of
:meth:`ServedCard.process` get the same. The benchmark's ``control`` section
measures what it costs through pcscd (the served card against the same card bare,
in one run).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from jpki_sim.card.store import CardStore
from jpki_sim.control import faults as faults_mod
from jpki_sim.control.hotpath import CLOCK, HOT_PATH_SAFE, CardLock
from jpki_sim.control.livetrace import TRACE_KEEP, TraceBuffer
from jpki_sim.errors import CardFileError, UserError
from jpki_sim.iso7816.transport import Gate, HotPath
from jpki_sim.profiles import registry
from jpki_sim.profiles.base import ISO_SECRET_INSTRUCTIONS, Profile
from jpki_sim.trace.model import REDACTION_BYTE, SECRET_INS, SECRET_PROPRIETARY_INS
from jpki_sim.trace.redact import redact_command
from jpki_sim.transport.vpcd import DropConnection, VpcdBridge

log = logging.getLogger("jpki_sim.control")

#: how long remove/insert wait for the PC/SC reader to show the change
READER_WAIT = 5.0


class PowerLost(BaseException):
    """A torn card: power is gone in the middle of a command.

    A BaseException, so that the engine's ``except Exception`` (which answers
    6F00 to a bug) lets it through: nothing after the tear point runs, exactly
    as on a card whose power is cut.
    """


_wall = time.time


class ServedCard:
    """A card in a reader (or in-process), with the controls of :mod:`jpki_sim.control`."""

    def __init__(
        self,
        store: CardStore[Any],
        *,
        index: int = 0,
        label: str | None = None,
        profile: Profile | None = None,
        engine: Any = None,
        atr: bytes | None = None,
    ) -> None:
        self.index = index
        self.label = label or (str(store.path) if store.path else f"card {index}")
        #: the bridge sets it while it answers on the hot path (CardLock waits for it)
        self._gate: Gate = [False]
        #: True while any fault is set (the APDU path checks only this)
        self._faulty = False
        #: the bridge's way in (iso7816.transport.HotPath): the engine's own process,
        #: the gate, the trace queue's append and the coarse clock; None while faults
        #: are set or the lock is held. A new object whenever offered, so a bridge
        #: holding an old one notices
        self.hot: HotPath | None = None
        self.lock = CardLock(self._close_hot, self._offer_hot)
        self.trace = TraceBuffer()
        #: exchanges (command, answer, time) not yet made trace records (flush_trace);
        #: a deque, so the bridge's append and a reader's flush from another thread
        #: never lose one. As long as the trace keeps: older exchanges no one read are
        #: gone, as from the trace
        self._pending: deque[tuple[bytes, bytes, float]] = deque(maxlen=TRACE_KEEP)
        self._flushing = threading.Lock()
        self.trace.flush = self.flush_trace
        self.trace.on_listeners = self._listeners_changed
        self.faults = faults_mod.Faults()
        #: guards faults, removal and the waits of delayed and muted commands
        self._cond = threading.Condition()
        self._removed = False
        self._closed = False
        self.powered = False
        self.bridge: VpcdBridge | None = None
        #: the PC/SC name of the reader, once known
        self.reader: str | None = None
        self.atr_override = atr
        self.store: CardStore[Any] = store
        self.profile = profile or registry.profile_of(store)
        self._engine: Any = engine if engine is not None else self._build()
        self._renew_hot()
        if engine is not None:
            self.powered = bool(getattr(engine, "powered", False))

    # ------------------------------------------------------------ the card and its store

    @property
    def engine(self) -> Any:
        return self._engine

    @engine.setter
    def engine(self, engine: Any) -> None:
        with self.lock:  # the path closed first; its release offers one with this engine
            self._engine = engine

    def _renew_hot(self, wait: bool = True) -> None:
        """A new hot path for the bridge, as the engine, faults and listeners are now.

        The lock taken and released: that closes the path and offers a new one. With
        ``wait`` False, not when someone else holds the lock (its release offers one).
        """
        lock = self.lock
        if lock.acquire(wait):
            lock.release()

    def _listeners_changed(self, added: bool) -> None:
        # a listener that came must be told from the next APDU on: wait for the lock.
        # One that went may stay on the path a while (_record then tells nobody), so
        # the stream's end (in the service's event loop) never waits for a change
        self._renew_hot(wait=added)

    def _close_hot(self) -> None:
        """The lock was taken: the bridge's path closed, the APDU in flight answered."""
        self.hot = None
        gate = self._gate
        pause = 0.0
        while gate[0]:  # the bridge is answering on the path it took before: let it finish
            time.sleep(pause)
            pause = min(pause * 2 or 20e-6, 1e-3)

    def _offer_hot(self) -> None:
        """The lock is being released: a new hot path (a new object even for the same
        parts), or none while faults are set.

        Its recorder is the queue's own append (no Python call after each answer)
        unless someone listens to the live trace: then _record, which tells them.
        """
        if self._faulty or not HOT_PATH_SAFE:
            self.hot = None
            return
        record = self._record if self.trace.listeners else self._pending.append
        self.hot = (self._engine.process, self._gate, record, CLOCK.start())

    def _build(self) -> Any:
        #: the store's loads the engine was built from (see _refresh)
        self._built_loads = self.store.loads
        if self.atr_override is None:
            return self.profile.build(self.store)
        try:
            return self.profile.build(self.store, atr=self.atr_override)
        except TypeError:
            raise UserError(f"the {self.profile.name} card cannot take another ATR") from None

    def rebuild(self) -> None:
        """Build the engine card again from the store (after the issuer changed the card)."""
        with self.lock:
            self.engine = self._build()
            if not self.powered:
                self.engine.power_off()

    def use_store(self, store: CardStore[Any], profile: Profile | None = None,
                  atr: bytes | None = None) -> None:
        """Serve another card file (already opened) from now on."""
        with self.lock:
            new_profile = profile or registry.profile_of(store)
            old = (self.store, self.profile, self.atr_override)
            self.store, self.profile, self.atr_override = store, new_profile, atr
            try:
                engine = self._build()
            except BaseException:
                self.store, self.profile, self.atr_override = old
                raise
            self.engine = engine
            self.label = str(store.path) if store.path else self.label
            if not self.powered:
                self.engine.power_off()

    @property
    def path(self) -> Path | None:
        return self.store.path

    def _refresh(self) -> None:
        """At power-on: the card as the card file has it (``jpki-sim card ...`` meanwhile).

        The store reloads the file whenever another process changed it, also
        inside any PIN transaction under the file's lock, so counters are always
        the file's. The engine's files (certificates, keys, helper data) were
        built from the state: after a reload since the engine was built, it is
        rebuilt. Within a session the card keeps the files it was powered on with.
        """
        store = self.store
        try:
            store.refresh()
        except CardFileError as exc:
            log.error("%s: changed on disk but cannot be read (%s); keeping the old state",
                      self.label, exc)
            return
        if store.loads == self._built_loads:
            return
        log.info("%s: card file changed on disk; card rebuilt from it", self.label)
        self.engine = self._build()

    # ------------------------------------------------------------ EmulatedCard (the bridge)

    @property
    def atr(self) -> bytes:
        atr: bytes = self.engine.atr
        return atr

    def power_on(self) -> bytes:
        with self.lock:
            self._refresh()
            atr: bytes = self.engine.power_on()
            self.powered = True
        self.trace.add("power", None, None, note="power on")
        return atr

    def power_off(self) -> None:
        with self.lock:
            self.engine.power_off()
            was, self.powered = self.powered, False
        if was:
            self.trace.add("power", None, None, note="power off")

    def reset(self) -> bytes:
        with self.lock:
            atr: bytes = self.engine.reset()
            self.powered = True
        self.trace.add("power", None, None, note="warm reset")
        return atr

    def process(self, raw: bytes) -> bytes:
        # An APDU that does not come by the bridge's hot path (in-process callers, a
        # bridge without one): under the card's lock (which closes the hot path
        # meanwhile), recorded as the hot path records. The trace records are made from
        # the appended exchanges in batches (flush_trace): before anything reads the
        # trace or adds to it, and after each answer has left while someone listens
        # (settle).
        if self._faulty:
            return self._process_with_faults(raw)
        with self.lock:
            t0 = _wall()
            resp: bytes = self._engine.process(raw)
        self._pending.append((raw, resp, t0))
        return resp

    def _record(self, exchange: tuple[bytes, bytes, float]) -> None:
        """The bridge's hot path while someone listens: an exchange answered (its answer
        has left), told to the listeners at once."""
        self._pending.append(exchange)
        self.flush_trace()

    def settle(self) -> None:
        """After an answer has left (the bridge calls it): tell the trace's listeners now."""
        if self.trace.listeners and self._pending:
            self.flush_trace()

    def flush_trace(self) -> None:
        """Make the trace records of the exchanges not recorded yet, in order."""
        pending = self._pending
        if not pending:
            return
        trace = self.trace
        secret = self._secret_ins
        with self._flushing:  # one at a time: the records' numbers follow the exchanges
            while pending:
                raw, resp, t = pending.popleft()
                rec = (next(trace.seq), t, "apdu",
                       self._shown(raw) if len(raw) > 5 and raw[1] in secret else raw,
                       resp, None, "")
                trace.records.append(rec)
                if trace.listeners:
                    trace.tell(rec)

    @property
    def profile(self) -> Profile:
        return self._profile

    @profile.setter
    def profile(self, profile: Profile) -> None:
        self._profile = profile
        #: INS bytes whose data may be secret under some class: the trace's rule (any
        #: class, even and odd PIN instructions) and every profile's own (a quick
        #: filter; _shown decides)
        self._secret_ins = frozenset(
            SECRET_INS | SECRET_PROPRIETARY_INS
            | {key & 0xFF for key in ISO_SECRET_INSTRUCTIONS | profile.secret_instructions
               | registry.secret_instructions()})

    def _shown(self, raw: bytes) -> bytes:
        """The command as the trace keeps it: secrets masked (the rule of every trace,
        redact_command's, and this card's profile's own secret instructions)."""
        if len(raw) <= 5:
            return raw
        masked, done = redact_command(raw)
        if done:
            return masked
        if self.profile.is_secret(raw):  # a profile's own: everything after the header
            return raw[:5] + bytes([REDACTION_BYTE]) * (len(raw) - 5)
        return raw

    def _process_with_faults(self, raw: bytes) -> bytes:
        ins = raw[1] if len(raw) > 1 else -1
        notes: list[str] = []
        with self._cond:
            f = self.faults
            if f.mute:
                notes.append("held by mute")
                while f.mute and not (self._removed or self._closed):
                    self._cond.wait()
                self._drop_if_removed(raw, "removed while mute")
            delay = f.delay_for(ins)
            if delay:
                end = time.monotonic() + delay
                while not (self._removed or self._closed):
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._drop_if_removed(raw, "removed during the delay")
                notes.append(f"delayed {round(delay * 1000)} ms")
            forced = f.take_sw(ins)
            tear = forced is None and f.take_tear(ins)
            self._faulty = not f.empty
            if not self._faulty:
                self._renew_hot()
        if forced is not None:
            self.trace.add("apdu", self._shown(raw), forced, 0.0,
                           "; ".join([*notes, "forced SW (the card never saw it)"]))
            return forced
        if tear:
            with self.lock:
                # the store's commit hook, set only for this command (every other commit
                # then pays no call): power goes right after the first write
                store = self.store
                previous = store.on_commit

                def power_lost() -> None:
                    if previous is not None:
                        previous()
                    raise PowerLost

                store.on_commit = power_lost
                try:
                    self.engine.process(raw)
                except PowerLost:
                    pass
                finally:
                    store.on_commit = previous
                self.engine.power_off()
                self.powered = False
            self.trace.add("apdu", self._shown(raw), None, 0.0,
                           "; ".join([*notes, "torn: power lost after the card's first write, "
                                      "connection dropped before the answer"]))
            raise DropConnection
        perf = time.perf_counter
        with self.lock:
            t0 = perf()
            resp: bytes = self.engine.process(raw)
            seconds = perf() - t0
        self.trace.add("apdu", self._shown(raw), resp, seconds, "; ".join(notes))
        return resp

    def _drop_if_removed(self, raw: bytes, why: str) -> None:
        if self._removed or self._closed:
            self.trace.add("apdu", self._shown(raw), None, 0.0, f"no answer: {why}")
            raise DropConnection

    # ------------------------------------------------------------ faults

    def set_faults(self, changes: dict[str, Any]) -> None:
        """Set (or, with None/False, clear) faults: the checked result of :func:`.faults.parse`."""
        with self._cond:
            for kind, value in changes.items():
                setattr(self.faults, kind, value)
                self.faults.hits.pop(kind, None)
            self._faulty = not self.faults.empty
            self._renew_hot()
            self._cond.notify_all()
        shown = {k: (v.to_json() if hasattr(v, "to_json") else v) for k, v in changes.items()}
        self.trace.add("control", None, None, note=f"faults set: {shown}")

    def clear_faults(self, kind: str | None = None) -> None:
        with self._cond:
            self.faults.clear(kind)
            self._faulty = not self.faults.empty
            self._renew_hot()
            self._cond.notify_all()
        self.trace.add("control", None, None, note=f"faults cleared: {kind or 'all'}")

    # ------------------------------------------------------------ the reader

    def attach(self, bridge: VpcdBridge, reader: str | None = None) -> None:
        self.bridge = bridge
        if reader is not None:
            self.reader = reader

    @property
    def present(self) -> bool:
        """In the reader (not removed through the controls)."""
        return not self._removed

    @property
    def attached(self) -> bool:
        """vpcd has polled the card on the current connection (pcscd sees it)."""
        return self.bridge is not None and self.bridge.attached.is_set()

    def remove(self, wait: bool = True) -> bool | None:
        """Pull the card out of the reader; whether pcscd shows it absent (None: unknown)."""
        with self._cond:
            self._removed = True
            self._cond.notify_all()  # a held (mute, delayed) command is dropped
        if self.bridge is not None:
            self.bridge.remove()
        self.trace.add("control", None, None, note="card removed")
        return self._wait_reader(False) if wait else None

    def insert(self, wait: bool = True) -> bool | None:
        """Put the card back. Returns whether pcscd shows it present (None: unknown)."""
        with self._cond:
            self._removed = False
        if self.bridge is not None:
            self.bridge.insert()
        self.trace.add("control", None, None, note="card inserted")
        if not wait:
            return None
        if self.bridge is not None:
            self.bridge.attached.wait(READER_WAIT)
        return self._wait_reader(True)

    def _wait_reader(self, present: bool) -> bool | None:
        if self.reader is None:
            return None
        try:
            from jpki_sim.transport.pcsc import PcscError, wait_for_card

            return wait_for_card(self.reader, present=present, timeout=READER_WAIT)
        except (ImportError, PcscError):
            return None

    def power_cycle(self) -> None:
        """Cut the card's power and restore it: verified PINs and the current file are gone.

        The reader is not told (vpcd carries no reset from the card's end): the
        next command finds a card fresh from reset. Remove and insert for events.
        """
        with self.lock:
            self.engine.power_off()
            self.engine.power_on()
            self.powered = True
        self.trace.add("control", None, None, note="power cycled")

    def close(self) -> None:
        """Release commands held by faults (serve is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------ PINs

    def pin_counter(self, name: str) -> Any:
        """PIN ``name``'s :class:`~jpki_sim.card.pins.RetryCounter` on the engine card."""
        ref = self.profile.pin(name)
        return self.engine.find_pin(self.profile.applications[ref.application], ref.fid)

    def _set_pin(self, name: str) -> Any:
        counter = self.pin_counter(name)
        if not counter.is_set:
            raise UserError(f"the card's {name} PIN is not set (its certificate is absent)")
        return counter

    def set_tries(self, name: str, tries: int) -> None:
        with self.lock:
            counter = self._set_pin(name)
            if isinstance(tries, bool) or not isinstance(tries, int) \
                    or not 0 <= tries <= counter.max_tries:
                raise UserError(f"tries for the {name} PIN: 0 to {counter.max_tries}, "
                                f"not {tries!r}")
            counter.set_tries(tries)
        self.trace.add("control", None, None, note=f"{name} PIN: {tries} tries left")

    def block(self, name: str) -> None:
        with self.lock:
            self._set_pin(name).block()
        self.trace.add("control", None, None, note=f"{name} PIN blocked")

    def unblock(self, name: str) -> None:
        with self.lock:
            self._set_pin(name).unblock()
        self.trace.add("control", None, None, note=f"{name} PIN unblocked")

    def change_pin(self, name: str, new: str) -> None:
        ref = self.profile.pin(name)
        if not isinstance(new, str):
            raise UserError(f"the new {name} PIN must be a string")
        try:
            ref.policy.check(new)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        with self.lock:
            self._set_pin(name).change(new)
        self.trace.add("control", None, None, note=f"{name} PIN changed")

    def pins_json(self) -> dict[str, Any]:
        out = {}
        with self.lock:
            for name in self.profile.pins:
                c = self.pin_counter(name)
                out[name] = {
                    "set": c.is_set,
                    "tries_left": c.tries_left if c.is_set else None,
                    "max_tries": c.max_tries,
                    "blocked": c.blocked,
                }
        return out

    # ------------------------------------------------------------ state

    def state_json(self) -> dict[str, Any]:
        """What the API's card state holds of the reader and the card (lifecycle adds the rest)."""
        bridge = self.bridge
        return {
            "index": self.index,
            "label": self.label,
            "profile": self.profile.name,
            "file": str(self.store.path) if self.store.path else None,
            "reader": self.reader,
            "vpcd": bridge.address if bridge is not None else None,
            "present": self.present,
            "attached": self.attached,
            "powered": self.powered,
            "atr": self.atr.hex().upper(),
            "apdus": bridge.apdu_count if bridge is not None else None,
            "pins": self.pins_json(),
            "faults": self.faults.to_json(),
        }
