"""What several commands share: the card profile, and which card file to act on."""

from __future__ import annotations

import argparse
from typing import Any

from jpki_sim.errors import UserError


def add_profile_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", metavar="NAME",
        help="the kind of card (default: the one a card file names, else jpki; "
             "`jpki-sim profiles` lists them)",
    )


def open_card(card: str | None, wanted: str | None) -> tuple[Any, Any]:
    """(profile, store) of the card file ``card``, or of profile ``wanted``'s default card."""
    from jpki_sim.profiles import registry

    if card:
        store = registry.open_store(card)
        if wanted and wanted != store.profile:
            raise UserError(f"{card} is a {store.profile!r} card, not {wanted!r}")
        return registry.profile_of(store), store
    from jpki_sim.issuer.default import open_default_card

    store = open_default_card(profile=wanted)
    return registry.profile_of(store), store
