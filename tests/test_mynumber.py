"""My Number check digits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki_sim.profiles.jpki import mynumber

# 012345678903: the seeds' sample 0123 4567 8901 with its check digit corrected;
# 123456789018: the example in the official explanations; 537686677188: a test card
VALID = ["012345678903", "123456789018", "537686677188", "000000000000"]
# 012345678901 is the seeds' sample number, printed on leaflets: its check digit is wrong
INVALID = ["012345678901", "123456789012", "537686677189", "000000000001"]


@pytest.mark.parametrize("number", VALID)
def test_valid(number: str) -> None:
    assert mynumber.is_valid(number)
    assert mynumber.complete(number[:11]) == number
    assert mynumber.normalize(f"{number[:4]} {number[4:8]}-{number[8:]}") == number


@pytest.mark.parametrize("number", INVALID)
def test_invalid(number: str) -> None:
    assert not mynumber.is_valid(number)
    with pytest.raises(ValueError, match="check digit"):
        mynumber.normalize(number)


def test_check_digit_by_hand() -> None:
    # 01234567890: P1..P11 from the right = 0,9,8,7,6,5,4,3,2,1,0 with weights 2..7,2..6
    total = 0 * 2 + 9 * 3 + 8 * 4 + 7 * 5 + 6 * 6 + 5 * 7 + 4 * 2 + 3 * 3 + 2 * 4 + 1 * 5 + 0 * 6
    assert total % 11 == 8
    assert mynumber.check_digit("01234567890") == 11 - 8


@pytest.mark.parametrize(
    "bad", ["1234", "0123456789012", "01234567890a", "０１２３４５６７８９０３", ""]
)
def test_wrong_shapes(bad: str) -> None:
    assert not mynumber.is_valid(bad)
    with pytest.raises(ValueError):
        mynumber.normalize(bad)


@given(st.text("0123456789", min_size=11, max_size=11), st.integers(0, 9))
def test_exactly_one_check_digit(first11: str, digit: int) -> None:
    number = first11 + str(digit)
    assert mynumber.is_valid(number) == (digit == mynumber.check_digit(first11))
