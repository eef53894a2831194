"""The control service without its HTTP: the served cards, the status date, OCSP.

:class:`ControlService` is what the HTTP app (:mod:`.app`) calls for each
request, and what a Python caller (the pytest plugin, a test) may call
directly. Every operation names a card by its index (the order ``serve`` got
them in) and returns the card's state afterwards; bad input raises
:class:`~jpki_sim.errors.UserError` (HTTP 400), an unknown card or PIN
:class:`NotFound` (HTTP 404).
"""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Any

from jpki_sim.control import faults as faults_mod
from jpki_sim.control import lifecycle
from jpki_sim.control.livetrace import record_json
from jpki_sim.control.ocsp import OcspResponder
from jpki_sim.control.served import ServedCard
from jpki_sim.errors import CardFileError, UserError

log = logging.getLogger("jpki_sim.control")


class NotFound(UserError):
    """No such card, PIN or path (HTTP 404)."""


#: actions on a card: name -> (method of ControlService, whether it takes a body)
CARD_ACTIONS = ("remove", "insert", "power-cycle", "swap", "issue", "renew", "revoke", "expire")
PIN_ACTIONS = ("tries", "block", "unblock", "change")


def _object(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise UserError(f"{what}: the body must be a JSON object")
    return body


class ControlService:
    """Served cards and the test CA's revocation services, as one service."""

    def __init__(self, cards: list[ServedCard] | None = None, *, cas: list[Any] | None = None,
                 token: str | None = None, runtime_dir: Path | None = None,
                 status_date: lifecycle.StatusDate | None = None) -> None:
        self.cards: list[ServedCard] = list(cards or [])
        self.token = token or secrets.token_urlsafe(32)
        self.status_date = status_date or lifecycle.StatusDate()
        self.runtime_dir = runtime_dir
        self.ocsp = OcspResponder(at=self._ocsp_at, generation=lambda: self.status_date.generation)
        for ca in cas or []:
            self.ocsp.add_ca(ca)
        for card in self.cards:
            self._add_cas_of(card)
        #: the URL the service answers at, once it listens
        self.url: str | None = None
        #: the drawn front of each card, with the version of what it shows
        self._faces: dict[int, tuple[str, bytes]] = {}

    def _ocsp_at(self) -> Any:
        return self.status_date.clock.now() if self.status_date.day is not None else None

    def _add_cas_of(self, card: ServedCard) -> None:
        if not lifecycle.is_jpki(card):
            return
        ca_dir = card.store.state.ca_dir
        if not ca_dir:
            return
        from jpki_sim.issuer.ca import TestCA

        try:
            self.ocsp.add_ca(TestCA.open(ca_dir, create=False))
        except UserError as exc:
            log.warning("%s: its test CA cannot be opened (%s); OCSP will not know it",
                        card.label, exc)

    def presign(self) -> int:
        """Pre-sign the OCSP answers for every certificate the served cards carry."""
        ders: list[bytes] = []
        for card in self.cards:
            if lifecycle.is_jpki(card):
                state = card.store.state
                ders += [s.cert_der for s in (state.auth, state.sign) if s is not None]
        return self.ocsp.presign(ders)

    def presign_in_background(self) -> None:
        def run() -> None:
            try:
                self.presign()
            except Exception:  # a broken CA must not take the service down
                log.exception("pre-signing OCSP answers failed")

        threading.Thread(target=run, name="ocsp-presign", daemon=True).start()

    # ------------------------------------------------------------ reading

    def card(self, index: Any) -> ServedCard:
        try:
            n = int(index)
        except (TypeError, ValueError):
            raise NotFound(f"no card {index!r}: cards are numbered 0..{len(self.cards) - 1}") \
                from None
        if not 0 <= n < len(self.cards):
            raise NotFound(f"no card {n}: cards are numbered 0..{len(self.cards) - 1}"
                           if self.cards else "no card is served")
        return self.cards[n]

    def info(self) -> dict[str, Any]:
        from jpki_sim import __version__

        paths = self.ocsp.crl_paths()
        base = (self.url or "").rstrip("/")
        return {
            "service": "jpki-sim control",
            "version": __version__,
            "url": self.url,
            "cards": len(self.cards),
            "status_date": self.status_date.to_json(),
            "ocsp": f"{base}/ocsp" if self.ocsp.cas else None,
            "crl": [f"{base}{p}" for p in paths],
            "cas": [str(ca.directory) for ca in self.ocsp.cas],
        }

    def state(self, index: Any) -> dict[str, Any]:
        return lifecycle.status(self.card(index), self.status_date.clock)

    def face(self, index: Any) -> bytes:
        """The front of card ``index`` as a PNG; drawn once per version of what it shows."""
        card = self.card(index)
        if not lifecycle.is_jpki(card):
            raise NotFound(f"card {card.index} is a {card.profile.name} card: it has no face")
        cached = self._faces.get(card.index)
        state = card.store.state
        if cached is not None and cached[0] == lifecycle.face_version(state):
            return cached[1]
        version, png = lifecycle.face_png(card)
        self._faces[card.index] = (version, png)
        return png

    def states(self) -> list[dict[str, Any]]:
        return [lifecycle.status(c, self.status_date.clock) for c in self.cards]

    def trace(self, index: Any, since: int = 0) -> list[dict[str, Any]]:
        card = self.card(index)
        return [record_json(r, card.index) for r in card.trace.since(since)]

    # ------------------------------------------------------------ the status date

    def set_date(self, body: Any) -> dict[str, Any]:
        body = _object(body, "clock")
        if "date" not in body:
            raise UserError('clock: {"date": "YYYY-MM-DD"} or {"date": null} for the real date')
        self.status_date.set(lifecycle.parse_day(body["date"], "date"))
        self.ocsp.invalidate()
        for card in self.cards:
            card.trace.add("control", None, None,
                           note=f"status date: {self.status_date.to_json()['today']}")
        return self.status_date.to_json()

    # ------------------------------------------------------------ card actions

    def act(self, index: Any, action: str, body: Any = None) -> dict[str, Any]:
        """Run ``action`` on card ``index``; the card's state after it, with ``result``."""
        card = self.card(index)
        body = _object(body, action)
        clock = self.status_date.clock
        result: Any = None
        if action == "remove":
            result = {"reader_shows_absent": card.remove()}
        elif action == "insert":
            result = {"reader_shows_present": card.insert()}
        elif action == "power-cycle":
            card.power_cycle()
        elif action == "swap":
            result = self._swap(card, body)
        elif action in ("issue", "renew", "expire"):
            result = getattr(lifecycle, action)(card, body, clock)
            self._after_issuer(card)
        elif action == "revoke":
            result = lifecycle.revoke(card, body, clock)
            self._after_issuer(card)
        else:
            raise NotFound(f"no card action {action!r} (actions: {', '.join(CARD_ACTIONS)})")
        state = self.state(index)
        state["result"] = result
        return state

    def _after_issuer(self, card: ServedCard) -> None:
        """The CA's records changed: forget cached OCSP answers, pre-sign the new ones."""
        self._add_cas_of(card)
        self.ocsp.invalidate()
        self.presign_in_background()

    def pin(self, index: Any, pin: str, action: str, body: Any = None) -> dict[str, Any]:
        card = self.card(index)
        body = _object(body, action)
        if pin not in card.profile.pins:
            known = ", ".join(card.profile.pins)
            raise NotFound(f"the card has no PIN {pin!r} (its PINs: {known})")
        if action == "tries":
            if "tries" not in body:
                raise UserError('tries: {"tries": N}')
            card.set_tries(pin, body["tries"])
        elif action == "block":
            card.block(pin)
        elif action == "unblock":
            card.unblock(pin)
        elif action == "change":
            if "new" not in body:
                raise UserError('change: {"new": "NEW-PIN"}')
            card.change_pin(pin, body["new"])
        else:
            raise NotFound(f"no PIN action {action!r} (actions: {', '.join(PIN_ACTIONS)})")
        return self.state(index)

    def set_faults(self, index: Any, body: Any) -> dict[str, Any]:
        card = self.card(index)
        card.set_faults(faults_mod.parse(body))
        return self.state(index)

    def clear_faults(self, index: Any, kind: str | None = None) -> dict[str, Any]:
        card = self.card(index)
        if kind is not None and kind not in faults_mod.KINDS:
            raise NotFound(f"no fault {kind!r} (faults: {', '.join(faults_mod.KINDS)})")
        card.clear_faults(kind)
        return self.state(index)

    # ------------------------------------------------------------ swapping cards

    def _swap(self, card: ServedCard, body: dict[str, Any]) -> dict[str, Any]:
        """Another card file, or a preset of the card's profile, in the same reader."""
        from jpki_sim.profiles import registry

        unknown = set(body) - {"file", "preset", "atr"}
        if unknown:
            raise UserError(f"swap: unknown field {sorted(unknown)[0]!r} (file, preset, atr)")
        file, preset, atr_text = body.get("file"), body.get("preset"), body.get("atr")
        if (file is None) == (preset is None) and atr_text is None:
            raise UserError('swap: {"file": "card.json"} or {"preset": "expired"}, '
                            'optionally "atr"')
        if file is not None and preset is not None:
            raise UserError("swap: a file or a preset, not both")
        store = card.store
        profile = card.profile
        if file is not None:
            if not isinstance(file, str) or not file:
                raise UserError("swap.file: the path of a card file")
            path = Path(file).expanduser().resolve()
            for other in self.cards:
                if other is not card and other.path is not None and other.path.resolve() == path:
                    raise UserError(f"{file} is served in card {other.index}'s reader already")
            try:
                store = registry.open_store(path)
            except CardFileError as exc:
                raise UserError(str(exc)) from None
            profile = registry.profile_of(store)
        elif preset is not None:
            store = self._preset_store(card, preset)
        atr = profile.atr(atr_text) if atr_text is not None else None
        was_present = card.present
        if was_present:
            card.remove()
        try:
            card.use_store(store, profile, atr)
        finally:
            if was_present:
                card.insert()
        self._add_cas_of(card)
        self.ocsp.invalidate()
        self.presign_in_background()
        return {"file": str(store.path) if store.path else None, "profile": profile.name,
                "preset": preset, "atr": card.atr.hex().upper()}

    def _preset_store(self, card: ServedCard, name: Any) -> Any:
        from jpki_sim.card.store import CardStore

        profile = card.profile
        if not isinstance(name, str) or not profile.has_hook("presets"):
            raise UserError(f"swap.preset: a preset name of the {profile.name} card")
        presets = profile.hook("presets")()
        if name not in presets.names():
            raise UserError(f"no preset {name!r}; presets: {', '.join(presets.names())}")
        state = presets.state(name)
        folder = self.runtime_dir
        if folder is None:
            store: Any = CardStore(profile.state, state)
        else:
            path = folder / f"card-{card.index}-{name}.json"
            store = CardStore(profile.state, state, path)
            store.commit()  # written (replacing any old file there), 0600, as every card file
        return store
