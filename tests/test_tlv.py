"""BER-TLV: the card's non-minimal encodings read and re-emitted byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from card_samples import AP_BASIC_INFO, HANAKO_BASIC_INFO, INTEGRITY, MY_NUMBER_EF
from jpki_sim.iso7816 import tlv
from jpki_sim.iso7816.tlv import Tlv, TlvError


@pytest.mark.parametrize("ef", [HANAKO_BASIC_INFO, AP_BASIC_INFO, INTEGRITY, MY_NUMBER_EF])
def test_card_encodings_round_trip_byte_for_byte(ef: bytes) -> None:
    nodes, filler = tlv.parse_with_filler(ef)
    assert len(nodes) == 1
    assert nodes[0].to_bytes() + filler == ef
    assert set(filler) <= {0xFF}


def test_non_minimal_headers_are_kept() -> None:
    node = tlv.parse(AP_BASIC_INFO)[0]
    assert node.raw_tag == b"\xff\x40" and node.raw_length == b"\x82\x00\x9f"
    assert node.length == 159 and node.tag_number == 0x40 and node.is_constructed
    df43 = node.find(0xDF43)
    assert df43 is not None and df43.raw_length == b"\x82\x00\x80" and df43.length == 128
    assert not node.minimal
    # DER would have said 81 9F and 81 80: a minimal re-encoding is not the card's file
    kids = [
        Tlv.primitive(c.raw_tag, c.value, tlv.encode_length(c.length)) for c in node.children or ()
    ]
    minimal = Tlv.constructed(0xFF40, kids, tlv.encode_length(sum(len(k) for k in kids)))
    assert minimal.minimal
    assert minimal.to_bytes() != node.to_bytes()
    assert minimal.raw_length == b"\x81\x9e"  # one byte shorter: DF43 lost its leading zero


def test_my_number_tag_is_long_form_for_a_small_number() -> None:
    node = tlv.parse(MY_NUMBER_EF)[0]
    assert node.raw_tag == b"\xff\x10"
    assert (node.tag_class, node.tag_number, node.is_constructed) == (tlv.CLASS_PRIVATE, 16, True)
    assert node.raw_tag != tlv.encode_tag(tlv.CLASS_PRIVATE, True, 16)  # DER: F0
    assert tlv.encode_tag(tlv.CLASS_PRIVATE, True, 16) == b"\xf0"
    # constructed by its tag bits, yet it holds bare digits: no children, value kept
    assert node.children is None and node.value == b"012345678903"


def test_tree_and_find() -> None:
    root = tlv.parse(HANAKO_BASIC_INFO)[0]
    assert [c.tag for c in root.children or ()] == [0xDF21, 0xDF22, 0xDF23, 0xDF24, 0xDF25]
    assert root.find(0xDF24).value == b"19930331"  # type: ignore[union-attr]
    assert tlv.find(tlv.parse(HANAKO_BASIC_INFO), b"\xdf\x25").value == b"2"  # type: ignore[union-attr]
    assert root.find(0xDF26) is None
    assert tlv.find_all([root], 0xDF22) == [root.children[1]]  # type: ignore[index]
    assert "DF24 08  3139393330333331" in str(root)


@pytest.mark.parametrize(
    ("n", "width", "expect"),
    [
        (0x65, None, "65"),
        (0x7F, None, "7F"),
        (0x80, None, "8180"),
        (0x9F, 2, "82009F"),
        (0x14B, None, "82014B"),
        (5, 1, "8105"),
        (5, 0, "05"),
    ],
)
def test_encode_length(n: int, width: int | None, expect: str) -> None:
    assert tlv.encode_length(n, width).hex().upper() == expect


def test_card_length_rule() -> None:
    assert tlv.card_length(0x65) == b"\x65"
    assert tlv.card_length(0x80) == b"\x82\x00\x80"
    assert tlv.card_length(0x9F) == b"\x82\x00\x9f"
    assert tlv.card_length(0x213) == b"\x82\x02\x13"
    with pytest.raises(ValueError):
        tlv.encode_length(0x80, 0)
    with pytest.raises(ValueError):
        tlv.encode_length(0x100, 1)


def test_encode_tag() -> None:
    assert tlv.encode_tag(tlv.CLASS_PRIVATE, False, 0x21) == b"\xdf\x21"
    assert tlv.encode_tag(tlv.CLASS_PRIVATE, True, 0x20, long_form=True) == b"\xff\x20"
    assert tlv.encode_tag(tlv.CLASS_UNIVERSAL, True, 0x10) == b"\x30"
    assert tlv.encode_tag(tlv.CLASS_APPLICATION, True, 0x21) == b"\x7f\x21"
    assert tlv.encode_tag(tlv.CLASS_CONTEXT, False, 200) == b"\x9f\x81\x48"


@pytest.mark.parametrize(
    ("hexstr", "fragment"),
    [
        ("DF", "runs past the end"),
        ("DF22", "length expected"),
        ("DF2205AABB", "says 5 bytes"),
        ("DF2280", "indefinite"),
        ("DF2282", "runs past the end"),
        ("DF22850000000001", "length of 5 bytes"),
        ("FF2005DF2205", "says 5 bytes"),  # a constructed object longer than its data
    ],
)
def test_malformed_tlv(hexstr: str, fragment: str) -> None:
    with pytest.raises(TlvError, match=fragment):
        tlv.parse(bytes.fromhex(hexstr))


def test_filler_only_at_the_end() -> None:
    assert tlv.parse(b"\xff" * 16) == []
    nodes, filler = tlv.parse_with_filler(bytes.fromhex("DF2101AA") + b"\xff\xff")
    assert [n.value for n in nodes] == [b"\xaa"] and filler == b"\xff\xff"
    # an FF that starts more data is a tag, not filler
    with pytest.raises(TlvError):
        tlv.parse(bytes.fromhex("DF2101AA") + b"\xff\x00")


def test_lengths_are_checked_when_given() -> None:
    assert Tlv.primitive(0xDF21, b"ab", b"\x82\x00\x02").to_bytes() == bytes.fromhex(
        "DF2182000261 62".replace(" ", "")
    )
    with pytest.raises(ValueError):
        Tlv.primitive(0xDF21, b"ab", b"\x03")
    with pytest.raises(ValueError):
        Tlv.primitive(0xFF20, b"ab")
    with pytest.raises(ValueError):
        Tlv.constructed(0xDF21, [])


# ---------------------------------------------------------------- random trees

_primitive_tags = st.sampled_from(
    [b"\x04", b"\x80", b"\xdf\x21", b"\xdf\x43", b"\x5f\x4e", b"\x9f\x81\x48"]
)
_constructed_tags = st.sampled_from([b"\x30", b"\xff\x10", b"\xff\x20", b"\x7f\x21", b"\xa1"])


@st.composite
def _length_for(draw: st.DrawFn, n: int) -> bytes:
    forms: list[int | None] = [None, 2, 3]
    if n < 0x80:
        forms.append(0)
    if n < 0x100:
        forms.append(1)
    return tlv.encode_length(n, draw(st.sampled_from(forms)))


@st.composite
def _trees(draw: st.DrawFn, depth: int = 2) -> Tlv:
    if depth == 0 or draw(st.booleans()):
        value = draw(st.binary(max_size=300))
        return Tlv.primitive(draw(_primitive_tags), value, draw(_length_for(len(value))))
    kids = draw(st.lists(_trees(depth - 1), min_size=1, max_size=3))
    n = sum(len(k) for k in kids)
    return Tlv.constructed(draw(_constructed_tags), kids, draw(_length_for(n)))


@given(st.lists(_trees(), min_size=1, max_size=3), st.integers(0, 40))
def test_any_encoding_round_trips(nodes: list[Tlv], filler: int) -> None:
    data = tlv.concat(nodes) + b"\xff" * filler
    parsed, rest = tlv.parse_with_filler(data)
    assert tlv.concat(parsed) + rest == data
    assert rest == b"\xff" * filler
    assert [p.to_bytes() for p in parsed] == [n.to_bytes() for n in nodes]
    for p, n in zip(parsed, nodes, strict=True):
        assert [x.raw_length for x in p.walk()] == [x.raw_length for x in n.walk()]


@given(st.binary(max_size=64) | st.binary(max_size=40).map(lambda b: HANAKO_BASIC_INFO[:50] + b))
def test_any_bytes_parse_exactly_or_fail_cleanly(data: bytes) -> None:
    try:
        nodes, filler = tlv.parse_with_filler(data)
    except TlvError:
        return
    assert tlv.concat(nodes) + filler == data
