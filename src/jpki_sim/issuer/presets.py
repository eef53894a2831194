"""The JPKI card's presets: the named cards vectors (and the pytest plugin) play against.

A preset is a recipe for a :class:`~jpki_sim.presets.jpki.state.CardState`
issued by the test CA with :func:`jpki_sim.issuer.counter.issue_card` at fixed
dates, so a vector that names ``expired`` sees the same expired card on every
machine and every day. The JPKI profile's ``presets`` hook is :func:`factory`;
the factory is what :class:`jpki_sim.profiles.base.Presets` asks for. RSA key
generation is the slow part: one process makes one test CA and a small pool of
card keys, and each preset's state is built once and then copied for every
fresh card.

Presets:

=================  ============================================================
``default``        both certificates, default PINs, full counters
``auth-only``      an adult who declined the signature certificate
``no-certs``       neither certificate (both declined): helper application only
``minor``          a 10-year-old: no signature certificate, card valid 5 years
``expired``        issued 2015-04-01: card and certificates expired at its date
``cert-expired``   issued 2020-04-01: certificates expired, card still valid
``pin-blocked``    ``default`` with every PIN and 照合番号 key blocked (0 tries)
``contactless``    ``default`` presented as a contactless card (ATR ``contactless-06``)
``old-label``      ``default`` with the older token label ``JPKIAPICCTOKEN``
=================  ============================================================
"""

from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jpki_sim.card.engine import Card
    from jpki_sim.card.store import CardStore
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.profiles.jpki.state import CardState

#: PIN values of every preset (the card's documented defaults); juki and common
#: are the two keys of the one 住民基本台帳用暗証番号
PINS = {"auth": "1234", "sign": "ABC123", "helper": "1234", "juki": "1234", "common": "1234"}

#: how many card keys one process generates; cards take them in turn, so a
#: card's seven keys (auth, sign, 共通AP 0019, helper 0013 and session key,
#: surface 001A, the MF key) always differ
KEY_POOL_SIZE = 7


@dataclass(frozen=True)
class Preset:
    """How to issue one named card, and the date its vectors are played at."""

    name: str
    description: str
    issued: date
    #: the date vectors of this preset play at unless they name one
    reference_date: date
    birthdate: date = date(1993, 3, 31)
    with_auth: bool = True
    with_sign: bool | None = True
    #: tries left per PIN after issue (missing: full counter)
    tries: dict[str, int] = field(default_factory=dict)
    name_on_card: str | None = None
    #: the ATR variant and token label (None: the card's defaults)
    atr: str | None = None
    token_label: str | None = None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "default",
            "both certificates, default PINs, full counters",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
        ),
        Preset(
            "auth-only",
            "the holder declined the signature certificate",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            with_sign=False,
        ),
        Preset(
            "no-certs",
            "the holder declined both certificates",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            with_auth=False,
            with_sign=False,
        ),
        Preset(
            "minor",
            "a holder aged 10 at issue: no signature certificate, card valid 5 years",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            birthdate=date(2014, 6, 15),
            with_sign=None,  # the issuer's rule: no signature certificate under 15
            name_on_card="番号　太郎",
        ),
        Preset(
            "expired",
            "issued 2015-04-01: the card (2025-03-31) and its certificates (2020-03-31) expired",
            issued=date(2015, 4, 1),
            reference_date=date(2026, 4, 1),
        ),
        Preset(
            "cert-expired",
            "issued 2020-04-01: certificates expired 2025-03-31, card valid to 2030-03-31",
            issued=date(2020, 4, 1),
            reference_date=date(2026, 4, 1),
        ),
        Preset(
            "pin-blocked",
            "both certificates, every PIN and 照合番号 key blocked (0 tries left)",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            tries={"auth": 0, "sign": 0, "helper": 0, "juki": 0, "common": 0, "helper-a": 0,
                   "helper-b": 0, "birthdate": 0, "surface-b": 0, "surface-a": 0},
        ),
        Preset(
            "contactless",
            "the default card in a contactless reader: ATR 3B 88 80 01 ... (JPKI (06))",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            atr="contactless-06",
        ),
        Preset(
            "old-label",
            "the default card with the older token label JPKIAPICCTOKEN in EF 0006",
            issued=date(2025, 4, 1),
            reference_date=date(2026, 4, 1),
            token_label="JPKIAPICCTOKEN",
        ),
    )
}


def names() -> list[str]:
    return list(PRESETS)


def get(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        from jpki_sim.errors import UserError

        raise UserError(f"no jpki card preset {name!r}; presets: {', '.join(PRESETS)}") from None


# ---------------------------------------------------------------- the factory


class CardFactory:
    """Issues preset cards from one test CA and one key pool, each preset once.

    Thread-safe. ``ca_dir`` None makes a temporary CA removed at exit.
    """

    def __init__(self, ca_dir: str | None = None, key_pool_size: int = KEY_POOL_SIZE) -> None:
        self._ca_dir = ca_dir
        self._key_pool_size = key_pool_size
        self._ca: TestCA | None = None
        self._keys: Callable[[], Any] | None = None
        self._states: dict[str, CardState] = {}
        self._lock = threading.RLock()

    @property
    def ca(self) -> TestCA:
        with self._lock:
            if self._ca is None:
                from jpki_sim.issuer.ca import TestCA

                if self._ca_dir is None:
                    folder = tempfile.mkdtemp(prefix="jpki-sim-vectors-ca-")
                    atexit.register(shutil.rmtree, folder, True)
                    self._ca_dir = folder
                self._ca = TestCA.open(self._ca_dir)
            return self._ca

    # ------------------------------------------------ the Presets protocol

    def names(self) -> list[str]:
        return names()

    def describe(self, name: str) -> str:
        return get(name).description

    def reference_date(self, name: str) -> date:
        return get(name).reference_date

    def pin_value(self, pin: str) -> str:
        return PINS[pin]

    def _key_source(self) -> Callable[[], Any]:
        if self._keys is None:
            from jpki_sim.issuer.counter import KeyPool

            self._keys = KeyPool.generate(self._key_pool_size)
        return self._keys

    def state(self, name: str | Preset) -> CardState:
        """A private copy of a preset's card state (change it freely).

        ``name`` is a preset name or a :class:`Preset` (e.g. a named one
        with :func:`dataclasses.replace` applied); each is issued once.
        """
        preset = get(name) if isinstance(name, str) else name
        key = repr(preset)
        with self._lock:
            cached = self._states.get(key)
            if cached is None:
                cached = self._issue(preset)
                self._states[key] = cached
            return copy.deepcopy(cached)

    def _issue(self, preset: Preset) -> CardState:
        from jpki_sim.issuer.counter import default_identity, issue_card

        identity = default_identity()
        identity.birthdate = preset.birthdate
        if preset.name_on_card:
            identity.name = preset.name_on_card
        state = issue_card(
            identity,
            preset.issued,
            pins=PINS,
            with_auth=preset.with_auth,
            with_sign=preset.with_sign,
            ca=self.ca,
            keys=self._key_source(),
            atr=preset.atr,
            token_label=preset.token_label,
        )
        for pin, tries in preset.tries.items():
            state.pins[pin].tries_left = tries
        return state

    def store(self, name: str | Preset, path: str | None = None) -> CardStore:
        """A :class:`CardStore` with a fresh copy of the preset (in memory, or at ``path``)."""
        from jpki_sim.profiles.jpki.state import new_store, open_store, save

        state = self.state(name)
        if path is not None:
            save(state, path)
            return open_store(path)
        return new_store(state)

    def card(self, name: str | Preset) -> tuple[Card, CardStore]:
        """A fresh, powered-on JPKI card of preset ``name`` and its (in-memory) store."""
        from jpki_sim.profiles import registry

        store = self.store(name)
        card = registry.get("jpki").build(store)
        card.power_on()
        return card, store


_default_factory: CardFactory | None = None
_default_lock = threading.Lock()


def factory() -> CardFactory:
    """The process-wide factory (one CA and one key pool per process)."""
    global _default_factory
    with _default_lock:
        if _default_factory is None:
            _default_factory = CardFactory()
        return _default_factory


def state(name: str) -> CardState:
    """A fresh copy of preset ``name``'s card state, from the process-wide factory."""
    return factory().state(name)


def card(name: str) -> tuple[Card, CardStore]:
    """A fresh in-process card of preset ``name`` and its in-memory store."""
    return factory().card(name)
