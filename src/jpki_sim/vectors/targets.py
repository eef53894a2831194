"""The card a vector plays against: in-process, served through pcscd + vpcd, or in a reader.

Emulated targets (:class:`InProcessTarget`, :class:`ServedTarget`) give every
vector a fresh card of the profile it names, can preset PIN counters and play
the issuer's admin steps. :class:`ReaderTarget` plays against whatever card is
in a PC/SC reader (a real one too): it runs only vectors whose profile fits
that card and never presets anything.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from jpki_sim.errors import JpkiSimError
from jpki_sim.vectors.model import Admin, Vector

if TYPE_CHECKING:
    from jpki_sim.card.pins import RetryCounter
    from jpki_sim.card.store import CardStore


def pcsc_limit(vector: Vector) -> str | None:
    """Why PC/SC cannot carry this vector, or None.

    vpcd frames a 1-byte message as a control code (power, reset, ATR), so a
    1-byte command APDU would be taken for one and its answer never comes.
    """
    from jpki_sim.vectors.model import Xfer

    for step in vector.steps:
        if isinstance(step, Xfer) and len(step.command) == 2:
            return "a 1-byte command cannot cross PC/SC + vpcd (vpcd reads it as a control code)"
    return None


class TargetError(JpkiSimError):
    """The target could not do what a step asks (not a card answer: a harness problem)."""


def wrong_pin(pin: str) -> str:
    """A PIN of the same form that is surely not ``pin``: each digit +1, each letter +1."""
    out = []
    for ch in pin:
        if ch.isdigit():
            out.append(str((int(ch) + 1) % 10))
        elif "A" <= ch <= "Z":
            out.append(chr((ord(ch) - 65 + 1) % 26 + 65))
        else:
            out.append("0")
    return "".join(out)


class Target:
    """What the runner needs from a card under test."""

    name = "card"
    kind = "card"
    #: can preset PIN counters and play admin steps
    emulated = False

    def skip_reason(self, vector: Vector, destructive: bool) -> str | None:
        return None

    def start(self, vector: Vector) -> Any:
        """A card in the vector's starting state: powered, nothing selected; its facts."""
        raise NotImplementedError

    def play_date(self, vector: Vector) -> date:
        return vector.date or presets_of(vector.card_profile).reference_date(vector.profile)

    def pin(self, name: str) -> str | None:
        """The value of PIN ``name`` on the card, for ``{pin:NAME}`` templates."""
        return None

    def transmit(self, apdu: bytes) -> bytes:
        raise NotImplementedError

    def power_off(self) -> None:
        raise NotImplementedError

    def power_on(self) -> bytes:
        raise NotImplementedError

    def reset(self) -> bytes:
        raise NotImplementedError

    def admin(self, step: Admin) -> None:
        raise TargetError("admin steps need an emulated card")

    def finish(self) -> None:
        """After each vector."""

    def close(self) -> None:
        pass


def presets_of(card_profile: str, given: Any = None) -> Any:
    """The presets of a card profile (its ``presets`` hook), or ``given`` for jpki."""
    from jpki_sim.profiles import registry

    if given is not None and card_profile == registry.DEFAULT:
        return given
    return registry.get(card_profile).hook("presets")()


def facts_of(card_profile: str, state: Any) -> Any:
    """What the profile's vector checks need of a card state (None: nothing)."""
    from jpki_sim.profiles import registry

    profile = registry.get(card_profile)
    if not profile.has_hook("vector_checks"):
        return None
    card_facts = getattr(profile.hook("vector_checks"), "card_facts", None)
    return card_facts(state) if card_facts is not None else None


def counter_of(store: CardStore[Any], pin: str) -> RetryCounter:
    """PIN ``pin``'s counter on a card state: the one retry-counter rule."""
    from jpki_sim.card.pins import RetryCounter

    return RetryCounter(lambda: store.state.pins[pin], store, name=pin)


# ---------------------------------------------------------------- emulated cards


class EmulatedTarget(Target):
    """Fresh cards of the named presets, from their card profile's presets.

    ``factory`` stands in for the JPKI card's presets (e.g. a factory with a
    test CA of its own); other profiles' come from their ``presets`` hook.
    """

    emulated = True

    def __init__(self, factory: Any = None) -> None:
        self.factory = factory
        self.store: CardStore[Any] | None = None
        self.card: Any = None
        self._mutate: Any = None
        self._pins: dict[str, str | None] = {}
        self._presets: Any = None

    def set_mutation(self, wrap: Any) -> None:
        """Wrap every fresh card with ``wrap(card) -> card`` (test doubles of a faulty card)."""
        self._mutate = wrap

    def new_card(self, vector: Vector) -> Any:
        from jpki_sim.card.store import CardStore
        from jpki_sim.profiles import registry

        profile = registry.get(vector.card_profile)
        self._presets = presets_of(vector.card_profile, self.factory)
        state = self._presets.state(vector.profile)
        store: CardStore[Any] = CardStore(profile.state, state)
        for pin, tries in vector.tries.items():
            counter_of(store, pin).set_tries(tries)
        self.store = store
        # {pin:NAME} means the PIN the holder knows when the vector starts,
        # even after a step changed it
        self._pins = {name: pin.value for name, pin in state.pins.items()}
        card = profile.build(store)
        if self._mutate is not None:
            card = self._mutate(card)
        card.power_on()
        self.card = card
        return facts_of(vector.card_profile, state)

    def pin(self, name: str) -> str | None:
        value = self._pins.get(name)
        # a PIN never set: the preset's value is as good as any
        return value if value is not None else self._presets.pin_value(name)

    def admin(self, step: Admin) -> None:
        assert self.store is not None
        counter = counter_of(self.store, step.pin)
        if step.action == "reset-pin":
            # what `jpki-sim card reset-pin` does: a new value, a full counter; without
            # a value the one the card had (JPKI's 照合番号 keep theirs), else the profile's
            value = step.value if step.value is not None else self._pins.get(step.pin)
            counter.reset(value if value is not None else self._presets.pin_value(step.pin))
        elif step.action == "set-tries":
            assert step.tries is not None
            counter.set_tries(step.tries)


class InProcessTarget(EmulatedTarget):
    """A fresh in-process card per vector."""

    name = "in-process card"
    kind = "in-process"

    def start(self, vector: Vector) -> Any:
        return self.new_card(vector)

    def transmit(self, apdu: bytes) -> bytes:
        response: bytes = self.card.process(apdu)
        return response

    def power_off(self) -> None:
        self.card.power_off()

    def power_on(self) -> bytes:
        atr: bytes = self.card.power_on()
        return atr

    def reset(self) -> bytes:
        atr: bytes = self.card.reset()
        return atr


class ServedTarget(EmulatedTarget):
    """Fresh cards served on a vpcd reader slot, played through pcscd with pyscard.

    ``bridge`` is a running :class:`jpki_sim.vpcd.VpcdBridge` whose card this
    target swaps for each vector; ``reader`` its PC/SC name.
    """

    kind = "pcsc"

    def __init__(self, bridge: Any, reader: str, factory: Any = None) -> None:
        super().__init__(factory)
        self.bridge = bridge
        self.reader = reader
        self.name = reader
        self.transport: Any = None
        self._off = False

    def skip_reason(self, vector: Vector, destructive: bool) -> str | None:
        return pcsc_limit(vector)

    def start(self, vector: Vector) -> Any:
        from jpki_sim.transport.pcsc import PcscTransport

        facts = self.new_card(vector)
        self.bridge.replace_card(self.card)  # between two commands: vpcd never sees the swap
        if self.transport is None:
            self.transport = PcscTransport(self.reader, protocol="T1")
        self._off = False
        return facts

    def transmit(self, apdu: bytes) -> bytes:
        response: bytes = self.transport.transmit(apdu)
        return response

    def power_off(self) -> None:
        # PC/SC cannot leave a card unpowered while connected: the power-off
        # and the power-on that must follow are one SCardReconnect(UNPOWER)
        self._off = True

    def power_on(self) -> bytes:
        self._off = False
        atr: bytes = self.transport.power_cycle()
        return atr

    def reset(self) -> bytes:
        atr: bytes = self.transport.reset()
        return atr

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


# ---------------------------------------------------------------- any card in a reader


class ReaderTarget(Target):
    """Whatever card sits in a PC/SC reader; every vector starts with a warm reset.

    ``pins`` are the card's PIN values the user gave (``--pin auth=1234``):
    vectors that VERIFY a PIN not given are skipped, so no try is ever spent
    by guessing.
    """

    kind = "reader"

    def __init__(self, reader: str, pins: dict[str, str] | None = None,
                 today: date | None = None, card_profile: str = "jpki") -> None:
        from jpki_sim.issuer import lifecycle
        from jpki_sim.profiles import registry
        from jpki_sim.transport.pcsc import PcscTransport

        self.transport = PcscTransport(reader)
        self.name = self.transport.name
        self.pins = dict(pins or {})
        self.card_profile = card_profile
        self.today = today or lifecycle.SystemClock().today()
        profile = registry.get(card_profile)
        #: the profile's vector module, when it can tell its presets apart from outside
        self._prober: Any = None
        if profile.has_hook("vector_checks"):
            module = profile.hook("vector_checks")
            if hasattr(module, "probe_reader"):
                self._prober = module
        self.facts: Any = None
        self.fingerprint: Any = None
        if self._prober is not None:
            self.facts, self.fingerprint = self._prober.probe_reader(
                self.transport, self.pins, self.today)
        self._profile_prints: dict[tuple[str, date], Any] = {}

    def play_date(self, vector: Vector) -> date:
        return self.today

    def skip_reason(self, vector: Vector, destructive: bool) -> str | None:
        limit = pcsc_limit(vector)
        if limit is not None:
            return limit
        if vector.date is not None:
            return f"plays its profile's card as of {vector.date}; a card in a reader lives today"
        if vector.needs_setup:
            return "needs an emulated card (preset PIN counters, admin steps or its own data)"
        if vector.destructive and not destructive:
            return "changes the card irreversibly (run with --destructive)"
        if vector.card_profile != self.card_profile:
            return f"a {vector.card_profile} card's vector; this reader holds a {self.card_profile}"
        missing = sorted({name for _kind, name in vector.pins_used if name not in self.pins})
        if missing:
            return "needs the card's PIN: " + ", ".join(f"--pin {m}=..." for m in missing)
        if self._prober is None:
            return None
        key = (vector.profile, self.play_date(vector))
        want = self._profile_prints.get(key)
        if want is None:
            state = presets_of(vector.card_profile).state(vector.profile)
            want = self._prober.preset_fingerprint(state, key[1])
            self._profile_prints[key] = want
        if want != self.fingerprint:
            return (f"profile {vector.profile} does not fit this card "
                    f"(want {want.describe()}; card: {self.fingerprint.describe()})")
        return None

    def start(self, vector: Vector) -> Any:
        self.transport.reset()
        return self.facts

    def pin(self, name: str) -> str | None:
        return self.pins.get(name)

    def transmit(self, apdu: bytes) -> bytes:
        response: bytes = self.transport.transmit(apdu)
        return response

    def power_off(self) -> None:
        pass

    def power_on(self) -> bytes:
        atr: bytes = self.transport.power_cycle()
        return atr

    def reset(self) -> bytes:
        atr: bytes = self.transport.reset()
        return atr

    def close(self) -> None:
        self.transport.close()


# ---------------------------------------------------------------- serving through vpcd


class ServedSession:
    """A vpcd slot with a bridge of our own, for ``vectors run --pcsc`` (and ``replay --serve``).

    Takes the machine-wide PC/SC lock (unless ``JPKI_SIM_PCSC_LOCK_HELD`` is set),
    starts pcscd when none runs (root only; stopped again on close), attaches a
    card to vpcd on ``port`` (None: the first vpcd slot without a card), waits
    until pcscd shows it, and on :meth:`close` detaches it again.
    """

    def __init__(self, card: Any, port: int | None = None, timeout: float = 10.0,
                 label: str = "vectors") -> None:
        from jpki_sim.transport import pcscd
        from jpki_sim.transport.pcsc import PcscError, wait_for_card
        from jpki_sim.transport.vpcd import VpcdBridge

        if pcscd.vpcd_driver() is None:
            raise PcscError("the vpcd driver is not installed (apt-get install vsmartcard-vpcd)")
        self._lock = self._take_lock(timeout * 6)
        self.started: pcscd.Pcscd | None = None
        try:
            # checked under the lock: another run may have stopped its own pcscd
            if not pcscd.is_running():
                if pcscd.find_binary() is None or not pcscd.is_root():
                    raise PcscError("pcscd is not running: start it with `sudo pcscd -f &` "
                                    "(`jpki-sim doctor` checks the setup)")
                self.started = pcscd.Pcscd().start()
            readers = pcscd.wait_for_readers(timeout=timeout)
            self.port = port if port is not None else self._free_port(readers)
            reader = pcscd.pcsc_reader_name(self.port, readers)
            if reader is None:
                raise PcscError(f"no vpcd reader listens on port {self.port} (readers: "
                                f"{', '.join(readers) or 'none'})")
            self.reader = reader
            if not wait_for_card(reader, present=False, timeout=timeout):
                raise PcscError(f"{reader} already holds a card: another program serves it")
            self.bridge = VpcdBridge(card, port=self.port, label=label)
            self.bridge.start()
            if not (self.bridge.attached.wait(timeout) and wait_for_card(reader, True, timeout)):
                self.bridge.stop()
                raise PcscError(f"the card did not appear in {reader!r} within {timeout:.0f} s")
        except BaseException:
            self._release()
            raise

    @staticmethod
    def _free_port(readers: list[str]) -> int:
        """The first vpcd slot whose reader holds no card (slot 0 when all are taken)."""
        from jpki_sim.transport import pcscd
        from jpki_sim.transport.pcsc import reader_status
        from jpki_sim.transport.vpcd import DEFAULT_PORT

        present = {name: has_card for name, has_card, _atr in reader_status()}
        for conf in pcscd.vpcd_readers():
            for port in conf.ports:
                name = pcscd.pcsc_reader_name(port, readers)
                if name is not None and not present.get(name, True):
                    return port
        return DEFAULT_PORT

    @staticmethod
    def _take_lock(timeout: float) -> Any:
        from jpki_sim.transport import pcscd
        from jpki_sim.transport.pcsc import PcscError

        try:
            return pcscd.take_reader_lock(timeout)
        except pcscd.ReadersBusy as exc:
            raise PcscError(f"vpcd readers busy: {exc}") from None

    def _release(self) -> None:
        if self.started is not None:
            self.started.stop()
            self.started = None
        if self._lock is not None:
            self._lock.close()  # releases the reader lock
            self._lock = None

    def close(self) -> None:
        from jpki_sim.transport.pcsc import wait_for_card

        try:
            self.bridge.stop()
            wait_for_card(self.reader, present=False, timeout=5.0)
        finally:
            self._release()
