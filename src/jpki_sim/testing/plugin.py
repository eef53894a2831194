"""pytest plugin of jpki-sim: emulated My Number cards as fixtures.

Installed with the package (entry point ``pytest11``), so any project that has
jpki-sim installed gets these fixtures:

``jpki_card``
    A fresh in-process JPKI card per test (:class:`JpkiCard`: ``.transport``,
    ``.client``, ``.store`` / ``.state``, ``.card``, ``.pins``, ``.date``).
``jpki_reader``
    The same card served through pcscd + vpcd; the value is the PC/SC reader
    name (a ``str``, with the card as ``.card``). Skipped with the reason when
    pcscd, vpcd or pyscard is missing; with ``JPKI_SIM_REQUIRE_PCSC=1`` that is
    a failure instead (CI).
``jpki_ca``
    A test CA (:class:`jpki_sim.issuer.ca.TestCA`) in the test's temporary folder.
``sim_card``
    A fresh in-process card of any registered card profile (:class:`SimCard`):
    ``--jpki-sim-profile NAME`` on the pytest command line, or
    ``@pytest.mark.sim_card(profile="NAME", preset="NAME")``; default the JPKI
    card's ``default`` preset.

Choosing the card::

    @pytest.mark.jpki_profile("minor")             # a named profile
    @pytest.mark.jpki_profile("default", tries={"auth": 1}, issued="2020-08-27")
    @pytest.mark.jpki_date("2030-01-01")           # the test's "today"
    @pytest.mark.parametrize("jpki_card", ["default", "auth-only"], indirect=True)

Profiles: ``default``, ``auth-only``, ``no-certs``, ``minor``, ``expired``,
``cert-expired``, ``pin-blocked`` (see :mod:`jpki_sim.issuer.presets`).

This module is imported by every pytest run of every project where jpki-sim is
installed, so it imports nothing heavy at module level: cryptography, pyscard
and the card itself load inside the fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

REQUIRE_PCSC_ENV = "JPKI_SIM_REQUIRE_PCSC"

MARKERS = (
    "jpki_profile(name, **changes): card profile of the jpki_card / jpki_reader fixtures "
    "(default, auth-only, no-certs, minor, expired, cert-expired, pin-blocked); changes: "
    "issued=, birthdate= (YYYY-MM-DD), tries={'auth': 1}, with_auth=, with_sign=",
    "jpki_date(day): the test's today (YYYY-MM-DD or a date) for jpki_card.date and .clock",
    "sim_card(profile=None, preset='default'): the card profile (as registered, e.g. jpki) "
    "and the preset of the sim_card fixture",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jpki-sim", "jpki-sim emulated cards")
    group.addoption("--jpki-sim-profile", metavar="NAME", default=None,
                    help="the card profile of the sim_card fixture (default jpki)")


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


# ---------------------------------------------------------------- the card object


@dataclass
class JpkiCard:
    """An emulated JPKI card for one test."""

    #: the profile it was issued from
    profile: str
    #: the test's today (``jpki_date`` marker, else the profile's reference date)
    date: date
    #: :class:`jpki_sim.card.engine.Card`: the card itself (power, process)
    card: Any
    #: :class:`jpki_sim.card.store.CardStore`: its state (PIN counters, certificates)
    store: Any
    #: :class:`jpki_sim.transport.inprocess.InProcessTransport` to the card
    transport: Any
    #: :class:`jpki_sim.profiles.jpki.client.JpkiClient` over :attr:`transport`
    client: Any
    #: the PIN values (auth, sign, helper) it was issued with
    pins: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Any:
        """The :class:`~jpki_sim.profiles.jpki.state.CardState`, live (counters change)."""
        return self.store.state

    @property
    def clock(self) -> Any:
        """A :class:`jpki_sim.issuer.lifecycle.FixedClock` at :attr:`date`."""
        from jpki_sim.issuer.lifecycle import FixedClock

        return FixedClock(self.date)

    @property
    def atr(self) -> bytes:
        atr: bytes = self.card.atr
        return atr

    def transmit(self, apdu: bytes | str) -> bytes:
        """Send one command (bytes or hex) to the card; the whole response comes back."""
        raw = bytes.fromhex("".join(apdu.split())) if isinstance(apdu, str) else apdu
        response: bytes = self.transport.transmit(raw)
        return response

    def status(self) -> dict[str, Any]:
        """Where the card stands on :attr:`date` (``jpki-sim card status --json``)."""
        from jpki_sim.issuer import counter as issuer

        result: dict[str, Any] = issuer.status(self.state, self.date)
        return result

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the card to a card file (for ``jpki-sim`` commands, ``serve --card``)."""
        from jpki_sim.profiles.jpki.state import save

        save(self.state, path)


class JpkiReader(str):
    """The PC/SC name of the reader holding the test's card; ``.card`` is the card.

    The card is served under control (:class:`jpki_sim.control.served.ServedCard`,
    ``.served``), as ``jpki-sim serve`` serves it, so the test can do to it what
    the control API does: :meth:`remove` / :meth:`insert` (PC/SC clients see the
    events), :meth:`power_cycle`, :meth:`fault`, :meth:`set_tries`, ...
    """

    card: JpkiCard
    served: Any

    def remove(self) -> None:
        """Take the card out of the reader; returns once pcscd shows the reader empty."""
        self.served.remove()

    def insert(self) -> None:
        """Put the card back; returns once pcscd shows it present."""
        self.served.insert()

    def power_cycle(self) -> None:
        """Cut the card's power and restore it (verified PINs and the current file are lost)."""
        self.served.power_cycle()

    def fault(self, *, delay: float | None = None, sw: str | None = None, count: int = 1,
              mute: bool | None = None, tear: bool | None = None,
              ins: str | list[str] | None = None) -> None:
        """Inject faults (docs/control.md): ``delay`` seconds, forced ``sw`` for ``count``
        commands, ``mute``, ``tear`` the next ``count`` commands; ``ins`` limits them."""
        from jpki_sim.control import faults

        body: dict[str, Any] = {}
        if delay is not None:
            body["delay"] = {"ms": round(delay * 1000), "ins": ins}
        if sw is not None:
            body["sw"] = {"sw": sw, "count": count, "ins": ins}
        if mute is not None:
            body["mute"] = mute
        if tear:
            body["tear"] = {"count": count, "ins": ins}
        self.served.set_faults(faults.parse(body))

    def clear_faults(self, kind: str | None = None) -> None:
        self.served.clear_faults(kind)

    def set_tries(self, pin: str, tries: int) -> None:
        """Put PIN ``pin``'s counter at ``tries`` (through the card's retry counter)."""
        self.served.set_tries(pin, tries)

    def block(self, pin: str) -> None:
        self.served.block(pin)

    def unblock(self, pin: str) -> None:
        self.served.unblock(pin)

    def change_pin(self, pin: str, new: str) -> None:
        self.served.change_pin(pin, new)

    def trace(self) -> list[dict[str, Any]]:
        """The APDUs and events of this test's card so far (PINs masked)."""
        from jpki_sim.control.livetrace import record_json

        return [record_json(r, 0) for r in self.served.trace.since(0)]


# ---------------------------------------------------------------- choosing the card


def _as_date(value: Any, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise pytest.UsageError(f"{what}: {value!r} is not a YYYY-MM-DD date") from None


def _card_request(request: pytest.FixtureRequest) -> tuple[Any, date]:
    """(the Profile, the test's today) from indirect parameters and markers."""
    from dataclasses import replace

    from jpki_sim.issuer import presets as profiles

    name = "default"
    changes: dict[str, Any] = {}
    on: Any = None
    marker = request.node.get_closest_marker("jpki_profile")
    if marker is not None:
        if marker.args:
            name = marker.args[0]
        changes.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, str):
        name = param
    elif isinstance(param, dict):
        param = dict(param)
        name = param.pop("profile", name)
        on = param.pop("date", None)
        changes.update(param)
    elif param is not None:
        raise pytest.UsageError(
            f"jpki_card parameter must be a profile name or a dict, not {param!r}"
        )
    if name not in profiles.PRESETS:
        raise pytest.UsageError(
            f"unknown jpki profile {name!r}; profiles: {', '.join(profiles.PRESETS)}"
        )
    profile = profiles.PRESETS[name]
    for key in ("issued", "birthdate", "reference_date"):
        if key in changes:
            changes[key] = _as_date(changes[key], f"jpki_profile {key}")
    if "tries" in changes:
        changes["tries"] = {**profile.tries, **changes["tries"]}
    try:
        profile = replace(profile, **changes)
    except TypeError as exc:
        raise pytest.UsageError(f"jpki_profile: {exc}") from None
    date_marker = request.node.get_closest_marker("jpki_date")
    if on is None and date_marker is not None:
        if not date_marker.args:
            raise pytest.UsageError("jpki_date needs a date: @pytest.mark.jpki_date('2030-01-01')")
        on = date_marker.args[0]
    today = _as_date(on, "jpki_date") if on is not None else profile.reference_date
    return profile, today


def _new_card(request: pytest.FixtureRequest) -> JpkiCard:
    from jpki_sim.issuer import presets as profiles
    from jpki_sim.profiles.jpki.client import JpkiClient
    from jpki_sim.transport.inprocess import InProcessTransport

    profile, today = _card_request(request)
    card, store = profiles.factory().card(profile)
    transport = InProcessTransport(card, name=f"jpki_card[{profile.name}]")
    pins = {n: p.value for n, p in store.state.pins.items() if p.value is not None}
    return JpkiCard(profile.name, today, card, store, transport, JpkiClient(transport), pins)


@pytest.fixture
def jpki_card(request: pytest.FixtureRequest) -> JpkiCard:
    """A fresh in-process JPKI card (profile by marker or indirect parameter)."""
    return _new_card(request)


# ---------------------------------------------------------------- through pcscd + vpcd


def _pcsc_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_PCSC_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_PCSC_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _jpki_vpcd_session() -> Iterator[Any]:
    """One vpcd reader slot for the whole run: attaching a card takes a pcscd poll."""
    from jpki_sim.transport import pcscd

    try:
        import smartcard  # noqa: F401
    except ImportError:
        _pcsc_unavailable("jpki_reader needs pyscard (pip install 'jpki-sim[pcsc]')")
    if pcscd.vpcd_driver() is None:
        _pcsc_unavailable("jpki_reader needs the vpcd driver (apt-get install vsmartcard-vpcd)")
    if pcscd.find_binary() is None:
        _pcsc_unavailable("jpki_reader needs pcscd (apt-get install pcscd)")
    if not pcscd.is_running() and not pcscd.is_root():
        _pcsc_unavailable("jpki_reader needs a running pcscd (sudo pcscd -f &)")
    from jpki_sim.errors import JpkiSimError
    from jpki_sim.issuer import presets as profiles
    from jpki_sim.vectors.targets import ServedSession

    card, _store = profiles.card("default")
    try:
        session = ServedSession(card, label="jpki_reader")
    except JpkiSimError as exc:
        _pcsc_unavailable(f"jpki_reader: {exc}")
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def jpki_reader(request: pytest.FixtureRequest, _jpki_vpcd_session: Any) -> Iterator[JpkiReader]:
    """A fresh card (as for ``jpki_card``) in a vpcd reader; the value is the reader name."""
    from jpki_sim.control.served import ServedCard

    card = _new_card(request)
    session = _jpki_vpcd_session
    served = ServedCard(card.store, engine=card.card, label=f"jpki_reader[{card.profile}]")
    served.attach(session.bridge, reader=session.reader)
    session.bridge.replace_card(served)  # served from now on
    reader = JpkiReader(session.reader)
    reader.card = card
    reader.served = served
    try:
        yield reader
    finally:
        # the next test finds the reader as this one did: card in, no fault
        served.clear_faults()
        served.close()
        if not served.present:
            served.insert()


# ---------------------------------------------------------------- any card profile


@dataclass
class SimCard:
    """A fresh emulated card of any registered profile, for one test."""

    #: :class:`jpki_sim.profiles.base.Profile` it was built by
    profile: Any
    #: the preset it started from
    preset: str
    #: :class:`jpki_sim.card.engine.Card`
    card: Any
    #: :class:`jpki_sim.card.store.CardStore` (in memory): its state, live
    store: Any
    #: :class:`jpki_sim.transport.inprocess.InProcessTransport`
    transport: Any
    #: the profile's client over :attr:`transport` (generic: CardClient)
    client: Any

    def transmit(self, apdu: bytes | str) -> bytes:
        raw = bytes.fromhex("".join(apdu.split())) if isinstance(apdu, str) else apdu
        response: bytes = self.transport.transmit(raw)
        return response


@pytest.fixture
def sim_card(request: pytest.FixtureRequest) -> SimCard:
    """A fresh in-process card of the profile chosen by marker or ``--jpki-sim-profile``."""
    from jpki_sim.card.store import CardStore
    from jpki_sim.errors import UserError
    from jpki_sim.profiles import registry
    from jpki_sim.transport.inprocess import InProcessTransport

    marker = request.node.get_closest_marker("sim_card")
    kwargs = dict(marker.kwargs) if marker is not None else {}
    name = kwargs.pop("profile", None) or request.config.getoption("--jpki-sim-profile")
    preset = kwargs.pop("preset", "default")
    if kwargs:
        raise pytest.UsageError(f"sim_card: unknown argument(s) {', '.join(kwargs)}")
    try:
        profile = registry.get(name)
        presets = profile.hook("presets")()
        if preset not in presets.names():
            raise UserError(f"no {profile.name} preset {preset!r}; presets: "
                            f"{', '.join(presets.names())}")
    except UserError as exc:
        raise pytest.UsageError(f"sim_card: {exc}") from None
    store = CardStore(profile.state, presets.state(preset))
    card = profile.build(store)
    transport = InProcessTransport(card, name=f"sim_card[{profile.name}:{preset}]")
    return SimCard(profile, preset, card, store, transport, profile.client(transport))


# ---------------------------------------------------------------- the test CA


@pytest.fixture
def jpki_ca(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fresh JPKI test CA (auth and sign roots) in a temporary folder."""
    from jpki_sim.issuer.ca import TestCA

    return TestCA.open(tmp_path_factory.mktemp("jpki-ca"))
