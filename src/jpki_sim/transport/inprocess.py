"""The in-process transport: an engine :class:`~jpki_sim.card.engine.Card` as a Transport."""

from __future__ import annotations

from typing import Any

from jpki_sim.card.engine import Card
from jpki_sim.card.store import CardStore


class InProcessTransport:
    """Talks to an emulated card in this process. Powers it on at creation."""

    def __init__(self, card: Card, name: str = "in-process card") -> None:
        self.card = card
        self.name = name
        card.power_on()

    def transmit(self, apdu: bytes) -> bytes:
        return self.card.process(apdu)

    def atr(self) -> bytes:
        return self.card.atr

    def reset(self) -> bytes:
        return self.card.reset()

    def power_off(self) -> None:
        self.card.power_off()

    def power_on(self) -> bytes:
        return self.card.power_on()

    def replace_card(self, card: Card) -> bytes:
        """Put another card in (e.g. rebuilt from a changed state), powered on; its ATR."""
        self.card.power_off()
        self.card = card
        return card.power_on()

    def close(self) -> None:
        self.card.power_off()


def open_card_file(path: str) -> tuple[InProcessTransport, CardStore[Any]]:
    """Load a card file (of any profile) and put the card behind an in-process transport."""
    from jpki_sim.profiles import registry

    store = registry.open_store(path)
    card = registry.profile_of(store).build(store)
    return InProcessTransport(card, name=str(path)), store
