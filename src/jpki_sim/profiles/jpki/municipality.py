"""Issuing municipalities: the 5-digit 全国地方公共団体コード and the name.

The card keeps the code of the municipality that issued it (共通AP EF 0001,
GET DATA 00F0, the application ID's first five digits); the name is ours, for
``card status``. Codes are JIS X 0402 without the check digit: two digits of
prefecture (01 Hokkaido .. 47 Okinawa) and three of municipality. Only a few
well-known ones are named here; any other code is taken with a name the user
gives (``card issue --municipality CODE --municipality-name NAME``).
"""

from __future__ import annotations

import re

#: the default: Otaru, the city of the seeds' leaflet (and of the default holder's address)
DEFAULT_CODE = "01203"

KNOWN: dict[str, str] = {
    "01100": "札幌市",
    "01203": "小樽市",
    "04100": "仙台市",
    "13101": "千代田区",
    "13104": "新宿区",
    "14100": "横浜市",
    "23100": "名古屋市",
    "26100": "京都市",
    "27100": "大阪市",
    "28100": "神戸市",
    "34100": "広島市",
    "40130": "福岡市",
    "47201": "那覇市",
}


def check_code(code: str) -> str:
    """``code`` when it is a 5-digit local government code, else ValueError (one line)."""
    if not re.fullmatch(r"[0-9]{5}", code):
        raise ValueError(f"a municipality code has 5 digits (JIS X 0402), got {code!r}")
    if not 1 <= int(code[:2]) <= 47:
        raise ValueError(f"municipality code {code}: the first two digits are a prefecture, 01-47")
    return code


def name_of(code: str) -> str | None:
    """The name of a known municipality code, else None."""
    return KNOWN.get(code)
