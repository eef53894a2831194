"""The construct APDU layouts: round trips per case and agreement with the hot-path parser."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jpki_sim.iso7816 import codec
from jpki_sim.iso7816.apdu import CommandApdu, ResponseApdu
from jpki_sim.iso7816.errors import MalformedApdu
from jpki_sim.testing import strategies as jst

# one hand-checked encoding per case: (case, build_command arguments, bytes)
VECTORS = [
    ("1", dict(cla=0x00, ins=0xA4, p1=0x04, p2=0x0C), "00A4040C"),
    ("2S", dict(cla=0x00, ins=0xB0, p1=0x00, p2=0x00, ne=4), "00B0000004"),
    ("2S", dict(cla=0x00, ins=0xB0, p1=0x01, p2=0x00, ne=256), "00B0010000"),
    ("3S", dict(cla=0x00, ins=0xA4, p1=0x02, p2=0x0C, data=b"\x00\x0a"), "00A4020C02000A"),
    (
        "4S",
        dict(cla=0x80, ins=0x2A, p1=0x00, p2=0x80, data=b"\x30\x31", ne=256),
        "802A008002303100",
    ),
    ("2E", dict(cla=0x00, ins=0xB0, p1=0x00, p2=0x00, ne=1000), "00B000000003E8"),
    ("2E", dict(cla=0x00, ins=0xB0, p1=0x00, p2=0x00, ne=65536), "00B00000000000"),
    (
        "2E",
        dict(cla=0x00, ins=0xB0, p1=0x00, p2=0x00, ne=4, extended=True),
        "00B00000000004",
    ),
    (
        "3E",
        dict(cla=0x00, ins=0x20, p1=0x00, p2=0x80, data=b"1234", extended=True),
        "00200080000004" + b"1234".hex().upper(),
    ),
    (
        "4E",
        dict(cla=0x80, ins=0x2A, p1=0x00, p2=0x80, data=b"\xaa", ne=65536, extended=True),
        "802A0080000001AA0000",
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "hexstr"), VECTORS)
def test_build_and_parse_each_case(case: str, kwargs: dict, hexstr: str) -> None:
    raw = codec.build_command(**kwargs)
    assert raw.hex().upper() == hexstr
    apdu = codec.parse_command(raw)
    assert apdu.case == case
    assert (apdu.cla, apdu.ins, apdu.p1, apdu.p2) == (
        kwargs["cla"],
        kwargs["ins"],
        kwargs["p1"],
        kwargs["p2"],
    )
    assert apdu.data == kwargs.get("data", b"")
    assert apdu.ne == kwargs.get("ne")
    assert apdu == CommandApdu.parse(raw)


def test_every_case_has_a_vector() -> None:
    assert {v[0] for v in VECTORS} == set(codec.CASES) == set(jst.APDU_CASES)


def test_largest_lengths() -> None:
    raw = codec.build_command(0, 0xD6, 0, 0, bytes(65535), ne=65536)
    assert len(raw) == 4 + 3 + 65535 + 2
    apdu = codec.parse_command(raw)
    assert (apdu.case, len(apdu.data), apdu.ne) == ("4E", 65535, 65536)
    short = codec.build_command(0, 0xD6, 0, 0, bytes(255), ne=256)
    assert codec.parse_command(short).case == "4S"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(ne=0), "Ne=0"),
        (dict(ne=65537), "Ne=65537"),
        (dict(data=bytes(65536)), "65536 bytes"),
        (dict(ne=257, extended=False), "short"),
        (dict(data=bytes(256), extended=False), "short"),
        (dict(extended=True), "case 1"),
        (dict(cla=256), "CLA=256"),
    ],
)
def test_build_refuses_what_cannot_be_encoded(kwargs: dict, fragment: str) -> None:
    args = dict(cla=0, ins=0xB0, p1=0, p2=0) | kwargs
    with pytest.raises(MalformedApdu) as info:
        codec.build_command(**args)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("hexstr", "fragment"),
    [
        ("00A4", "at least 4"),
        ("00A4040C0300", "Lc=3"),
        ("00B0000000AA", "truncated"),
        ("00A4040C000000AA", "Lc of zero"),
        ("00A4040C000003AABB", "Lc=3"),
    ],
)
def test_parse_refuses_malformed_lengths(hexstr: str, fragment: str) -> None:
    with pytest.raises(MalformedApdu) as info:
        codec.parse_command(bytes.fromhex(hexstr))
    assert fragment in str(info.value)
    assert info.value.sw == 0x6700


@given(jst.command_apdus())
def test_valid_apdus_parse_identically_through_both(apdu: CommandApdu) -> None:
    raw = apdu.to_bytes()
    assert codec.parse_command(raw) == CommandApdu.parse(raw) == apdu
    assert (
        codec.build_command(
            apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, apdu.ne, apdu.extended or None
        )
        == raw
    )


def _outcome(parse: Callable[[bytes], CommandApdu], raw: bytes) -> CommandApdu | str:
    try:
        return parse(raw)
    except MalformedApdu:
        return "malformed"


@settings(max_examples=500)
@given(st.binary(max_size=24) | st.binary(min_size=4, max_size=4).map(lambda h: h + b"\x00"))
@example(b"\x00\xa4\x04\x0c\x00\x00\x01")
@example(b"\x00\xa4\x04\x0c\x00\x00\x00")
@example(b"\x00\xa4\x04\x0c\x01\x00\x00")
def test_random_bytes_same_verdict_from_both(raw: bytes) -> None:
    assert _outcome(codec.parse_command, raw) == _outcome(CommandApdu.parse, raw)


@given(
    st.binary(min_size=4, max_size=4),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 300),
)
def test_length_shaped_bytes_same_verdict_from_both(
    header: bytes, b4: int, l2: int, body: int
) -> None:
    # random bytes rarely hit a consistent length; these are built around one
    for raw in (
        header + bytes((b4,)) + bytes(body),
        header + b"\x00" + l2.to_bytes(2, "big") + bytes(body),
    ):
        assert _outcome(codec.parse_command, raw) == _outcome(CommandApdu.parse, raw)


@given(jst.malformed_apdus())
def test_malformed_refused_by_both(raw: bytes) -> None:
    with pytest.raises(MalformedApdu):
        codec.parse_command(raw)
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(raw)


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    raw = codec.build_response(data, sw)
    assert raw == ResponseApdu(data, sw).to_bytes()
    assert codec.parse_response(raw) == ResponseApdu(data, sw) == ResponseApdu.parse(raw)


def test_response_too_short() -> None:
    for raw in (b"", b"\x90"):
        with pytest.raises(ValueError):
            codec.parse_response(raw)
    with pytest.raises(ValueError):
        codec.build_response(b"", 0x10000)
