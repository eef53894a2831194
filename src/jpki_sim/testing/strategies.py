"""hypothesis strategies for property tests of JPKI reader software and of the card.

Exported for users' own tests::

    from hypothesis import given
    from jpki_sim import strategies as jst

    @given(jst.command_apdus())
    def test_my_reader_survives(apdu): ...

Every strategy generates what its name says: ``tests/test_strategies.py`` checks
that valid APDUs round-trip through both parsers, malformed ones are refused by
both, valid PINs pass :data:`jpki_sim.jpki.PIN_POLICIES` and invalid ones do not,
My Numbers pass (or fail) their check digit.
"""

from __future__ import annotations

from datetime import date

from hypothesis import strategies as st

from jpki_sim.iso7816.apdu import EXT_MAX_NC, EXT_MAX_NE, SHORT_MAX_NC, SHORT_MAX_NE, CommandApdu
from jpki_sim.profiles.jpki import mynumber
from jpki_sim.profiles.jpki.ids import PIN_POLICIES
from jpki_sim.profiles.jpki.state import Identity

__all__ = [
    "APDU_CASES",
    "MALFORMED_KINDS",
    "addresses",
    "command_apdus",
    "dates",
    "identities",
    "malformed_apdus",
    "my_numbers",
    "names",
    "pins",
    "raw_command_apdus",
]

APDU_CASES = ("1", "2S", "3S", "4S", "2E", "3E", "4E")

_bytes = st.integers(0, 0xFF)


@st.composite
def command_apdus(
    draw: st.DrawFn,
    case: str | None = None,
    cla: int | None = None,
    ins: int | None = None,
    max_data: int = 512,
) -> CommandApdu:
    """Well-formed command APDUs of ISO 7816-3 ``case`` (any case when None).

    ``max_data`` bounds the data of extended cases to keep examples small; the
    extended Ne covers the whole 1..65536 range, and ``max_data=65535`` reaches
    the largest Nc.
    """
    if case is None:
        case = draw(st.sampled_from(APDU_CASES))
    if case not in APDU_CASES:
        raise ValueError(f"unknown APDU case {case!r}; one of {', '.join(APDU_CASES)}")
    header = (
        draw(_bytes) if cla is None else cla,
        draw(_bytes) if ins is None else ins,
        draw(_bytes),
        draw(_bytes),
    )
    extended = case.endswith("E")
    max_nc = min(max_data, EXT_MAX_NC) if extended else SHORT_MAX_NC
    max_ne = EXT_MAX_NE if extended else SHORT_MAX_NE
    data = b""
    ne: int | None = None
    if case[0] in "34":
        data = draw(st.binary(min_size=1, max_size=max(1, max_nc)))
    if case[0] in "24":
        # both ends of the range matter: Le 00 / 0000 encodes the maximum
        ne = draw(st.one_of(st.integers(1, max_ne), st.sampled_from((1, max_ne))))
    return CommandApdu(*header, data, ne, extended)


def raw_command_apdus(case: str | None = None, max_data: int = 512) -> st.SearchStrategy[bytes]:
    """Bytes of well-formed command APDUs (see :func:`command_apdus`)."""
    return command_apdus(case, max_data=max_data).map(CommandApdu.to_bytes)


#: the ways :func:`malformed_apdus` breaks an APDU, each malformed under ISO 7816-3
MALFORMED_KINDS = (
    "too-short",  # fewer than 4 bytes: no complete header
    "short-lc-mismatch",  # short Lc != 0 and the body is neither Lc nor Lc+1 bytes
    "extended-truncated",  # 00 after the header, then fewer than 2 length bytes
    "extended-lc-zero",  # extended Lc of 0000 followed by more bytes
    "extended-lc-mismatch",  # extended Lc and a body of neither Lc nor Lc+2 bytes
)


@st.composite
def malformed_apdus(draw: st.DrawFn, kind: str | None = None) -> bytes:
    """Byte strings no ISO 7816-3 case decodes; ``kind`` from :data:`MALFORMED_KINDS`."""
    if kind is None:
        kind = draw(st.sampled_from(MALFORMED_KINDS))
    header = draw(st.binary(min_size=4, max_size=4))
    if kind == "too-short":
        return draw(st.binary(max_size=3))
    if kind == "short-lc-mismatch":
        lc = draw(st.integers(1, 0xFF))
        # body after Lc: any size from 1 up except Lc (case 3S) and Lc+1 (case 4S)
        size = draw(st.integers(1, lc + 8).filter(lambda k: k not in (lc, lc + 1)))
        return header + bytes((lc,)) + draw(st.binary(min_size=size, max_size=size))
    if kind == "extended-truncated":
        return header + b"\x00" + draw(st.binary(min_size=1, max_size=1))
    if kind == "extended-lc-zero":
        return header + b"\x00\x00\x00" + draw(st.binary(min_size=1, max_size=16))
    if kind == "extended-lc-mismatch":
        lc = draw(st.one_of(st.integers(1, 300), st.integers(1, EXT_MAX_NC)))
        # body after the 3 length bytes: never Lc (3E) nor Lc+2 (4E); at least 1,
        # since a bare 00 Le1 Le2 is a valid case 2E
        size = draw(
            st.one_of(
                st.integers(1, min(lc + 8, 400)), st.sampled_from((lc - 1, lc + 1, lc + 3))
            ).filter(lambda k: k >= 1 and k not in (lc, lc + 2))
        )
        return header + b"\x00" + lc.to_bytes(2, "big") + bytes(size)
    raise ValueError(f"unknown malformed kind {kind!r}; one of {', '.join(MALFORMED_KINDS)}")


# ---------------------------------------------------------------- PINs

_DIGITS = "0123456789"
_SIGN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _policy_accepts(kind: str, pin: str) -> bool:
    try:
        PIN_POLICIES[kind].check(pin)
    except ValueError:
        return False
    return True


def pins(kind: str, valid: bool = True) -> st.SearchStrategy[str]:
    """PINs of ``kind`` ("auth", "sign", "helper") that the card's policy accepts, or
    (``valid=False``) near misses it refuses: wrong length, letters in a numeric
    PIN, lowercase or symbols in the signature password, full-width digits, empty.
    """
    if kind not in PIN_POLICIES:
        raise ValueError(f"unknown PIN kind {kind!r}; one of {', '.join(PIN_POLICIES)}")
    policy = PIN_POLICIES[kind]
    alphabet = _SIGN_ALPHABET if kind == "sign" else _DIGITS
    if valid:
        return st.text(alphabet, min_size=policy.min_len, max_size=policy.max_len)
    near_misses = st.one_of(
        st.just(""),
        # right alphabet, wrong length
        st.text(alphabet, max_size=policy.min_len - 1),
        st.text(alphabet, min_size=policy.max_len + 1, max_size=policy.max_len + 8),
        # right length, a character from outside the alphabet
        st.tuples(
            st.text(alphabet, min_size=policy.min_len - 1, max_size=policy.min_len - 1),
            st.sampled_from("abcxyz-_ #\u3000１Ａ" + ("" if kind == "sign" else "ABZ")),
            st.integers(0, policy.min_len - 1),
        ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
        # anything at all
        st.text(max_size=20),
    )
    return near_misses.filter(lambda p: not _policy_accepts(kind, p))


# ---------------------------------------------------------------- people

_FAMILY = (
    "番号", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林",
    "加藤", "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "長谷川", "斎藤",
    "齋藤", "髙橋", "渡邊", "五十嵐", "勅使河原",
)  # fmt: skip
_GIVEN = (
    "花子", "太郎", "一郎", "陽菜", "結衣", "蓮", "湊", "葵", "大翔", "さくら",
    "ひなた", "ユウキ", "美咲", "翔太", "健", "由美子", "誠", "莉子", "陽向", "惠",
)  # fmt: skip
_PREFECTURES = (
    "北海道", "青森県", "宮城県", "東京都", "神奈川県", "埼玉県", "千葉県", "愛知県",
    "大阪府", "京都府", "兵庫県", "広島県", "福岡県", "沖縄県",
)  # fmt: skip
_MUNICIPALITIES = (
    "〇〇市", "△△市", "□□町", "札幌市中央区", "横浜市港北区", "千代田区", "越谷市",
    "小樽市", "清瀬市", "那覇市", "中頭郡北谷町",
)  # fmt: skip
_TOWNS = ("本町", "中央", "栄町", "緑が丘", "旭町", "東雲", "桜木町", "大字上野")
_BUILDINGS = (
    "", "", "", "ハイツ本町１０１号室", "グランドメゾン中央第二マンション１２０３号室",
    "サンシャインコーポラス東雲弐番館東棟最上階角部屋９９９号室", "〇〇荘２号",
)  # fmt: skip
_FULLWIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def names() -> st.SearchStrategy[str]:
    """Japanese names as the card stores them: family name, U+3000, given name."""
    return st.builds(
        lambda f, g: f"{f}\u3000{g}", st.sampled_from(_FAMILY), st.sampled_from(_GIVEN)
    )


def addresses() -> st.SearchStrategy[str]:
    """Japanese addresses with full-width block numbers, some long enough that the
    card needs its two-byte length form (128 bytes and more in UTF-8)."""

    def build(pref: str, city: str, town: str, a: int, b: int, c: int, building: str) -> str:
        return f"{pref}{city}{town}{f'{a}-{b}-{c}'.translate(_FULLWIDTH)}{building}"

    return st.builds(
        build,
        st.sampled_from(_PREFECTURES),
        st.sampled_from(_MUNICIPALITIES),
        st.sampled_from(_TOWNS),
        st.integers(1, 9),
        st.integers(1, 40),
        st.integers(1, 30),
        st.sampled_from(_BUILDINGS),
    )


def dates(
    min_value: date = date(1900, 1, 1), max_value: date = date(2099, 12, 31)
) -> st.SearchStrategy[date]:
    """Calendar dates (Gregorian), 1900-2099 unless bounded."""
    return st.dates(min_value=min_value, max_value=max_value)


def my_numbers(valid: bool = True) -> st.SearchStrategy[str]:
    """12-digit My Numbers whose check digit is right, or (``valid=False``) wrong."""
    first11 = st.text(_DIGITS, min_size=11, max_size=11)
    if valid:
        return first11.map(mynumber.complete)
    return st.tuples(first11, st.integers(1, 9)).map(
        lambda t: t[0] + str((mynumber.check_digit(t[0]) + t[1]) % 10)
    )


def identities(
    birthdates: st.SearchStrategy[date] | None = None,
) -> st.SearchStrategy[Identity]:
    """Card holders: name, birth date, ISO 5218 sex, address and a valid My Number."""
    return st.builds(
        Identity,
        name=names(),
        birthdate=birthdates if birthdates is not None else dates(max_value=date(2025, 12, 31)),
        sex=st.sampled_from(("1", "2", "9")),
        address=addresses(),
        my_number=my_numbers(),
        stay_until=st.none(),
    )


def card_profiles() -> st.SearchStrategy[str]:
    """Names of the bundled card profiles (``default``, ``minor``, ``expired``, ...).

    Each name is accepted by the ``jpki_profile`` marker of the pytest plugin and by
    :func:`jpki_sim.issuer.presets.state`.
    """
    from jpki_sim.issuer.presets import PRESETS as PROFILES

    return st.sampled_from(sorted(PROFILES))


def card_specs(
    issued: st.SearchStrategy[date] | None = None,
) -> st.SearchStrategy[dict[str, object]]:
    """Keyword arguments for :func:`jpki_sim.issuer.issue_card`: any holder, issue
    date, certificate choice and valid PINs. The holder is born before the issue date."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, object]:
        day = draw(issued if issued is not None else dates(date(2016, 1, 1), date(2035, 12, 31)))
        born = draw(dates(date(1920, 1, 1), day))
        identity = draw(identities(birthdates=st.just(born)))
        return {
            "identity": identity,
            "issued": day,
            "with_auth": draw(st.booleans()),
            "with_sign": draw(st.booleans()),
            "pins": {name: draw(pins(name)) for name in ("auth", "sign", "helper")},
        }

    return build()
