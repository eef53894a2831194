"""The one registry of card profiles.

Everything that builds, serves, shells, records, replays, benchmarks or
fixtures a card asks here by name. Profiles come from three places:

* the built-in ``jpki`` profile (the My Number card);
* installed packages, through the ``jpki_sim.profiles`` entry-point group
  (``name = "package.module:PROFILE"``);
* the environment: ``JPKI_SIM_PROFILES="package.module:PROFILE,..."`` (a
  profile in a test suite's own folder, served by a ``jpki-sim serve``
  subprocess, is found this way);

and :func:`register` from code (a test's own profile).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jpki_sim.card import store as card_store
from jpki_sim.errors import UserError
from jpki_sim.iso7816 import sw
from jpki_sim.profiles.base import Profile

DEFAULT = "jpki"
ENV_VAR = "JPKI_SIM_PROFILES"
ENTRY_POINT_GROUP = "jpki_sim.profiles"
#: built-in profiles: imported on first use, so naming one costs nothing
BUILTIN = {"jpki": "jpki_sim.profiles.jpki.profile:PROFILE"}

_profiles: dict[str, Profile] = {}
_sources: dict[str, str] = {}
_discovered = False
_lock = threading.RLock()


def register(profile: Profile, *, replace: bool = False) -> Profile:
    """Add a profile (a second one of the same name is refused unless ``replace``)."""
    with _lock:
        if profile.name in _profiles and _profiles[profile.name] is not profile and not replace:
            raise ValueError(f"a card profile named {profile.name!r} is already registered")
        _profiles[profile.name] = profile
        sw.add_meanings(dict(profile.sw_meanings))
        return profile


def unregister(name: str) -> None:
    with _lock:
        _profiles.pop(name, None)


@contextmanager
def registered(profile: Profile) -> Iterator[Profile]:
    """Register ``profile`` for the ``with`` block (tests)."""
    register(profile, replace=True)
    try:
        yield profile
    finally:
        unregister(profile.name)


def _load(target: str) -> Profile:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, (attr or "PROFILE").split(".")):
        obj = getattr(obj, part)
    if not isinstance(obj, Profile):
        raise UserError(f"{target} is not a card profile")
    return obj


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for name, target in BUILTIN.items():
        _sources.setdefault(name, target)
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            _sources.setdefault(ep.name, ep.value)
    except Exception:  # a broken installed package must not break the built-in card
        pass
    for target in filter(None, (t.strip() for t in os.environ.get(ENV_VAR, "").split(","))):
        try:
            profile = _load(target)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"{ENV_VAR}: cannot load {target!r} ({exc})") from None
        register(profile, replace=True)


def secret_instructions() -> frozenset[int]:
    """Every instruction key (class group, INS) a known profile marks as carrying a secret.

    The built-in profile is loaded first, so its secrets are masked even in a
    process that never asked for it.
    """
    get(DEFAULT)
    with _lock:
        return frozenset(k for p in _profiles.values() for k in p.secret_instructions)


def names() -> list[str]:
    with _lock:
        _discover()
        return sorted(set(_profiles) | set(_sources), key=lambda n: (n != DEFAULT, n))


def get(name: str | None = None) -> Profile:
    """The profile ``name`` (default: jpki). UserError names the known ones."""
    name = name or DEFAULT
    with _lock:
        _discover()
        profile = _profiles.get(name)
        if profile is not None:
            return profile
        target = _sources.get(name)
        if target is None:
            raise UserError(f"no card profile {name!r}; profiles: {', '.join(names())}")
        return register(_load(target), replace=True)


def open_store(path: str | os.PathLike[str]) -> card_store.CardStore[Any]:
    """The card file at ``path`` with the state schema of the profile it names."""
    loaded = card_store.read_file(path)
    profile = get(card_store.check_envelope(loaded.doc))
    return card_store.CardStore.from_loaded(profile.state, loaded)


def profile_of(store: card_store.CardStore[Any]) -> Profile:
    return get(store.profile)
