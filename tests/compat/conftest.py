"""Fixtures and row recording of the real-client compatibility suite.

Every test here takes a served card (``served``: one per module, made by ``jpki-sim
serve`` in reader ``Virtual PCD 00 00``, the reader users get) while no other card is
in a vpcd reader, so "the first token with this label" is always the card under test.
The session's in-process slot-0 card (pcsc_harness.vpcd_slot0), when other tests made
it, is taken out for the module and put back afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_harness import ROW_KEY, Row, Served, complete, record, serve, stop, write_results

from jpki_sim.profiles.jpki.state import CardState, save
from pcsc_harness import PORTS, PcscSession, attach

_deselected = 0


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected
    _deselected += sum(1 for i in items if i.get_closest_marker("compat") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    record(item, outcome.get_result(), call)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR):
        return
    if complete(session, _deselected):
        session.config.stash[_WROTE] = str(write_results(session))
    elif any(i.get_closest_marker("compat") for i in session.items):
        session.config.stash[_WROTE] = ""


_WROTE = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    wrote = config.stash.get(_WROTE, None)
    if wrote:
        terminalreporter.write_line(
            f"compat: results in {wrote}; `python tools/compat_table.py` writes "
            "docs/compatibility.md from them")
    elif wrote is not None:
        terminalreporter.write_line(
            "compat: part of the suite ran, so no results were written (run all of tests/compat)")


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Row:
    """The test's row: ``row.client_limitation(evidence, reference)``, ``row.note(text)``."""
    r = Row()
    request.node.stash[ROW_KEY] = r
    return r


@pytest.fixture(scope="module")
def readers_to_ourselves(request: pytest.FixtureRequest,
                         pcscd_session: PcscSession) -> Iterator[PcscSession]:
    """Both vpcd readers empty for this module (the session's slot-0 card taken out)."""
    from jpki_sim.transport.pcsc import wait_for_card

    slot0 = pcscd_session.reader_for_port(PORTS[0])
    parked = None
    for reader in pcscd_session.readers:
        if wait_for_card(reader, present=False, timeout=1.5):
            continue
        if reader != slot0:
            pytest.fail(f"{reader!r} holds a card that is not this run's (is a `jpki-sim serve` "
                        "running outside the reader lock?)", pytrace=False)
        parked = request.getfixturevalue("vpcd_slot0")
        parked.bridge.stop()
        assert wait_for_card(reader, present=False, timeout=5), f"{reader} kept its card"
    try:
        yield pcscd_session
    finally:
        if parked is not None:
            parked.bridge = attach(parked.bridge.card, PORTS[0], slot0)


def served_copy(state: CardState, folder: Path) -> Iterator[Served]:
    card = folder / "card.json"
    save(copy.deepcopy(state), card)
    served = serve(card, PORTS[0])
    try:
        yield served
    finally:
        stop(served)


@pytest.fixture(scope="module")
def served(readers_to_ourselves: PcscSession, jpki_state: CardState,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The session's card (default PINs, the session's test CA), served for this module."""
    yield from served_copy(jpki_state, tmp_path_factory.mktemp("served"))
