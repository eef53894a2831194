"""The user's default card of each profile, issued on first use.

``jpki-sim serve``, ``apdu``, ``shell`` and ``card`` commands act on it when no
card file is named. The JPKI default card lives at ``card.json`` in the user
data folder; another profile's at ``card-NAME.json``. A new one is made by the
profile's ``provision`` hook (JPKI: issued by the default test CA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jpki_sim.card.store import CardStore
from jpki_sim.issuer.lifecycle import Clock
from jpki_sim.profiles import registry


def data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("jpki-sim"))


def default_card_path(profile: str | None = None) -> Path:
    name = profile or registry.DEFAULT
    return data_dir() / ("card.json" if name == registry.DEFAULT else f"card-{name}.json")


def open_default_card(
    *,
    clock: Clock | None = None,
    keys: Any = None,
    path: Path | None = None,
    profile: str | None = None,
) -> CardStore[Any]:
    """The user's default card of ``profile`` (default jpki), made on first use."""
    chosen = registry.get(profile)
    target = path or default_card_path(chosen.name)
    if not target.exists():
        from jpki_sim.card.store import private_dir

        private_dir(target.parent)
        provision = chosen.hook("provision")
        state = provision(clock=clock, keys=keys)
        store: CardStore[Any] = CardStore(chosen.state, state, target)
        store.commit()
        return store
    return registry.open_store(target)
