"""Lifecycle rules: the seed examples as literal cases, the project's choices, properties."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jpki_sim.issuer import lifecycle as lc
from jpki_sim.issuer.lifecycle import HealthInsurance as HI

HANAKO = date(1993, 3, 31)


# ---------------------------------------------------------------- seed examples


def test_seed_003_card_2030_04_23_gives_certificate_2025_04_23() -> None:
    # a holder born on 23 April, card issued some day in 2020 after the birthday
    born = date(1980, 4, 23)
    issued = date(2020, 6, 1)
    assert lc.card_expiry(born, issued) == date(2030, 4, 23)
    assert lc.certificate_expiry(born, issued) == date(2025, 4, 23)


def test_seed_003_renewal_from_2025_01_24() -> None:
    assert lc.renewal_opens(date(2025, 4, 23)) == date(2025, 1, 24)


def test_seed_002_expiry_05_20_renewal_from_02_21() -> None:
    for year in (2023, 2024, 2025):
        assert lc.renewal_opens(date(year, 5, 20)) == date(year, 2, 21)


def test_seed_001_certificate_valid_to_5th_birthday_whatever_the_age() -> None:
    # 発行日から5回目の誕生日まで (年齢問わず): a child and an adult alike
    child = date(2015, 7, 1)
    assert lc.certificate_expiry(child, date(2020, 1, 10)) == date(2024, 7, 1)
    assert lc.certificate_expiry(HANAKO, date(2020, 1, 10)) == date(2024, 3, 31)


def test_seed_003_minor_card_is_5_years_and_cert_ends_with_it() -> None:
    born = date(2010, 4, 23)  # 10 years old at issue
    issued = date(2020, 6, 1)
    card = lc.card_expiry(born, issued)
    assert card == date(2025, 4, 23)
    assert lc.certificate_expiry(born, issued, card) == card


def test_seed_003_foreign_resident_card_ends_with_period_of_stay() -> None:
    stay = date(2023, 9, 30)
    assert lc.card_expiry(HANAKO, date(2020, 8, 27), stay) == stay
    card = lc.card_expiry(HANAKO, date(2020, 8, 27), stay)
    assert lc.certificate_expiry(HANAKO, date(2020, 8, 27), card) == stay


def test_seed_001_health_insurance_grace_is_3_months_from_end_of_expiry_month() -> None:
    expiry = date(2025, 4, 23)
    assert lc.grace_ends(expiry) == date(2025, 7, 31)
    states = {
        date(2025, 1, 23): HI.VALID,
        date(2025, 1, 24): HI.EXPIRING_SOON,
        date(2025, 4, 23): HI.EXPIRING_SOON,
        date(2025, 4, 24): HI.ELIGIBILITY_ONLY,
        date(2025, 7, 31): HI.ELIGIBILITY_ONLY,
        date(2025, 8, 1): HI.VOID,
    }
    for at, want in states.items():
        st_ = lc.health_insurance(expiry, at)
        assert st_.state is want, at
        assert st_.grace_ends == date(2025, 7, 31)
        assert st_.expiring_soon_from == date(2025, 1, 24)


def test_done_when_example_hanako_issued_2020_08_27() -> None:
    issued = date(2020, 8, 27)
    card = lc.card_expiry(HANAKO, issued)
    cert = lc.certificate_expiry(HANAKO, issued, card)
    assert card == date(2030, 3, 31)
    assert cert == date(2025, 3, 31)
    assert lc.renewal_opens(cert) == date(2025, 1, 1)  # 3 months before: 2024-12-31
    assert lc.grace_ends(cert) == date(2025, 6, 30)
    assert lc.notice_from(cert, card) == date(2025, 1, 1)


# ------------------------------------------------- choices where the seeds are silent


def test_issue_on_the_birthday_does_not_count_that_birthday() -> None:
    issued = date(2020, 3, 31)
    assert lc.certificate_expiry(HANAKO, issued) == date(2025, 3, 31)
    assert lc.card_expiry(HANAKO, issued) == date(2030, 3, 31)
    # the day before the birthday: that year's birthday is the first one after
    assert lc.certificate_expiry(HANAKO, date(2020, 3, 30)) == date(2024, 3, 31)


def test_29_february_birthday_is_28_february_in_common_years() -> None:
    leapling = date(2000, 2, 29)
    assert lc.birthday_in(leapling, 2023) == date(2023, 2, 28)
    assert lc.birthday_in(leapling, 2024) == date(2024, 2, 29)
    assert lc.certificate_expiry(leapling, date(2020, 6, 1)) == date(2025, 2, 28)
    assert lc.certificate_expiry(leapling, date(2023, 6, 1)) == date(2028, 2, 29)
    # issued on 28 February of a common year: that day is the birthday, not "after"
    assert lc.certificate_expiry(leapling, date(2023, 2, 28)) == date(2028, 2, 29)


def test_age_reckoning_for_29_february_holders() -> None:
    leapling = date(2004, 2, 29)
    # 18 is attained at the end of 2022-02-28: still 17 on that day, 18 on 1 March
    assert lc.age_on(leapling, date(2022, 2, 28)) == 17
    assert lc.age_on(leapling, date(2022, 3, 1)) == 18
    assert lc.age_on(leapling, date(2024, 2, 29)) == 20
    assert lc.age_on(HANAKO, date(2011, 3, 30)) == 17
    assert lc.age_on(HANAKO, date(2011, 3, 31)) == 18


def test_minor_rule_uses_age_on_the_issue_day() -> None:
    # 18th birthday on the issue day: an adult card (10 years)
    assert lc.card_expiry(HANAKO, date(2011, 3, 31)) == date(2021, 3, 31)
    # the day before: a minor card (5 years)
    assert lc.card_expiry(HANAKO, date(2011, 3, 30)) == date(2015, 3, 31)


def test_three_months_before_a_month_end_clamps_to_the_last_day() -> None:
    assert lc.three_months_before(date(2025, 5, 31)) == date(2025, 2, 28)
    assert lc.renewal_opens(date(2025, 5, 31)) == date(2025, 3, 1)
    assert lc.three_months_before(date(2024, 5, 31)) == date(2024, 2, 29)
    assert lc.renewal_opens(date(2024, 5, 31)) == date(2024, 3, 1)
    assert lc.renewal_opens(date(2025, 5, 30)) == date(2025, 3, 1)
    assert lc.renewal_opens(date(2025, 12, 31)) == date(2025, 10, 1)
    assert lc.renewal_opens(date(2025, 3, 31)) == date(2025, 1, 1)


def test_expiry_instant_is_the_end_of_the_day_in_japan() -> None:
    expiry = date(2025, 3, 31)
    assert lc.expires_at(expiry) == datetime(2025, 3, 31, 14, 59, 59, tzinfo=timezone.utc)
    assert not lc.is_expired(expiry, datetime(2025, 3, 31, 14, 59, 59, tzinfo=timezone.utc))
    assert lc.is_expired(expiry, datetime(2025, 3, 31, 15, 0, 0, tzinfo=timezone.utc))
    assert not lc.is_expired(expiry, date(2025, 3, 31))
    assert lc.is_expired(expiry, date(2025, 4, 1))
    assert lc.valid_from(date(2020, 8, 27)) == datetime(2020, 8, 26, 15, 0, tzinfo=timezone.utc)


def test_grace_end_is_always_a_month_end() -> None:
    assert lc.grace_ends(date(2025, 3, 31)) == date(2025, 6, 30)
    assert lc.grace_ends(date(2025, 11, 1)) == date(2026, 2, 28)
    assert lc.grace_ends(date(2023, 11, 15)) == date(2024, 2, 29)


def test_no_or_revoked_auth_certificate_is_void_for_health_insurance() -> None:
    assert lc.health_insurance(None, date(2025, 1, 1)).state is HI.VOID
    assert lc.health_insurance(date(2029, 1, 1), date(2025, 1, 1), revoked=True).state is HI.VOID


def test_renewal_window_states() -> None:
    expiry = date(2025, 4, 23)
    assert lc.renewal_window(expiry, date(2025, 1, 23)) is lc.Window.NOT_YET
    assert lc.renewal_window(expiry, date(2025, 1, 24)) is lc.Window.OPEN
    assert lc.renewal_window(expiry, date(2025, 4, 23)) is lc.Window.OPEN
    assert lc.renewal_window(expiry, date(2025, 4, 24)) is lc.Window.EXPIRED


def test_stay_ending_before_issue_is_refused() -> None:
    with pytest.raises(ValueError):
        lc.card_expiry(HANAKO, date(2020, 8, 27), date(2020, 8, 1))
    with pytest.raises(ValueError):
        lc.card_expiry(HANAKO, date(1990, 1, 1))


def test_fixed_clock_is_in_japan_time() -> None:
    clock = lc.FixedClock(datetime(2025, 3, 31, 15, 30, tzinfo=timezone.utc))
    assert clock.today() == date(2025, 4, 1)
    assert lc.FixedClock(date(2025, 3, 31)).today() == date(2025, 3, 31)
    assert lc.SystemClock().now().utcoffset() == timedelta(hours=9)


def test_era_codes() -> None:
    assert lc.era_of(HANAKO) == (4, 5, "平成")  # 平成5年3月31日, as in the seeds
    assert lc.era_of(date(2020, 6, 1)) == (5, 2, "令和")  # 令和2年
    assert lc.era_of(date(1989, 1, 7))[0] == 3


# ---------------------------------------------------------------- properties

births = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31))


@st.composite
def birth_and_issue(draw: st.DrawFn) -> tuple[date, date]:
    born = draw(births)
    issued = draw(st.dates(min_value=born, max_value=date(2060, 12, 31)))
    return born, issued


def is_birthday(born: date, d: date) -> bool:
    return lc.birthday_in(born, d.year) == d


@given(birth_and_issue())
def test_certificate_expiry_is_the_5th_birthday_after_issue(bi: tuple[date, date]) -> None:
    born, issued = bi
    expiry = lc.certificate_expiry(born, issued)
    assert is_birthday(born, expiry)
    assert expiry > issued
    # exactly five birthdays in (issued, expiry]
    count = sum(
        1 for y in range(issued.year, expiry.year + 1) if issued < lc.birthday_in(born, y) <= expiry
    )
    assert count == 5
    assert 4 <= (expiry - issued).days / 365.2425 <= 5.01


@given(birth_and_issue(), st.none() | st.integers(min_value=0, max_value=4000))
def test_card_expiry_and_certificate_never_outlives_card(
    bi: tuple[date, date], stay_days: int | None
) -> None:
    born, issued = bi
    stay = issued + timedelta(days=stay_days) if stay_days is not None else None
    card = lc.card_expiry(born, issued, stay)
    cert = lc.certificate_expiry(born, issued, card)
    assert cert <= card
    assert issued <= card
    if stay is not None and card == stay:
        assert stay <= lc.nth_birthday_after(born, issued, 10)
    else:
        assert is_birthday(born, card)
        years = 5 if lc.age_on(born, issued) < 18 else 10
        assert card == lc.nth_birthday_after(born, issued, years)


@given(st.dates(min_value=date(1950, 1, 1), max_value=date(2090, 12, 31)))
def test_renewal_opens_before_expiry_about_three_months(expiry: date) -> None:
    opens = lc.renewal_opens(expiry)
    assert opens <= expiry
    assert 85 <= (expiry - opens).days <= 92
    before = opens - timedelta(days=1)
    # the day before it opens is "three months before expiry", clamped to a month end
    last = calendar.monthrange(before.year, before.month)[1]
    assert (before.year * 12 + before.month + 3) == (expiry.year * 12 + expiry.month)
    assert before.day == min(expiry.day, last)
    assert lc.renewal_window(expiry, before) is lc.Window.NOT_YET
    assert lc.renewal_window(expiry, opens) is lc.Window.OPEN


@given(
    st.dates(min_value=date(1950, 1, 1), max_value=date(2090, 12, 31)),
    st.dates(min_value=date(1950, 1, 1), max_value=date(2091, 12, 31)),
)
def test_health_insurance_states_follow_each_other(expiry: date, at: date) -> None:
    s = lc.health_insurance(expiry, at)
    assert s.grace_ends is not None and s.expiring_soon_from is not None
    assert s.grace_ends.day == calendar.monthrange(s.grace_ends.year, s.grace_ends.month)[1]
    assert 89 <= (s.grace_ends - expiry).days <= 122
    order = [HI.VALID, HI.EXPIRING_SOON, HI.ELIGIBILITY_ONLY, HI.VOID]
    later = lc.health_insurance(expiry, at + timedelta(days=1))
    assert order.index(later.state) >= order.index(s.state)
    assert (s.state is HI.ELIGIBILITY_ONLY) == (expiry < at <= s.grace_ends)


@given(st.dates(), st.integers(min_value=-240, max_value=240))
def test_add_months_clamps_and_round_trips_when_day_exists(d: date, months: int) -> None:
    try:
        moved = lc.add_months(d, months)
    except ValueError:
        return  # out of the date range
    assert (moved.year * 12 + moved.month) - (d.year * 12 + d.month) == months
    assert moved.day == min(d.day, calendar.monthrange(moved.year, moved.month)[1])
