"""The codes printed on (or derived from) the card face: era dates, the security code, 照合番号.

Pure functions; the rules and their sources are in ``docs/protocol.md`` (the
card-face codes section):

- a Japanese era begins on its first day (that day is year 1 of the new era) and the
  era year is the Gregorian year minus the era's first year plus one;
- the birth-date key of the card-surface application (key 0011) is the birth date as
  the era ``YYMMDD`` (six digits, no era letter);
- 照合番号A is the 12-digit My Number itself;
- 照合番号B is 14 digits: the birth date as era ``YYMMDD``, the Gregorian year the
  card expires (``YYYY``) and the 4-digit security code. soltia48/myna-card confirmed
  it on a card: born 1980-02-17 (昭和55), card expiring in 2035, security code 2285:
  ``55021720352285``;
- the security code is 4 decimal digits, drawn uniformly at issue (**Chosen**).
"""

from __future__ import annotations

import re
import secrets
from datetime import date
from random import Random

__all__ = [
    "ERAS",
    "birthdate_code",
    "era_of",
    "era_yymmdd",
    "is_security_code",
    "new_security_code",
    "verification_code_a",
    "verification_code_b",
]

#: Japanese eras, newest first: (code used in JPKI data, first day, name).
#: The first days are those of the era-change proclamations (明治: 1868-10-23, the
#: Gregorian day of 慶応4年9月8日); the code is the JPKI certificate's era digit.
ERAS: tuple[tuple[int, date, str], ...] = (
    (5, date(2019, 5, 1), "令和"),
    (4, date(1989, 1, 8), "平成"),
    (3, date(1926, 12, 25), "昭和"),
    (2, date(1912, 7, 30), "大正"),
    (1, date(1868, 10, 23), "明治"),
)

SECURITY_CODE_DIGITS = 4
_DIGITS = re.compile(r"[0-9]+")


def era_of(d: date) -> tuple[int, int, str]:
    """(era code, year of the era, era name) of ``d``; (0, year, "") before Meiji.

    The first day of an era is year 1 of it: 1989-01-07 is 昭和64, 1989-01-08 平成1.
    """
    for code, start, name in ERAS:
        if d >= start:
            return code, d.year - start.year + 1, name
    return 0, d.year, ""


def era_yymmdd(d: date) -> str:
    """``d`` as six digits: era year, month, day (1980-02-17 is ``550217``, 昭和55).

    A date before the Meiji era has no era year and is refused (ValueError).
    """
    code, year, _ = era_of(d)
    if code == 0:
        raise ValueError(f"{d} is before the Meiji era: it has no Japanese era year")
    if year > 99:  # 令和100 is in 2118; the code has two digits for the year
        raise ValueError(f"era year {year} of {d} does not fit in two digits")
    return f"{year:02d}{d.month:02d}{d.day:02d}"


def birthdate_code(born: date) -> str:
    """The value of the card-surface application's birth-date key (0011): era ``YYMMDD``."""
    return era_yymmdd(born)


def verification_code_a(my_number: str) -> str:
    """照合番号A: the My Number itself (12 ASCII digits; the check digit is the issuer's)."""
    if len(my_number) != 12 or not my_number.isascii() or not _DIGITS.fullmatch(my_number):
        raise ValueError("照合番号A is the 12-digit My Number")
    return my_number


def is_security_code(code: str) -> bool:
    return len(code) == SECURITY_CODE_DIGITS and code.isascii() and bool(_DIGITS.fullmatch(code))


def verification_code_b(born: date, expires: date | int, security_code: str) -> str:
    """照合番号B: era ``YYMMDD`` of birth + the card's expiry year ``YYYY`` + the security code.

    ``expires`` is the card's date of expiry (or its year). 14 ASCII digits.
    """
    if not is_security_code(security_code):
        raise ValueError("the security code is 4 digits")
    year = expires if isinstance(expires, int) else expires.year
    if not 1000 <= year <= 9999:
        raise ValueError(f"expiry year {year} is not four digits")
    return f"{era_yymmdd(born)}{year:04d}{security_code}"


def new_security_code(rng: Random | None = None) -> str:
    """A fresh 4-digit security code, uniform over 0000-9999 (the system's CSPRNG by default)."""
    n = rng.randrange(10**SECURITY_CODE_DIGITS) if rng is not None else secrets.randbelow(10**4)
    return f"{n:0{SECURITY_CODE_DIGITS}d}"
