"""Each exported hypothesis strategy generates what it claims."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jpki_sim.iso7816 import codec
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import MalformedApdu
from jpki_sim.profiles.jpki import mynumber
from jpki_sim.profiles.jpki.ids import PIN_POLICIES
from jpki_sim.profiles.jpki.state import SEX_CODES, Identity
from jpki_sim.testing import strategies as jst


@pytest.mark.parametrize("case", jst.APDU_CASES)
@settings(max_examples=60)
@given(data=st.data())
def test_command_apdus_are_of_the_case_asked(case: str, data: st.DataObject) -> None:
    apdu = data.draw(jst.command_apdus(case))
    assert apdu.case == case
    raw = apdu.to_bytes()
    assert CommandApdu.parse(raw) == apdu
    assert codec.parse_command(raw) == apdu


@given(jst.command_apdus(cla=0x80, ins=0x2A))
def test_command_apdus_fixed_header(apdu: CommandApdu) -> None:
    assert (apdu.cla, apdu.ins) == (0x80, 0x2A)


@given(jst.raw_command_apdus())
def test_raw_command_apdus_parse(raw: bytes) -> None:
    assert CommandApdu.parse(raw).to_bytes() == raw


@pytest.mark.parametrize("kind", jst.MALFORMED_KINDS)
@settings(max_examples=60)
@given(data=st.data())
def test_malformed_apdus_of_each_kind_are_refused(kind: str, data: st.DataObject) -> None:
    raw = data.draw(jst.malformed_apdus(kind))
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(raw)
    with pytest.raises(MalformedApdu):
        codec.parse_command(raw)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError):
        jst.command_apdus("5S").example()
    with pytest.raises(ValueError):
        jst.malformed_apdus("nonsense").example()
    with pytest.raises(ValueError):
        jst.pins("puk")


@pytest.mark.parametrize("kind", sorted(PIN_POLICIES))
@given(data=st.data())
def test_valid_pins_pass_the_policy(kind: str, data: st.DataObject) -> None:
    PIN_POLICIES[kind].check(data.draw(jst.pins(kind)))


@pytest.mark.parametrize("kind", sorted(PIN_POLICIES))
@given(data=st.data())
def test_invalid_pins_fail_the_policy(kind: str, data: st.DataObject) -> None:
    pin = data.draw(jst.pins(kind, valid=False))
    with pytest.raises(ValueError):
        PIN_POLICIES[kind].check(pin)


def test_invalid_pins_include_near_misses() -> None:
    # the near misses are what make the strategy useful: check they occur
    seen: set[str] = set()

    @settings(max_examples=300, database=None)
    @given(jst.pins("auth", valid=False))
    def collect(pin: str) -> None:
        if len(pin) == 4:
            seen.add("right length")
        if pin.isascii() and pin.isdigit():
            seen.add("digits only")

    collect()
    assert seen == {"right length", "digits only"}


@given(jst.my_numbers())
def test_valid_my_numbers(number: str) -> None:
    assert len(number) == 12 and mynumber.is_valid(number)


@given(jst.my_numbers(valid=False))
def test_invalid_my_numbers(number: str) -> None:
    assert len(number) == 12 and number.isdigit() and not mynumber.is_valid(number)


@given(jst.identities())
def test_identities(person: Identity) -> None:
    family, sep, given_name = person.name.partition("\u3000")
    assert sep and family and given_name and "\u3000" not in given_name
    assert mynumber.is_valid(person.my_number)
    assert person.sex in SEX_CODES
    assert date(1900, 1, 1) <= person.birthdate <= date(2025, 12, 31)
    assert not any(c in "0123456789" for c in person.address)  # full-width digits only
    assert any(c in "０１２３４５６７８９" for c in person.address)
    # survives the card file format
    assert Identity.from_json(person.to_json()) == person


def test_some_addresses_need_the_long_length_form() -> None:
    lengths: list[int] = []

    @settings(max_examples=200, database=None)
    @given(jst.addresses())
    def collect(address: str) -> None:
        lengths.append(len(address.encode()))

    collect()
    assert min(lengths) < 128 <= max(lengths)


@given(jst.dates(date(2000, 1, 1), date(2000, 12, 31)))
def test_dates_bounded(d: date) -> None:
    assert d.year == 2000
