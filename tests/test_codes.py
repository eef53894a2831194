"""The card-face codes: era dates, the security code, 照合番号A and B."""

from __future__ import annotations

from datetime import date, timedelta
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki_sim.issuer import lifecycle
from jpki_sim.profiles.jpki import codes


def test_verification_code_b_of_the_source_test_card() -> None:
    # soltia48/myna-card: born 1980-02-17 (昭和55), card expiring in 2035, security code 2285
    assert codes.verification_code_b(date(1980, 2, 17), 2035, "2285") == "55021720352285"
    assert codes.verification_code_b(date(1980, 2, 17), date(2035, 2, 17), "2285") == (
        "55021720352285"
    )


@pytest.mark.parametrize(
    ("day", "want"),
    [
        (date(1868, 10, 23), "011023"),  # 明治 1, its first day
        (date(1912, 7, 29), "450729"),  # 明治 45, its last day
        (date(1912, 7, 30), "010730"),  # 大正 1
        (date(1926, 12, 24), "151224"),  # 大正 15
        (date(1926, 12, 25), "011225"),  # 昭和 1
        (date(1989, 1, 7), "640107"),  # 昭和 64, its last day
        (date(1989, 1, 8), "010108"),  # 平成 1: the first day is year 1 of the new era
        (date(1993, 3, 31), "050331"),  # the seeds' holder, 平成5年3月31日
        (date(2019, 4, 30), "310430"),  # 平成 31
        (date(2019, 5, 1), "010501"),  # 令和 1
        (date(2020, 1, 1), "020101"),  # 令和 2 from the first of January
    ],
)
def test_era_yymmdd_at_the_era_boundaries(day: date, want: str) -> None:
    assert codes.era_yymmdd(day) == want
    assert codes.birthdate_code(day) == want


def test_era_codes_and_names() -> None:
    assert codes.era_of(date(1989, 1, 8)) == (4, 1, "平成")
    assert codes.era_of(date(1989, 1, 7)) == (3, 64, "昭和")
    assert codes.era_of(date(2019, 5, 1)) == (5, 1, "令和")
    assert codes.era_of(date(1868, 10, 22)) == (0, 1868, "")
    # the lifecycle's era table is this one
    assert lifecycle.ERAS is codes.ERAS and lifecycle.era_of is codes.era_of


@pytest.mark.parametrize("day", [date(1868, 10, 22), date(1800, 1, 1), date(2118, 1, 1)])
def test_dates_without_a_two_digit_era_year_are_refused(day: date) -> None:
    with pytest.raises(ValueError, match="Meiji|two digits"):
        codes.era_yymmdd(day)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((date(1980, 2, 17), 2035, "228"), "4 digits"),
        ((date(1980, 2, 17), 2035, "22X5"), "4 digits"),
        ((date(1980, 2, 17), 2035, "２２８５"), "4 digits"),  # full-width digits
        ((date(1980, 2, 17), 20350, "2285"), "four digits"),
        ((date(1860, 2, 17), 2035, "2285"), "Meiji"),
    ],
)
def test_verification_code_b_refuses(args: tuple, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        codes.verification_code_b(*args)


def test_verification_code_a_is_the_my_number() -> None:
    assert codes.verification_code_a("012345678903") == "012345678903"
    for bad in ("01234567890", "0123456789031", "01234567890A", "０１２３４５６７８９０３"):
        with pytest.raises(ValueError):
            codes.verification_code_a(bad)


@given(st.dates(min_value=date(1868, 10, 23), max_value=date(2117, 12, 31)))
def test_era_yymmdd_gives_back_the_date(day: date) -> None:
    text = codes.era_yymmdd(day)
    assert len(text) == 6 and text.isdigit()
    code, _year, _name = codes.era_of(day)
    start = next(s for c, s, _n in codes.ERAS if c == code)
    assert date(start.year + int(text[:2]) - 1, int(text[2:4]), int(text[4:])) == day
    # the next era starts later, and this one had started
    assert start <= day
    assert all(s > day for c, s, _n in codes.ERAS if c > code)


@given(st.dates(min_value=date(1868, 10, 24), max_value=date(2117, 12, 31)))
def test_the_day_before_an_era_starts_belongs_to_the_previous_one(day: date) -> None:
    code = codes.era_of(day)[0]
    before = codes.era_of(day - timedelta(days=1))[0]
    starts = {s for _c, s, _n in codes.ERAS}
    assert (before == code - 1) if day in starts else (before == code)


def test_security_codes() -> None:
    rng = Random(1)
    drawn = [codes.new_security_code(rng) for _ in range(5000)]
    assert all(codes.is_security_code(c) for c in drawn)
    assert any(c.startswith("0") for c in drawn)  # leading zeros are kept
    assert len(set(drawn)) > 3000  # spread over the 10000
    assert codes.is_security_code(codes.new_security_code())
    for bad in ("123", "12345", "12a4", "１２３４", ""):
        assert not codes.is_security_code(bad)
