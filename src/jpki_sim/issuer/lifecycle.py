"""The lifecycle rules of the My Number card and its JPKI certificates.

Pure functions on dates, plus an injectable clock. Every rule here is stated in
``docs/protocol.md`` (the lifecycle section) with its source (the J-LIS and municipal
leaflets) or, where the sources are silent, the choice this project made:

- a certificate is valid until the holder's 5th birthday *after* its issue day;
  a birthday falling on the issue day itself is not "after" it;
- the card until the 10th birthday after issue (the 5th for a holder under 18 at
  issue), or the end of a foreign resident's period of stay when that comes first;
- a certificate never outlives its card;
- someone born on 29 February has the birthday on 28 February in common years;
- "three months before" a day that the target month lacks is that month's last day;
- a date of expiry is valid to its very end: 23:59:59 Japan time (14:59:59Z);
- renewal opens on the day after the date three months before expiry;
- renewed inside that window (fewer than three months left), a certificate runs
  to the 6th birthday after the renewal day and a card to the 11th (the 6th for a
  holder under 18), so renewing on time never costs the holder a year;
- the health-insurance grace after a certificate's expiry runs to the end of the
  third month after the month of expiry, and never past the card's own expiry.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Protocol

# the one era table lives with the card-face codes (照合番号B needs it too)
from jpki_sim.profiles.jpki.codes import ERAS, era_of  # noqa: F401  (re-exported)

#: the first day an era code exists for (明治, from the day the era was proclaimed):
#: the earliest birth date a card takes
FIRST_ERA_DAY = ERAS[-1][1]

#: Japan Standard Time; Japan has no daylight saving time
JST = timezone(timedelta(hours=9), "JST")

#: years from issue to a certificate's expiry (5th birthday after issue)
CERT_YEARS = 5
#: years from issue to the card's expiry (10th birthday after issue) ...
CARD_YEARS = 10
#: ... or the 5th birthday for a holder younger than this at issue
CARD_YEARS_MINOR = 5
MINOR_UNTIL_AGE = 18
#: a renewal inside the window (fewer than 3 months left) counts one birthday more:
#: certificates to the 6th, cards to the 11th (a minor's to the 6th)
IN_WINDOW_EXTRA_YEARS = 1
#: renewal opens (and the expiry notices start) this many months before expiry
RENEWAL_MONTHS = 3
#: the health-insurance grace after expiry, counted from the end of the expiry month
GRACE_MONTHS = 3

#: the last second of a day of expiry (X.509 times have whole seconds)
END_OF_DAY = time(23, 59, 59)


# ---------------------------------------------------------------- the clock


class Clock(Protocol):
    """Where "now" comes from; tests pass a :class:`FixedClock`."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in Japan time."""
        ...

    def today(self) -> date:
        """The current date in Japan (the card's dates are Japanese calendar days)."""
        ...


class SystemClock:
    """The machine's clock, read in Japan time."""

    def now(self) -> datetime:
        return datetime.now(JST)

    def today(self) -> date:
        return self.now().date()


class FixedClock:
    """A clock stopped at one instant. A bare date means noon Japan time that day."""

    def __init__(self, when: date | datetime) -> None:
        if isinstance(when, datetime):
            self._now = when if when.tzinfo else when.replace(tzinfo=JST)
            self._now = self._now.astimezone(JST)
        else:
            self._now = datetime.combine(when, time(12, 0), JST)

    def now(self) -> datetime:
        return self._now

    def today(self) -> date:
        return self._now.date()

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"


def clock_at(when: date | None) -> Clock:
    """A fixed clock at ``when``, or the system clock when ``when`` is None."""
    return SystemClock() if when is None else FixedClock(when)


# ---------------------------------------------------------------- calendar helpers


def last_day_of_month(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def add_months(d: date, months: int) -> date:
    """``d`` moved by whole months; a day the target month lacks becomes its last day.

    2025-05-31 minus 3 months is 2025-02-28 (2024-02-29 in a leap year), the way
    the Civil Code (art. 143) ends a period in a month without the matching day.
    """
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last))


def birthday_in(born: date, year: int) -> date:
    """The holder's birthday in ``year``: 29 February becomes 28 February in common years."""
    if born.month == 2 and born.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return born.replace(year=year)


def nth_birthday_after(born: date, day: date, n: int) -> date:
    """The ``n``-th birthday strictly after ``day`` (a birthday on ``day`` is not counted)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    first_year = day.year if birthday_in(born, day.year) > day else day.year + 1
    return birthday_in(born, first_year + n - 1)


def age_on(born: date, day: date) -> int:
    """The holder's age on ``day`` by Japanese age reckoning.

    A person attains each age at the end of the day before the birthday, so on
    the birthday itself the new age holds. Someone born on 29 February attains
    it at the end of 28 February in common years, i.e. holds it from 1 March.
    """
    if day < born:
        raise ValueError("the day is before the birth date")
    years = day.year - born.year
    if born.month == 2 and born.day == 29 and not calendar.isleap(day.year):
        anniversary = date(day.year, 3, 1)
    else:
        anniversary = born.replace(year=day.year)
    return years if day >= anniversary else years - 1


# ---------------------------------------------------------------- validity


def certificate_expiry(
    born: date, issued: date, card_expires: date | None = None, *, in_window: bool = False
) -> date:
    """Last valid day of a JPKI certificate issued on ``issued``.

    The 5th birthday after issue, whatever the holder's age; the 6th when it
    renews a certificate inside its renewal window (``in_window``); never
    after the card's own expiry.
    """
    years = CERT_YEARS + (IN_WINDOW_EXTRA_YEARS if in_window else 0)
    expiry = nth_birthday_after(born, issued, years)
    if card_expires is not None and card_expires < expiry:
        return card_expires
    return expiry


def in_renewal_window(expiry: date, day: date) -> bool:
    """True when ``day`` is inside the renewal window of something expiring on ``expiry``.

    That is, fewer than three months are left (有効期間が満了する日までの期間が
    3月未満): from the day renewal opens through the day of expiry.
    """
    return renewal_opens(expiry) <= day <= expiry


def card_expiry(
    born: date, issued: date, stay_until: date | None = None, *, in_window: bool = False
) -> date:
    """Last valid day of a card issued on ``issued``.

    The 10th birthday after issue; the 5th for a holder under 18 on the issue
    day; one birthday more (11th, 6th) for a card that renews one inside its
    renewal window (``in_window``); for a foreign resident with a fixed period
    of stay, the end of that period when it comes first.
    """
    if issued < born:
        raise ValueError("a card cannot be issued before its holder is born")
    years = CARD_YEARS_MINOR if age_on(born, issued) < MINOR_UNTIL_AGE else CARD_YEARS
    years += IN_WINDOW_EXTRA_YEARS if in_window else 0
    expiry = nth_birthday_after(born, issued, years)
    if stay_until is not None:
        if stay_until < issued:
            raise ValueError("the period of stay ends before the issue date")
        expiry = min(expiry, stay_until)
    return expiry


def expires_at(expiry: date) -> datetime:
    """The last instant of a day of expiry: 23:59:59 Japan time (14:59:59Z)."""
    return datetime.combine(expiry, END_OF_DAY, JST)


def valid_from(issued: date) -> datetime:
    """The first instant of a day of issue in Japan time (a certificate's notBefore)."""
    return datetime.combine(issued, time(0, 0, 0), JST)


def is_expired(expiry: date, at: date | datetime) -> bool:
    """Expired on a day after ``expiry``, or at an instant past its 23:59:59 JST."""
    if isinstance(at, datetime):
        return at > expires_at(expiry)
    return at > expiry


# ---------------------------------------------------------------- renewal and notices


def three_months_before(expiry: date) -> date:
    return add_months(expiry, -RENEWAL_MONTHS)


def renewal_opens(expiry: date) -> date:
    """First day renewal is accepted: the day after the date three months before expiry."""
    return three_months_before(expiry) + timedelta(days=1)


def notice_from(*expiries: date | None) -> date:
    """First day of the expiry-notice period for the earliest of ``expiries``.

    J-LIS mails the notice "about 2 to 3 months before" the earlier expiry, and
    clinic readers and the portal warn "from 3 months before": both read here as
    the same day renewal opens.
    """
    dates = [d for d in expiries if d is not None]
    if not dates:
        raise ValueError("no expiry date given")
    return renewal_opens(min(dates))


class Window(str, Enum):
    """Where a date stands relative to a renewal window."""

    NOT_YET = "not_yet"
    OPEN = "open"
    EXPIRED = "expired"  # renewal becomes re-issue (再発行)


def renewal_window(expiry: date, at: date) -> Window:
    if at > expiry:
        return Window.EXPIRED
    if at >= renewal_opens(expiry):
        return Window.OPEN
    return Window.NOT_YET


# ---------------------------------------------------------------- health insurance


class HealthInsurance(str, Enum):
    """What a clinic's face-recognition reader does with the card (seed 001)."""

    NOT_YET_VALID = "not_yet_valid"  # a date before the certificate was issued
    VALID = "valid"
    EXPIRING_SOON = "expiring_soon"  # "expires within 3 months" notice; everything works
    ELIGIBILITY_ONLY = "eligibility_only"  # expired: eligibility only, no medical history
    VOID = "void"  # "certificate is void; come to the counter"


def grace_ends(expiry: date) -> date:
    """Last day of the eligibility-only grace: 3 months counted from the end of the expiry month.

    Counted the Civil Code way (the period starts the next day, the 1st of the
    following month), so it always ends on a month's last day: expiry
    2025-04-23 gives 2025-07-31.
    """
    return last_day_of_month(*_month_plus(expiry.year, expiry.month, GRACE_MONTHS))


def _month_plus(year: int, month: int, months: int) -> tuple[int, int]:
    y, m0 = divmod(year * 12 + month - 1 + months, 12)
    return y, m0 + 1


@dataclass(frozen=True)
class HealthInsuranceStatus:
    state: HealthInsurance
    #: the auth certificate's expiry the state is computed from (None: no usable cert)
    expiry: date | None
    expiring_soon_from: date | None
    grace_ends: date | None


def health_insurance(
    auth_expiry: date | None,
    at: date,
    *,
    revoked: bool = False,
    card_expires: date | None = None,
    valid_from: date | None = None,
) -> HealthInsuranceStatus:
    """The health-insurance state on ``at``, given the auth certificate's expiry.

    A card without a user-authentication certificate, or with a revoked one,
    cannot be used as a health-insurance card at all: ``void``. The
    eligibility-only grace never outlives the card (``card_expires``): an
    expired card is void. Before ``valid_from`` (the certificate's first day)
    the state is ``not_yet_valid``.
    """
    if auth_expiry is None or revoked:
        return HealthInsuranceStatus(HealthInsurance.VOID, auth_expiry, None, None)
    soon = renewal_opens(auth_expiry)
    grace = grace_ends(auth_expiry)
    if card_expires is not None:
        grace = min(grace, max(card_expires, auth_expiry))
    if valid_from is not None and at < valid_from:
        return HealthInsuranceStatus(HealthInsurance.NOT_YET_VALID, auth_expiry, soon, grace)
    if at < soon:
        state = HealthInsurance.VALID
    elif at <= auth_expiry:
        state = HealthInsurance.EXPIRING_SOON
    elif at <= grace:
        state = HealthInsurance.ELIGIBILITY_ONLY
    else:
        state = HealthInsurance.VOID
    return HealthInsuranceStatus(state, auth_expiry, soon, grace)
