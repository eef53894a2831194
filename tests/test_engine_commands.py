"""The engine's READ RECORD, GET DATA, GET CHALLENGE, INTERNAL AUTHENTICATE, MF and reset rules.

On a small card of the test's own (no JPKI): every behaviour comes from the
engine and the rules the card is given.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jpki_sim.card.engine import Card
from jpki_sim.card.files import (
    ALWAYS,
    DedicatedFile,
    KeyEF,
    PinEF,
    RecordEF,
    TransparentEF,
    pin_verified,
)
from jpki_sim.card.pins import PinState, RetryCounter
from jpki_sim.card.rules import CardRules, seeded_random, system_random
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.sw import SW

AID_A = bytes.fromhex("A000000001")
AID_B = bytes.fromhex("A000000002")
MANAGER = bytes.fromhex("A0000001510000")
BIG = bytes(range(256)) + b"\x01" * 44  # 300 bytes
RECORDS = [b"\x01\x03abc", b"\x02\x02xy", b""]


def sign(challenge: bytes) -> bytes:
    if len(challenge) > 8:
        raise CardError(SW.WRONG_LENGTH)
    return b"signed:" + challenge


def make_card(**options: object) -> tuple[Card, PinState]:
    pin_state = PinState("1234", 3, 3)
    pin = RetryCounter.of(pin_state)
    df_a = DedicatedFile(AID_A, "a", [
        TransparentEF(0x0001, b"transparent"),
        RecordEF(0x0002, RECORDS),
        RecordEF(0x0003, [b"secret record"], read=pin_verified(0x0010)),
        KeyEF(0x0004, None, use=ALWAYS, authenticate=sign),  # answers with no credential
        KeyEF(0x0005, None, use=pin_verified(0x0010)),  # PIN-gated, no INTERNAL AUTHENTICATE
        KeyEF(0x0006, None, use=ALWAYS),  # free, but signs some other way
        PinEF(0x0010, pin),
    ])
    df_b = DedicatedFile(AID_B, "b", [RecordEF(0x0002, [b"b's record"])])
    card = Card(
        bytes.fromhex("3B00"), [df_a, df_b],
        data_objects={0x00F0: b"01203", 0x00F8: BIG},
        data_objects_anywhere={0x5F51: b"\x00"},
        mf_names=(MANAGER,),
        **options,  # type: ignore[arg-type]
    )
    card.power_on()
    return card, pin_state


def tx(card: Card, hexstr: str) -> tuple[bytes, str]:
    r = card.process(bytes.fromhex(hexstr.replace(" ", "")))
    return r[:-2], r[-2:].hex().upper()


def select(card: Card, aid: bytes) -> str:
    return tx(card, f"00A4040C{len(aid):02X}{aid.hex()}")[1]


def verify(card: Card, pin: bytes) -> str:
    tx(card, "00A4020C020010")
    return tx(card, f"00200080{len(pin):02X}{pin.hex()}")[1]


# ---------------------------------------------------------------- READ RECORD


def test_read_record_by_current_ef_and_by_short_ef_id() -> None:
    card, _ = make_card()
    select(card, AID_A)
    tx(card, "00A4020C020002")
    assert tx(card, "00B2010400") == (RECORDS[0], "9000")
    assert tx(card, "00B2020400") == (RECORDS[1], "9000")
    assert tx(card, "00B2030400") == (b"", "9000")  # an empty record exists
    assert tx(card, "00B2040400")[1] == "6A83"
    # P2 = SFI << 3 | 100: no SELECT needed, and the EF becomes current
    tx(card, "00A4020C020001")
    assert tx(card, "00B2011400") == (RECORDS[0], "9000")
    assert card.current_ef is not None and card.current_ef.fid == 2
    assert tx(card, "00B201F400")[1] == "6A82"  # SFI 30: no such EF


def test_read_record_p2_forms_and_errors() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert tx(card, "00B2010400")[1] == "6986"  # no current EF
    tx(card, "00A4020C020002")
    assert tx(card, "00B2010500") == (RECORDS[0] + RECORDS[1], "9000")  # P1 to the end
    assert tx(card, "00B2020500") == (RECORDS[1], "9000")
    for how in ("00", "01", "02", "03", "06"):  # by identifier, first/last/next/previous
        assert tx(card, f"00B201{how}00")[1] == "6A81", how
    assert tx(card, "00B201FC00")[1] == "6A86"  # SFI bits all set: RFU
    assert tx(card, "00B2000400")[1] == "6A83"  # "current record": none is set
    assert tx(card, "00B20104")[1] == "6700"  # no Le
    assert tx(card, "00B201040100")[1] == "6700"  # a data field
    assert tx(card, "00B2010403")[1] == "6700"  # Le shorter than the record
    assert tx(card, "00B2010405") == (RECORDS[0], "9000")
    assert tx(card, "00B201040000FF") == (RECORDS[0], "9000")  # extended Le


def test_read_record_structure_and_access() -> None:
    card, _ = make_card()
    select(card, AID_A)
    tx(card, "00A4020C020001")
    assert tx(card, "00B2010400")[1] == "6981"  # a transparent EF has no records
    tx(card, "00A4020C020002")
    assert tx(card, "00B0000001")[1] == "6981"  # a record EF is not read by offset
    tx(card, "00A4020C020003")
    assert tx(card, "00B2010400")[1] == "6982"
    assert verify(card, b"1234") == "9000"
    assert tx(card, "00B2011C00") == (b"secret record", "9000")
    card, _ = make_card(rules=CardRules(records_to_end=False))
    select(card, AID_A)
    assert tx(card, "00B2011500")[1] == "6A81"


def test_read_record_at_mf_level() -> None:
    card, _ = make_card()
    assert tx(card, "00B2011400")[1] == "6A82"
    assert tx(card, "00B2010400")[1] == "6986"


# ---------------------------------------------------------------- GET DATA


def test_get_data_at_mf_level_short_and_extended_le() -> None:
    card, _ = make_card()
    assert tx(card, "00CA00F000") == (b"01203", "9000")
    assert tx(card, "00CA00F005") == (b"01203", "9000")
    assert tx(card, "00CA00F004")[1] == "6700"  # Le shorter than the object
    assert tx(card, "00CA00F800")[1] == "6700"  # 300 bytes: short Le cannot carry it
    assert tx(card, "00CA00F8000000") == (BIG, "9000")
    assert tx(card, "00CA00F800012C") == (BIG, "9000")
    assert tx(card, "00CA00F800012B")[1] == "6700"
    assert tx(card, "00CA00F1 00")[1] == "6A88"
    assert tx(card, "00CA00F0")[1] == "6700"  # no Le
    assert tx(card, "00CA00F00100")[1] == "6700"  # data field


def test_get_data_in_an_application_answers_only_objects_for_anywhere() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert tx(card, "00CA00F000")[1] == "6A88"
    assert tx(card, "00CA5F5100") == (b"\x00", "9000")
    card.power_on()
    assert tx(card, "00CA5F5100") == (b"\x00", "9000")


def test_selecting_an_mf_name_brings_back_the_mf_level() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert verify(card, b"1234") == "9000"
    assert tx(card, "00CA00F000")[1] == "6A88"
    assert select(card, MANAGER) == "9000"
    assert card.current_df is None and not card.verified
    assert tx(card, "00CA00F000") == (b"01203", "9000")
    with pytest.raises(ValueError, match="both an application and an MF name"):
        Card(b"\x3b\x00", [DedicatedFile(MANAGER, "m", [])], mf_names=(MANAGER,))


# ---------------------------------------------------------------- MF SELECT


def test_select_mf_forms() -> None:
    card, _ = make_card()
    assert tx(card, "00A40000")[1] == "6A86"  # after reset: refused
    assert tx(card, "00A4000C023F00")[1] == "6A82"  # 3F00 by FID, at the MF
    select(card, AID_A)
    tx(card, "00A4020C020001")
    assert tx(card, "00A40000")[1] == "9000"  # inside an application: a no-op
    assert card.current_df is not None and card.current_df.aid == AID_A
    assert card.current_ef is not None and card.current_ef.fid == 1
    assert tx(card, "00A4000C023F00")[1] == "6A82"  # and 3F00 still 6A82
    assert tx(card, "00A4000C020002")[1] == "9000"  # another FID: an EF of the DF
    assert card.current_ef.fid == 2
    assert tx(card, "00A4000C03000200")[1] == "6700"
    card, _ = make_card(rules=CardRules(select_mf_in_application=SW.INCORRECT_P1P2))
    select(card, AID_A)
    assert tx(card, "00A40000")[1] == "6A86"


# ---------------------------------------------------------------- GET CHALLENGE


def test_get_challenge_lengths_and_forms() -> None:
    card, _ = make_card()
    for le, n in (("01", 1), ("08", 8), ("FF", 255), ("00", 256)):
        data, sw = tx(card, "00840000" + le)
        assert sw == "9000" and len(data) == n
    assert tx(card, "0084000000 0010".replace(" ", ""))[1] == "6985"  # extended form
    assert tx(card, "00840000")[1] == "6700"  # no Le
    assert tx(card, "008400000101 08".replace(" ", ""))[1] == "6700"  # data
    assert tx(card, "0084010008")[1] == "6A86"
    assert tx(card, "0084000108")[1] == "6A86"
    select(card, AID_A)
    assert len(tx(card, "0084000010")[0]) == 16  # inside an application too
    card, _ = make_card(rules=CardRules(challenge_max=8, challenge_extended=SW.WRONG_LENGTH))
    assert tx(card, "0084000009")[1] == "6700"
    assert tx(card, "00840000000008")[1] == "6700"


def test_get_challenge_seeded_source_is_reproducible() -> None:
    a, _ = make_card(random=seeded_random(42))
    b, _ = make_card(random=seeded_random(42))
    c, _ = make_card(random=seeded_random(43))
    first = [tx(a, "0084000010")[0] for _ in range(3)]
    assert first == [tx(b, "0084000010")[0] for _ in range(3)]
    assert first[0] != tx(c, "0084000010")[0]
    assert len(set(first)) == 3
    # one stream, whatever lengths are drawn from it
    both = seeded_random(7)
    assert both(3) + both(5) == seeded_random(7)(8)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(8, 256), min_size=2, max_size=40), st.booleans())
def test_get_challenge_never_repeats_within_a_session(lengths: list[int], seeded: bool) -> None:
    card, _ = make_card(random=seeded_random(1) if seeded else system_random)
    seen: set[bytes] = set()
    for n in lengths:
        data, sw = tx(card, f"00840000{n & 0xFF:02X}")
        assert sw == "9000" and len(data) == n
        assert data not in seen
        seen.add(data)
        assert card.last_challenge == data


def test_get_challenge_changes_no_state() -> None:
    card, pin = make_card()
    select(card, AID_A)
    assert verify(card, b"1234") == "9000"
    tx(card, "00A4020C020002")
    tx(card, "0084000008")
    assert card.current_ef is not None and card.current_ef.fid == 2
    assert (AID_A, 0x10) in card.verified and pin.tries_left == 3


# ---------------------------------------------------------------- INTERNAL AUTHENTICATE


def test_internal_authenticate_the_profiles_key_answers() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert tx(card, "00880084 03 616263 00".replace(" ", "")) == (b"signed:abc", "9000")
    tx(card, "00A4020C020004")
    assert tx(card, "0088008003616263") == (b"signed:abc", "9000")  # no Le: answered anyway
    assert tx(card, "008800800361626305")[1] == "6700"  # Le below the answer
    assert tx(card, "0088008009616263")[1] == "6700"  # Lc does not fit
    assert tx(card, "0088008009616263646566676869")[1] == "6700"  # the key's own limit
    assert tx(card, "00880080")[1] == "6700"  # no challenge
    assert tx(card, "0088018003616263")[1] == "6A86"
    assert tx(card, "0088000003616263")[1] == "6A86"  # P2 00: no key named


def test_internal_authenticate_keys_that_refuse() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert tx(card, "0088008503616263")[1] == "6982"  # behind a PIN
    assert verify(card, b"1234") == "9000"
    assert tx(card, "0088008503616263")[1] == "6985"  # verified: still not its command
    assert tx(card, "0088008603616263")[1] == "6985"  # free key without the hook
    assert tx(card, "0088008103616263")[1] == "6A88"  # not a key
    assert tx(card, "0088009E03616263")[1] == "6A88"  # no such EF
    card.power_on()
    assert tx(card, "0088008403616263")[1] == "6A88"  # no application


# ---------------------------------------------------------------- warm reset rules


def test_a_reset_that_never_reaches_the_chip_keeps_everything() -> None:
    card, _ = make_card(rules=CardRules(reset_restarts=False))
    select(card, AID_A)
    assert verify(card, b"1234") == "9000"
    assert card.reset() == card.atr
    assert card.current_df is not None and (AID_A, 0x10) in card.verified
    card.power_off()
    assert card.reset() == card.atr  # a reset of an unpowered card powers it
    assert card.current_df is None and not card.verified
    card, _ = make_card()
    select(card, AID_A)
    assert verify(card, b"1234") == "9000"
    card.reset()
    assert card.current_df is None and not card.verified


def test_security_status_rules_across_applications() -> None:
    card, _ = make_card()
    select(card, AID_A)
    assert verify(card, b"1234") == "9000"
    assert select(card, AID_A) == "9000"
    assert (AID_A, 0x10) in card.verified  # re-selecting the current DF keeps it
    assert select(card, bytes.fromhex("A0000000FF")) == "6A82"
    assert (AID_A, 0x10) in card.verified  # a failed SELECT changes nothing
    assert select(card, AID_B) == "9000"
    assert not card.verified  # another DF: cleared
    assert select(card, AID_A) == "9000"
    assert not card.verified  # and it stays cleared on return
