"""The card the shell talks to: an emulated card (a card file) or a PC/SC reader.

Emulated cards also offer the admin side: power, a card clock, PIN counter
operations and certificate renewal, which act on the card state as the
issuer's counter terminal would. A reader only offers what a reader can do
(transmit and reset). Either way the card's profile gives the names.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from jpki_sim.card.pins import RetryCounter
from jpki_sim.card.store import CardStore
from jpki_sim.errors import UserError
from jpki_sim.profiles import registry
from jpki_sim.profiles.base import Profile


class AdminUnavailable(UserError):
    """An admin verb on a card the shell cannot administer (a reader)."""


class CardTarget:
    """One card: a transport, a display name, its profile, and (when emulated) its state."""

    def __init__(
        self,
        transport: Any,
        name: str,
        store: CardStore[Any] | None = None,
        profile: Profile | None = None,
    ) -> None:
        self.transport = transport
        self.name = name
        self.store = store
        self.profile = profile or (
            registry.profile_of(store) if store is not None else registry.get()
        )
        self.powered = True
        #: the card clock: None follows the machine's clock (Japan time)
        self.clock_date: date | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    def emulated(cls, store: CardStore[Any], name: str | None = None) -> CardTarget:
        from jpki_sim.transport.inprocess import InProcessTransport

        profile = registry.profile_of(store)
        label = name or (store.path.name if store.path is not None else "in-memory card")
        full = str(store.path) if store.path is not None else label
        return cls(InProcessTransport(profile.build(store), name=full), label, store, profile)

    @classmethod
    def open_file(cls, path: str) -> CardTarget:
        return cls.emulated(registry.open_store(path))

    @classmethod
    def open_reader(cls, reader: str, profile: str | None = None) -> CardTarget:
        from jpki_sim.transport.pcsc import PcscTransport

        transport = PcscTransport(reader)
        return cls(transport, transport.name, profile=registry.get(profile))

    # ------------------------------------------------------------ properties

    @property
    def is_emulated(self) -> bool:
        return self.store is not None

    def _need_admin(self, verb: str) -> CardStore[Any]:
        if self.store is None:
            raise AdminUnavailable(f"'{verb}' works on emulated cards only, not on a reader")
        return self.store

    def today(self) -> date:
        if self.clock_date is not None:
            return self.clock_date
        from jpki_sim.issuer.lifecycle import SystemClock

        now: datetime = SystemClock().now()
        return now.date()

    def now(self) -> datetime:
        """The card clock as an aware datetime (noon Japan time on a set date)."""
        from jpki_sim.issuer.lifecycle import SystemClock, clock_at

        clock = clock_at(self.clock_date) if self.clock_date is not None else SystemClock()
        result: datetime = clock.now()
        return result

    # ------------------------------------------------------------ power

    def power_off(self) -> None:
        self._need_admin("power off")
        self.transport.power_off()
        self.powered = False

    def power_on(self) -> bytes:
        self._need_admin("power on")
        atr: bytes = self.transport.power_on()
        self.powered = True
        return atr

    def rebuild(self) -> bytes:
        """Rebuild the emulated card from its (changed) state and power it on."""
        store = self._need_admin("rebuild")
        atr: bytes = self.transport.replace_card(self.profile.build(store))
        self.powered = True
        return atr

    # ------------------------------------------------------------ PIN counters

    def pin(self, which: str) -> RetryCounter:
        """PIN ``which``'s counter on the card state (the chip reads the same state)."""
        store = self._need_admin("PIN admin")
        self.profile.pin(which)
        return RetryCounter(lambda: store.state.pins[which], store, name=which)

    def reset_pin(self, which: str, new: str | None) -> None:
        """The counter's reset: tries back to the maximum, optionally a new value.

        A profile with issuer rules for it (e.g. JPKI: no PIN without its
        certificate) names them as its ``reset_pin`` hook.
        """
        store = self._need_admin("PIN admin")
        if new is not None and self.profile.has_hook("reset_pin"):
            self.profile.hook("reset_pin")(store, which, new)
            return
        self.pin(which).reset(new)

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # closing must not hide the real outcome of a session
            pass
