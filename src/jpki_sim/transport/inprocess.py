"""The in-process transport: a :class:`~jpki_sim.engine.Card` behind the Transport interface."""

from __future__ import annotations

from jpki_sim.card.engine import Card
from jpki_sim.profiles.jpki.state import CardStore


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

    def close(self) -> None:
        self.card.power_off()


def open_card_file(path: str) -> tuple[InProcessTransport, CardStore]:
    """Load a card file and put the card behind an in-process transport."""
    from jpki_sim.profiles.jpki.build import build_card

    store = CardStore.open(path)
    return InProcessTransport(build_card(store), name=str(path)), store
