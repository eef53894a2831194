"""The card the shell talks to: an emulated card (a card file) or a PC/SC reader.

Emulated cards also offer the admin side: power, a card clock, PIN counter
operations and certificate renewal, which act on the card state as the
municipal counter terminal would. A reader only offers what a reader can do
(transmit and reset).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from jpki_sim.errors import UserError


class AdminUnavailable(UserError):
    """An admin verb on a card the shell cannot administer (a reader)."""


class CardTarget:
    """One card: a transport, a display name, and (when emulated) its state."""

    def __init__(self, transport: Any, name: str, store: Any = None) -> None:
        self.transport = transport
        self.name = name
        self.store = store
        self.powered = True
        #: the card clock: None follows the machine's clock (Japan time)
        self.clock_date: date | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    def emulated(cls, store: Any, name: str | None = None) -> CardTarget:
        from jpki_sim.profiles.jpki.build import build_card
        from jpki_sim.transport.inprocess import InProcessTransport

        label = name or (store.path.name if store.path is not None else "in-memory card")
        full = str(store.path) if store.path is not None else label
        return cls(InProcessTransport(build_card(store), name=full), label, store)

    @classmethod
    def open_file(cls, path: str) -> CardTarget:
        from jpki_sim.profiles.jpki.state import CardStore

        return cls.emulated(CardStore.open(path))

    @classmethod
    def open_default(cls) -> CardTarget:
        try:
            from jpki_sim.issuer.counter import open_default_card
        except ImportError:
            raise UserError("no default card available here: give --card FILE") from None
        return cls.emulated(open_default_card())

    @classmethod
    def open_reader(cls, reader: str) -> CardTarget:
        from jpki_sim.transport.pcsc import PcscTransport

        transport = PcscTransport(reader)
        return cls(transport, transport.name)

    # ------------------------------------------------------------ properties

    @property
    def is_emulated(self) -> bool:
        return self.store is not None

    @property
    def card(self) -> Any:
        """The engine card (emulated only)."""
        self._need_admin("this")
        return self.transport.card

    def _need_admin(self, verb: str) -> None:
        if not self.is_emulated:
            raise AdminUnavailable(f"'{verb}' works on emulated cards only, not on a reader")

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
        from jpki_sim.profiles.jpki.build import build_card

        self._need_admin("rebuild")
        card = build_card(self.store)
        self.transport.card = card
        atr: bytes = card.power_on()
        self.powered = True
        return atr

    # ------------------------------------------------------------ PIN counters

    def pin(self, which: str) -> Any:
        from jpki_sim.profiles.jpki import ids as jpki

        self._need_admin("PIN admin")
        aid, fid = jpki.PIN_EFS[which]
        return self.card.find_pin(aid, fid)

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # closing must not hide the real outcome of a session
            pass


def display_name(path: str | Path) -> str:
    return Path(path).name
