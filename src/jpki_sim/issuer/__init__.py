"""The issuer: test CAs, the card's lifecycle rules, and what the municipal counter does.

``from jpki_sim import issuer`` then ``issuer.issue_card(...)`` keeps working: the
counter operations are loaded on first use (importing the package stays cheap).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    import importlib
    import importlib.util

    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        # a submodule: let the import system load it
        raise AttributeError(name)

    counter = importlib.import_module("jpki_sim.issuer.counter")
    try:
        return getattr(counter, name)
    except AttributeError:
        raise AttributeError(f"module 'jpki_sim.issuer' has no attribute {name!r}") from None
