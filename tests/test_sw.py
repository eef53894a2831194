"""Status words: the enum, the table of meanings, the parameterised families."""

from __future__ import annotations

import pytest

from jpki_sim.iso7816.errors import ApduError, CardError, MalformedApdu, PinError
from jpki_sim.iso7816.sw import (
    SW,
    describe,
    is_success,
    iso_meaning,
    pin_status_sw,
    tries_left,
)


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "9000 success"),
        (0x6982, "6982 security status not satisfied"),
        (0x6A82, "6A82 file or application not found"),
        (0x6D00, "6D00 instruction code not supported or invalid"),
        (0x6E00, "6E00 class not supported"),
        (0x6700, "6700 wrong length"),
        (0x6A86, "6A86 incorrect parameters P1-P2"),
        (0x6984, "6984 reference data not usable (PIN blocked)"),
    ],
)
def test_describe_fixed_words(sw: int, text: str) -> None:
    assert describe(sw) == text


def test_a_profile_adds_the_meanings_of_its_own_words() -> None:
    from jpki_sim.profiles import registry

    assert iso_meaning(0x69FC) == "secure messaging refused (proprietary)"
    registry.get("jpki")
    assert describe(0x69FC) == "69FC secure messaging refused (JPKI)"
    assert iso_meaning(0x69FC) == "secure messaging refused (proprietary)"


def test_every_enum_member_has_its_own_meaning() -> None:
    for member in SW:
        assert iso_meaning(member) != "unknown status word", member.name
    assert len({iso_meaning(m) for m in SW}) == len(SW)


@pytest.mark.parametrize(
    ("n", "word"), [(0, "no tries left"), (1, "1 try left"), (2, "2 tries left")]
)
def test_63cx_counts_tries(n: int, word: str) -> None:
    assert word in describe(0x63C0 | n)
    assert describe(0x63C0 | n).startswith(f"63C{n}")
    assert tries_left(0x63C0 | n) == n


def test_63cx_is_the_only_tries_carrier() -> None:
    assert tries_left(0x6300) is None
    assert tries_left(0x9000) is None
    assert tries_left(0x6983) is None
    assert pin_status_sw(3) == 0x63C3
    assert pin_status_sw(20) == 0x63CF
    assert pin_status_sw(-1) == 0x63C0


def test_61xx_and_6cxx_carry_lengths() -> None:
    assert describe(0x6110) == "6110 16 more response bytes available (GET RESPONSE)"
    assert "256" in describe(0x6100)
    assert describe(0x6C20) == "6C20 wrong Le: 32 bytes available"
    assert "256" in describe(0x6C00)


def test_families_and_unknown() -> None:
    assert describe(0x6A99) == "6A99 wrong parameters P1-P2"
    assert describe(0x6401) == "6401 execution error: state of non-volatile memory unchanged"
    assert describe(0x1234) == "1234 unknown status word"


def test_success() -> None:
    assert is_success(0x9000) and is_success(0x6105)
    assert not is_success(0x6982) and not is_success(0x63C2)


def test_errors_carry_the_status_word() -> None:
    assert CardError(0x6982).sw == 0x6982
    assert str(CardError(0x6982)) == "6982 security status not satisfied"
    assert MalformedApdu("x").sw == 0x6700
    err = PinError(0x63C1, 1, "VERIFY")
    assert (err.sw, err.tries_left) == (0x63C1, 1)
    assert "63C1" in str(err) and "VERIFY" in str(err)
    assert "6A82 file or application not found" in str(ApduError(0x6A82))
