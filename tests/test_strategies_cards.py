"""The card-level strategies produce cards the issuer and the card accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.counter import KeyPool, issue_card
from jpki_sim.issuer.presets import PRESETS as PROFILES
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.client import JpkiClient
from jpki_sim.profiles.jpki.state import new_store
from jpki_sim.testing import strategies as jst
from jpki_sim.transport.inprocess import InProcessTransport


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture(scope="module")
def keys() -> KeyPool:
    return KeyPool.generate(2)


@settings(max_examples=40, deadline=None)
@given(name=jst.card_profiles())
def test_card_profiles_are_the_bundled_ones(name: str) -> None:
    assert name in PROFILES


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=jst.card_specs())
def test_card_specs_issue_cards_that_answer_as_specified(
    spec: dict[str, object], ca: TestCA, keys: KeyPool
) -> None:
    state = issue_card(**spec, ca=ca, keys=keys)  # type: ignore[arg-type]
    card = InProcessTransport(build_card(new_store(state)))
    client = JpkiClient(card)
    client.select_jpki()
    presence = client.certificate_presence()
    assert presence == bytes(
        (0x8F if spec["with_sign"] else 0, 0x8F if spec["with_auth"] else 0, 0)
    )
    pins = spec["pins"]
    assert isinstance(pins, dict)
    expected = jpki.PIN_POLICIES["auth"].max_tries if spec["with_auth"] else 0
    assert client.pin_status("auth") == expected
    if spec["with_auth"]:
        client.verify_pin("auth", pins["auth"])
