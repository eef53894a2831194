"""The JPKI profile's ``provision`` hook: a new card for the default holder."""

from __future__ import annotations

from typing import Any

from jpki_sim.issuer.counter import default_identity, issue_card
from jpki_sim.profiles.jpki.state import CardState


def provision(*, clock: Any = None, keys: Any = None, **options: Any) -> CardState:
    """A card for the seeds' holder (番号　花子) from the default test CA, issued today."""
    return issue_card(default_identity(), clock=clock, keys=keys, **options)
