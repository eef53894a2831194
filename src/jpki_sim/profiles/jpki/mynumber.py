"""The My Number (個人番号): 12 digits, the last a check digit.

Check digit rule (ministerial ordinance on the My Number): with P(n) the n-th of
the first eleven digits counted from the right and Q(n) = n+1 for n <= 6,
n-5 for n >= 7, the check digit is 0 when sum(P*Q) mod 11 <= 1, else
11 - (sum mod 11).
"""

from __future__ import annotations


def check_digit(first11: str) -> int:
    if len(first11) != 11 or not first11.isascii() or not first11.isdigit():
        raise ValueError("the first 11 digits of a My Number are needed")
    total = 0
    for n in range(1, 12):
        p = int(first11[11 - n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    r = total % 11
    return 0 if r <= 1 else 11 - r


def is_valid(number: str) -> bool:
    return (
        len(number) == 12
        and number.isascii()
        and number.isdigit()
        and check_digit(number[:11]) == int(number[11])
    )


def normalize(text: str) -> str:
    """Strip spaces and hyphens; raise ValueError with a clear message if invalid."""
    digits = text.replace(" ", "").replace("-", "").replace("\u3000", "")
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"a My Number has 12 digits, got {text!r}")
    if not is_valid(digits):
        want = check_digit(digits[:11])
        raise ValueError(
            f"My Number {digits} fails its check digit (the last digit should be {want})"
        )
    return digits


def complete(first11: str) -> str:
    """Append the check digit to 11 digits."""
    return first11 + str(check_digit(first11))
