"""The hand-written APDU parser of the card's hot path, case by case."""

from __future__ import annotations

import pytest

from jpki_sim.iso7816.apdu import CommandApdu, ResponseApdu, parse_hex
from jpki_sim.iso7816.errors import MalformedApdu

H = "00B00000"  # READ BINARY header, reused below


@pytest.mark.parametrize(
    ("hexstr", "case", "data", "ne", "extended"),
    [
        ("00A4040C", "1", b"", None, False),
        (H + "04", "2S", b"", 4, False),
        (H + "00", "2S", b"", 256, False),
        ("00A4020C020018", "3S", b"\x00\x18", None, False),
        ("802A0080" + "03AABBCC" + "00", "4S", b"\xaa\xbb\xcc", 256, False),
        ("802A0080" + "01AA" + "FF", "4S", b"\xaa", 255, False),
        (H + "000400", "2E", b"", 0x400, True),
        (H + "000000", "2E", b"", 65536, True),
        ("00A4040C" + "000002" + "0018", "3E", b"\x00\x18", None, True),
        ("802A0080" + "000001AA" + "0000", "4E", b"\xaa", 65536, True),
        ("802A0080" + "000001AA" + "0101", "4E", b"\xaa", 257, True),
    ],
)
def test_each_case_parses(
    hexstr: str, case: str, data: bytes, ne: int | None, extended: bool
) -> None:
    raw = bytes.fromhex(hexstr)
    apdu = CommandApdu.parse(raw)
    assert (apdu.case, apdu.data, apdu.ne, apdu.extended) == (case, data, ne, extended)
    assert apdu.to_bytes() == raw


def test_header_fields() -> None:
    apdu = CommandApdu.parse(bytes.fromhex("802A0080" + "01AA" + "00"))
    assert (apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.p1p2) == (0x80, 0x2A, 0x00, 0x80, 0x0080)


@pytest.mark.parametrize(
    "hexstr",
    [
        "",
        "00",
        "00A404",  # 3 bytes: no complete header
        "00A4040C0300",  # Lc=3, one byte follows
        "00A4040C02001800FF",  # Lc=2 but 4 bytes follow (neither 3S nor 4S)
        "00B0000000AA",  # 00 then one byte: truncated extended length
        "00A4040C000000AA",  # extended Lc of zero with data
        "00A4040C000003AABB",  # extended Lc=3, 2 bytes follow
        "00A4040C000001AABBCCDD",  # extended Lc=1, 4 bytes follow (neither 3E nor 4E)
    ],
)
def test_malformed_lengths_are_refused(hexstr: str) -> None:
    with pytest.raises(MalformedApdu) as info:
        CommandApdu.parse(bytes.fromhex(hexstr))
    assert info.value.sw == 0x6700


def test_to_bytes_picks_extended_when_lengths_need_it() -> None:
    assert CommandApdu(0, 0xB0, 0, 0, ne=257).to_bytes().hex() == "00b00000000101"
    assert CommandApdu(0, 0xD6, 0, 0, bytes(256)).to_bytes()[4:7] == b"\x00\x01\x00"
    assert CommandApdu(0, 0xB0, 0, 0, ne=256).to_bytes().hex() == "00b0000000"


def test_to_bytes_refuses_impossible_lengths() -> None:
    with pytest.raises(ValueError):
        CommandApdu(0, 0xB0, 0, 0, ne=0).to_bytes()
    with pytest.raises(ValueError):
        CommandApdu(0, 0xB0, 0, 0, ne=65537).to_bytes()
    with pytest.raises(ValueError):
        CommandApdu(0, 0xD6, 0, 0, bytes(65536)).to_bytes()


def test_response_split_and_join() -> None:
    r = ResponseApdu.parse(bytes.fromhex("0102036982"))
    assert (r.data, r.sw, r.sw1, r.sw2) == (b"\x01\x02\x03", 0x6982, 0x69, 0x82)
    assert r.to_bytes().hex() == "0102036982"
    assert str(ResponseApdu(b"", 0x9000)) == "90 00"
    with pytest.raises(ValueError):
        ResponseApdu.parse(b"\x90")


@pytest.mark.parametrize(
    "text", ["00 A4 04 0C", "00:a4:04:0c", "0x00A4040C", "00-A4-04-0C", " 00a4 040c\n"]
)
def test_parse_hex_accepts_separators(text: str) -> None:
    assert parse_hex(text) == bytes.fromhex("00A4040C")


@pytest.mark.parametrize("text", ["00A", "zz", "00 A4 0"])
def test_parse_hex_refuses_with_one_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_hex(text)
    assert "\n" not in str(info.value)
