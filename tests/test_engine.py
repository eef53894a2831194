"""The generic ISO 7816-4 engine, on a small card of the test's own (no JPKI)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from jpki_sim.card.engine import Card
from jpki_sim.card.files import (
    ALWAYS,
    NEVER,
    DedicatedFile,
    KeyEF,
    PinEF,
    TransparentEF,
    pin_verified,
)
from jpki_sim.card.pins import PinState, RetryCounter
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.sw import SW

AID_A = bytes.fromhex("A000000001")
AID_B = bytes.fromhex("A000000002")
FREE = bytes(range(256)) * 3 + b"tail"  # 772 bytes
SECRET = b"secret data"


class Counter:
    """Counts commits, and can snapshot the PIN state at each one (a 'disk')."""

    def __init__(self) -> None:
        self.commits = 0
        self.disk: list[dict[str, object]] = []
        self.pins: list[PinState] = []
        #: raised right after a save: the power went away
        self.crash_after_save: type[Exception] | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield
        self.commits += 1
        self.disk.append({id(p): copy.copy(p) for p in self.pins})
        if self.crash_after_save is not None:
            raise self.crash_after_save()


def make_card(pin_value: str = "1234", max_tries: int = 3) -> tuple[Card, PinState, Counter]:
    counter = Counter()
    pin_state = PinState(pin_value, max_tries, max_tries)
    counter.pins.append(pin_state)
    pin = RetryCounter.of(pin_state, counter, check_format=lambda b: len(b) == 4 and b.isdigit())
    df_a = DedicatedFile(
        AID_A,
        "a",
        [
            TransparentEF(0x0001, FREE, read=ALWAYS),
            TransparentEF(0x0002, SECRET, read=pin_verified(0x0010), capacity=32),
            TransparentEF(0x0003, b"never", read=NEVER),
            KeyEF(0x0004, object(), use=pin_verified(0x0010)),
            PinEF(0x0010, pin),
        ],
    )
    df_b = DedicatedFile(AID_B, "b", [TransparentEF(0x0001, b"other app")])
    card = Card(bytes.fromhex("3B00"), [df_a, df_b], data_objects={0x5F51: b"\x3b\x00"})
    card.power_on()
    return card, pin_state, counter


def tx(card: Card, hexstr: str) -> tuple[bytes, str]:
    r = card.process(bytes.fromhex(hexstr.replace(" ", "")))
    return r[:-2], r[-2:].hex().upper()


def select_a(card: Card) -> None:
    assert tx(card, "00A4040C05" + AID_A.hex())[1] == "9000"


# ---------------------------------------------------------------- SELECT


def test_select_by_aid_and_fid() -> None:
    card, _, _ = make_card()
    assert tx(card, "00A4040C05" + AID_A.hex()) == (b"", "9000")
    assert tx(card, "00A4020C020001") == (b"", "9000")
    assert card.current_ef is not None and card.current_ef.fid == 1


def test_select_unknown_aid_and_fid_6a82_and_state_kept() -> None:
    card, _, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020001")
    assert tx(card, "00A4040C05A0000000FF")[1] == "6A82"
    assert tx(card, "00A4020C020099")[1] == "6A82"
    # the failed selections changed nothing
    assert tx(card, "00B0000002") == (FREE[:2], "9000")


def test_select_fid_without_application_is_6a82() -> None:
    card, _, _ = make_card()
    assert tx(card, "00A4020C020001")[1] == "6A82"


def test_select_wrong_lengths_and_params() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert tx(card, "00A4020C0100")[1] == "6700"
    assert tx(card, "00A4020C03000100")[1] == "6700"
    assert tx(card, "00A4090C020001")[1] == "6A86"  # select by path is not supported
    assert tx(card, "00A4040102" + "A000")[1] == "6A86"  # next occurrence
    assert tx(card, "00A404" + "0C11" + "00" * 17)[1] == "6700"


def test_select_mf_refused_after_reset_and_noop_inside_application() -> None:
    card, _, _ = make_card()
    assert tx(card, "00A40000")[1] == "6A86"
    select_a(card)
    tx(card, "00A4020C020001")
    assert tx(card, "00A40000")[1] == "9000"
    assert tx(card, "00B0000001") == (FREE[:1], "9000")


# ---------------------------------------------------------------- READ BINARY


def test_read_binary_offsets_and_end() -> None:
    card, _, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020001")
    assert tx(card, "00B0000004") == (FREE[:4], "9000")
    assert tx(card, "00B0000000") == (FREE[:256], "9000")  # Le=00 means 256
    assert tx(card, "00B0010000") == (FREE[256:512], "9000")
    # reading past the end returns what is left
    assert tx(card, "00B0030000") == (FREE[768:], "9000")
    # offset at or beyond the end
    assert tx(card, "00B0030400")[1] == "6B00"
    assert tx(card, "00B07FFF01")[1] == "6B00"


def handler_answer(card: Card, raw: bytes) -> bytes:
    """What read_binary itself answers (its data + 9000, or its SW): the general path."""
    from jpki_sim.card.engine import read_binary
    from jpki_sim.iso7816.apdu import CommandApdu

    try:
        return read_binary(card, CommandApdu.parse(raw)) + b"\x90\x00"
    except CardError as exc:
        return int(exc.sw).to_bytes(2, "big")


@settings(max_examples=300, deadline=None)
@given(ef=st.sampled_from([None, 0x0001, 0x0002, 0x0003, 0x0004, 0x0010]),
       verified=st.booleans(), offset=st.integers(0, 0x7FFF), le=st.integers(0, 255))
def test_read_binary_through_the_card_answers_as_the_handler(
        ef: int | None, verified: bool, offset: int, le: int) -> None:
    """A short READ BINARY of the current EF through the card answers exactly as
    read_binary does: any EF kind, with and without the PIN, any offset and Le."""
    card, _pin, _c = make_card()
    select_a(card)
    if verified:
        assert tx(card, "00 A4 02 0C 02 0010")[1] == "9000"
        assert tx(card, "00 20 00 80 04 31323334")[1] == "9000"
    if ef is not None:
        assert tx(card, f"00 A4 02 0C 02 {ef:04X}")[1] == "9000"
    else:
        select_a(card)  # the application again: no current EF
    raw = bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le])
    before = card.current_ef
    expected = handler_answer(card, raw)
    assert card.process(raw) == expected
    assert card.current_ef is before


def test_read_binary_extended_le_reads_whole_file() -> None:
    card, _, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020001")
    assert tx(card, "00B00000000000") == (FREE, "9000")  # Le=0000 -> 65536
    assert tx(card, "00B0000000 0100".replace(" ", "")) == (FREE[:256], "9000")


def test_read_binary_short_ef_form_selects_the_ef() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert tx(card, "00B0810205") == (FREE[2:7], "9000")
    assert card.current_ef is not None and card.current_ef.fid == 1
    assert tx(card, "00B09F0001")[1] == "6A82"  # SFI 31 not present
    assert tx(card, "00B0C10001")[1] == "6A86"  # RFU bits set
    assert tx(card, "00B0800001")[1] == "6A86"  # SFI 0


def test_read_binary_without_current_ef_and_wrong_cases() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert tx(card, "00B0000001")[1] == "6986"
    tx(card, "00A4020C020001")
    assert tx(card, "00B00000")[1] == "6700"  # no Le
    assert tx(card, "00B000000101")[1] == "6700"  # data field
    assert tx(card, "00B00000010100")[1] == "6700"


def test_access_rules_pin_and_never() -> None:
    card, _, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020002")
    assert tx(card, "00B0000000")[1] == "6982"
    tx(card, "00A4020C020010")
    assert tx(card, "002000800431323334")[1] == "9000"
    tx(card, "00A4020C020002")
    data, sw = tx(card, "00B0000000")
    assert sw == "9000" and data == SECRET + b"\xff" * (32 - len(SECRET))
    for fid in ("0003", "0004", "0010"):  # never readable: plain, key and PIN EFs
        tx(card, "00A4020C02" + fid)
        assert tx(card, "00B0000001")[1] == "6982"


# ---------------------------------------------------------------- class / instruction


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("FFA4040C00", "6E00"),
        ("A0A40000", "6E00"),
        ("40B00000", "6881"),  # further interindustry class: logical channel 4
        ("7FB00000", "6881"),
        ("01B0000001", "6881"),
        ("0CB0000001", "6882"),
        ("10B0000001", "6884"),
        ("00FF0000", "6D00"),
        ("00B10000", "6D00"),
        ("802A0080", "6D00"),  # no proprietary commands on this card
        ("002C0000", "6982"),
        ("00", "6700"),
        ("00A404", "6700"),
        ("00A4040C05A0", "6700"),
    ],
)
def test_class_instruction_and_malformed(apdu: str, sw: str) -> None:
    card, _, _ = make_card()
    assert tx(card, apdu)[1] == sw


def test_get_data_only_at_mf_level() -> None:
    card, _, _ = make_card()
    assert tx(card, "00CA5F5100") == (b"\x3b\x00", "9000")
    assert tx(card, "00CADF3005")[1] == "6A88"
    select_a(card)
    assert tx(card, "00CA5F5100")[1] == "6A88"


# ---------------------------------------------------------------- PINs


def verify(card: Card, pin: bytes | None) -> str:
    tx(card, "00A4020C020010")
    if pin is None:
        return tx(card, "00200080")[1]
    return tx(card, f"00200080{len(pin):02X}{pin.hex()}")[1]


def test_empty_verify_reports_tries_even_when_verified() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert verify(card, None) == "63C3"
    assert verify(card, b"1234") == "9000"
    assert verify(card, None) == "63C3"
    assert (AID_A, 0x10) in card.verified


def test_wrong_pin_counts_down_blocks_and_6984() -> None:
    card, state, _ = make_card()
    select_a(card)
    assert verify(card, b"0000") == "63C2"
    assert verify(card, b"0000") == "63C1"
    assert verify(card, b"0000") == "63C0"
    assert verify(card, b"1234") == "6984"  # right PIN, but blocked
    assert verify(card, None) == "63C0"
    assert state.tries_left == 0


def test_right_pin_restores_counter_and_wrong_pin_clears_status() -> None:
    card, state, _ = make_card()
    select_a(card)
    assert verify(card, b"0000") == "63C2"
    assert verify(card, b"1234") == "9000"
    assert state.tries_left == 3
    assert verify(card, b"9999") == "63C2"
    assert (AID_A, 0x10) not in card.verified


def test_counter_saved_before_comparison() -> None:
    """The first commit of a VERIFY already holds the spent try, right PIN or wrong."""
    card, state, counter = make_card()
    select_a(card)
    before = len(counter.disk)
    assert verify(card, b"1234") == "9000"
    first_write = counter.disk[before][id(state)]
    assert isinstance(first_write, PinState) and first_write.tries_left == 2
    assert state.tries_left == 3


def test_crash_after_counter_saved_still_counts_a_try() -> None:
    """Simulate power loss right after the counter write: the try stays spent."""
    card, state, counter = make_card()

    class PowerLoss(Exception):
        pass

    select_a(card)
    counter.crash_after_save = PowerLoss
    assert verify(card, b"1234") == "6F00"  # the card died mid-command
    disk = counter.disk[-1][id(state)]
    assert isinstance(disk, PinState) and disk.tries_left == 2
    assert (AID_A, 0x10) not in card.verified


def test_verify_reference_forms() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert tx(card, "00200080")[1] == "6A88"  # no current EF
    tx(card, "00A4020C020001")
    assert tx(card, "00200080")[1] == "6A88"  # current EF is not a PIN
    assert tx(card, "00200090")[1] == "63C3"  # 80|SFI 0x10 without SELECT
    assert tx(card, "00200081")[1] == "6A88"  # SFI 1 is not a PIN
    assert tx(card, "00200001")[1] == "6A86"
    assert tx(card, "00200180")[1] == "6A86"


def test_change_reference_data() -> None:
    card, state, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020010")
    assert tx(card, "0024018004" + b"5678".hex())[1] == "6982"  # not verified
    assert verify(card, b"1234") == "9000"
    assert tx(card, "0024018003" + b"567".hex())[1] == "6A80"  # wrong form
    assert tx(card, "00240180")[1] == "6700"
    assert tx(card, "0024008004" + b"5678".hex())[1] == "6A86"
    assert tx(card, "0024018004" + b"5678".hex())[1] == "9000"
    assert state.value == "5678"
    card.power_on()
    select_a(card)
    assert verify(card, b"1234") == "63C2"
    assert verify(card, b"5678") == "9000"


def test_unset_pin_cannot_be_verified() -> None:
    card, state, _ = make_card()
    state.value = None
    select_a(card)
    assert verify(card, None) == "63C0"
    assert verify(card, b"1234") == "6984"


def test_admin_block_and_unblock() -> None:
    card, state, _ = make_card()
    pin = card.find_pin(AID_A, 0x10)
    pin.block()
    select_a(card)
    assert verify(card, b"1234") == "6984"
    pin.reset("4321")
    assert verify(card, None) == "63C3"
    assert verify(card, b"4321") == "9000"


# ---------------------------------------------------------------- security status


def test_power_events_clear_security_status() -> None:
    card, _, _ = make_card()
    for clear in (card.power_on, card.reset, card.power_off):
        select_a(card)
        assert verify(card, b"1234") == "9000"
        clear()
        if card.current_df is None:
            select_a(card)
        tx(card, "00A4020C020002")
        assert tx(card, "00B0000001")[1] == "6982", clear


def test_reselecting_the_current_application_keeps_status() -> None:
    """JICSAP 5.1.3 rule 2: SELECT of the DF already current keeps its security status."""
    card, _, _ = make_card()
    select_a(card)
    assert verify(card, b"1234") == "9000"
    select_a(card)
    tx(card, "00A4020C020002")
    assert tx(card, "00B0000001") == (SECRET[:1], "9000")


def test_a_card_whose_rules_clear_on_any_select() -> None:
    from jpki_sim.card.rules import CardRules

    card, _, _ = make_card()
    card.rules = CardRules(reselect_keeps_status=False)
    select_a(card)
    assert verify(card, b"1234") == "9000"
    select_a(card)
    tx(card, "00A4020C020002")
    assert tx(card, "00B0000001")[1] == "6982"


def test_selecting_another_application_clears_status() -> None:
    card, _, _ = make_card()
    select_a(card)
    assert verify(card, b"1234") == "9000"
    assert tx(card, "00A4040C05" + AID_B.hex())[1] == "9000"
    assert tx(card, "00A4020C020001")[1] == "9000"
    assert tx(card, "00B0000000") == (b"other app", "9000")
    select_a(card)
    tx(card, "00A4020C020002")
    assert tx(card, "00B0000001")[1] == "6982"


# ---------------------------------------------------------------- never crash


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_a_status_word_and_leave_pins_alone(raw: bytes) -> None:
    card, state, counter = make_card()
    select_a(card)
    resp = card.process(raw)
    assert len(resp) >= 2
    sw1 = resp[-2]
    assert sw1 in (0x90, 0x61, 0x62, 0x63, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E)
    if not (len(raw) > 5 and raw[0] == 0 and raw[1] in (0x20, 0x24)):
        # only VERIFY / CHANGE REFERENCE DATA may touch the PIN
        assert (state.value, state.tries_left) == ("1234", 3)
        assert counter.commits == 0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from((0xA4, 0xB0, 0xCA)), st.binary(min_size=2, max_size=40))
def test_rejected_commands_do_not_move_the_selection(ins: int, rest: bytes) -> None:
    raw = bytes((0x00, ins)) + rest
    card, _, _ = make_card()
    select_a(card)
    tx(card, "00A4020C020001")
    resp = card.process(raw)
    if resp[-2:] != b"\x90\x00":
        assert card.current_df is not None and card.current_df.aid == AID_A
        assert card.current_ef is not None and card.current_ef.fid == 1


# ---------------------------------------------------------------- PIN machine model


class PinMachine(RuleBasedStateMachine):
    """The card's PIN against a simple model: value, tries, verified."""

    @initialize()
    def setup(self) -> None:
        self.card, self.state, _ = make_card()
        select_a(self.card)
        self.value = "1234"
        self.tries = 3
        self.verified = False

    def _verify(self, pin: bytes | None) -> str:
        return verify(self.card, pin)

    @rule()
    def right_pin(self) -> None:
        sw = self._verify(self.value.encode())
        if self.tries == 0:
            assert sw == "6984"
        else:
            assert sw == "9000"
            self.tries, self.verified = 3, True

    @rule(pin=st.text(alphabet="0123456789", min_size=1, max_size=8))
    def some_pin(self, pin: str) -> None:
        sw = self._verify(pin.encode())
        if self.tries == 0:
            assert sw == "6984"
        elif pin == self.value:
            assert sw == "9000"
            self.tries, self.verified = 3, True
        else:
            self.tries -= 1
            self.verified = False
            assert sw == f"63C{self.tries}"

    @rule()
    def query(self) -> None:
        assert self._verify(None) == f"63C{self.tries}"

    @precondition(lambda self: self.verified)
    @rule(new=st.text(alphabet="0123456789", min_size=4, max_size=4))
    def change(self, new: str) -> None:
        tx(self.card, "00A4020C020010")
        assert tx(self.card, "0024018004" + new.encode().hex())[1] == "9000"
        self.value, self.tries = new, 3

    @rule()
    def power_cycle(self) -> None:
        self.card.power_off()
        self.card.power_on()
        select_a(self.card)
        self.verified = False

    @rule()
    def admin_reset(self) -> None:
        self.card.find_pin(AID_A, 0x10).unblock()
        self.tries = 3

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "card"):
            return
        assert self.state.tries_left == self.tries
        assert self.state.value == self.value
        assert ((AID_A, 0x10) in self.card.verified) == self.verified


TestPinMachine = PinMachine.TestCase
TestPinMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# ---------------------------------------------------------------- what a profile chooses


def test_select_p2_00_returns_the_fci_the_profile_gave() -> None:
    fci_df = bytes.fromhex("6F 07 84 05 A0 00 00 00 01".replace(" ", ""))
    fci_ef = bytes.fromhex("62 03 80 01 10".replace(" ", ""))
    df = DedicatedFile(AID_A, "a", [TransparentEF(0x0001, b"x", fci=fci_ef),
                                    TransparentEF(0x0002, b"y")], fci=fci_df)
    card = Card(bytes.fromhex("3B00"), [df])
    card.power_on()
    assert tx(card, "00A4040005" + AID_A.hex()) == (fci_df, "9000")  # P2=00: FCI
    assert tx(card, "00A4040C05" + AID_A.hex()) == (b"", "9000")  # P2=0C: nothing
    assert tx(card, "00A4020002" + "0001") == (fci_ef, "9000")
    assert tx(card, "00A4020002" + "0002") == (b"", "9000")  # an EF without FCI


def test_duplicate_fids_short_ids_and_aids_are_refused_when_the_card_is_built() -> None:
    with pytest.raises(ValueError, match="two EFs with file identifier 0001"):
        DedicatedFile(AID_A, "a", [TransparentEF(0x0001, b"x"), TransparentEF(0x0001, b"y")])
    with pytest.raises(ValueError, match="two EFs with short identifier 05"):
        DedicatedFile(AID_A, "a", [TransparentEF(0x0005, b"x"),
                                   TransparentEF(0x0105, b"y", sfi=5)])
    a = DedicatedFile(AID_A, "a", [])
    with pytest.raises(ValueError, match="two applications with AID A000000001"):
        Card(bytes.fromhex("3B00"), [a, DedicatedFile(AID_A, "again", [])])


def test_a_profile_adds_instructions_of_any_class_and_replaces_iso_ones() -> None:
    from jpki_sim.iso7816.ins import instruction_key

    def get_data_odd(card: Card, apdu: object) -> bytes:
        return b"\x53\x01\x2a"

    def no_reads(card: Card, apdu: object) -> bytes:
        raise CardError(SW.COMMAND_NOT_ALLOWED)

    plain, _, _ = make_card()
    assert tx(plain, "00CB3FFF00")[1] == "6D00"  # not an engine instruction
    assert tx(plain, "00870000")[1] == "6D00"
    card = Card(bytes.fromhex("3B00"), [DedicatedFile(AID_A, "a", [TransparentEF(1, b"z")])],
                instructions={instruction_key(0x00, 0xCB): get_data_odd,
                              instruction_key(0x00, 0xB0): no_reads})
    card.power_on()
    assert tx(card, "00CB3FFF00") == (b"\x53\x01\x2a", "9000")
    tx(card, "00A4040C05" + AID_A.hex())
    tx(card, "00A4020C020001")
    assert tx(card, "00B0000001")[1] == "6900"  # the profile's READ BINARY replaced ISO's
    assert tx(card, "80CB3FFF00")[1] == "6D00"  # a proprietary class is another key


def test_every_status_word_the_engine_answers_is_an_enum_member() -> None:
    card, _, _ = make_card()
    answers = {tx(card, h)[1] for h in ("FFA40000", "01A40000", "0CB00000", "10A40000",
                                        "20A40000", "00EE0000", "00A4", "00200080")}
    assert all(SW(int(a, 16)) for a in answers)
