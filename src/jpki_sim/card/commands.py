"""Interindustry commands beyond files and PINs: records, data objects, challenges, keys.

READ RECORD, GET DATA, GET CHALLENGE and INTERNAL AUTHENTICATE, as the engine
answers them for any card; what differs between cards comes from the card's
:class:`~jpki_sim.card.rules.CardRules` and from what its profile put in the
file system (record EFs, data objects, a key's INTERNAL AUTHENTICATE hook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jpki_sim.card.files import ElementaryFile, KeyEF, RecordEF
from jpki_sim.iso7816 import ins as I
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.sw import SW

if TYPE_CHECKING:
    from jpki_sim.card.engine import Card


def _fits(card: Card, apdu: CommandApdu, answer: bytes) -> bytes:
    """``answer`` when the command's Le can take it (no Le: taken as "whatever it is")."""
    if apdu.ne is not None and apdu.ne < len(answer):
        raise CardError(card.rules.le_too_short)
    return answer


# ---------------------------------------------------------------- READ RECORD


def read_record(card: Card, apdu: CommandApdu) -> bytes:
    """``00 B2 P1 P2 Le``: P1 the record number, P2 = SFI << 3 | 100 (or 101: P1 to the end).

    SFI 0 is the current EF; an EF named by SFI becomes current once the read
    succeeds, as with READ BINARY.
    """
    if apdu.data or apdu.ne is None:
        raise CardError(SW.WRONG_LENGTH)
    how = apdu.p2 & I.P2_RECORD_HOW_BITS
    sfi = apdu.p2 >> I.P2_RECORD_SFI_SHIFT
    if sfi == I.P2_RECORD_SFI_RFU:
        raise CardError(SW.INCORRECT_P1P2)
    if how not in (I.P2_RECORD_NUMBER_IN_P1, I.P2_RECORDS_FROM_P1) or (
        how == I.P2_RECORDS_FROM_P1 and not card.rules.records_to_end
    ):
        # by record identifier, first/last/next/previous: no record pointer here
        raise CardError(SW.FUNCTION_NOT_SUPPORTED)
    df = card.current_df
    ef: ElementaryFile | None
    if sfi:
        ef = df.by_sfi.get(sfi) if df is not None else None
        if ef is None:
            raise CardError(SW.FILE_NOT_FOUND)
    else:
        ef = card.current_ef
        if ef is None:
            raise CardError(SW.COMMAND_NOT_ALLOWED_NO_EF)
    assert df is not None  # an EF is only ever current inside a DF
    card.require(ef.read, df)
    if not isinstance(ef, RecordEF):
        raise CardError(SW.COMMAND_INCOMPATIBLE_WITH_FILE)
    number = apdu.p1
    if number == 0:
        # "the current record": nothing on this card sets a record pointer
        raise CardError(SW.RECORD_NOT_FOUND)
    first = ef.record(number)
    if first is None:
        raise CardError(SW.RECORD_NOT_FOUND)
    answer = first
    if how == I.P2_RECORDS_FROM_P1:
        answer = b"".join(ef.records[number - 1 :])
    answer = _fits(card, apdu, answer)
    card.current_ef = ef
    return answer


# ---------------------------------------------------------------- GET DATA


def get_data(card: Card, apdu: CommandApdu) -> bytes:
    """``00 CA P1 P2 Le``: the data object with tag P1||P2.

    Objects the profile gave for the MF level answer only while no application
    is current (after power-on or reset); those it gave for anywhere answer in
    every state. An object longer than Ne is refused (``rules.le_too_short``):
    large ones need an extended Le.
    """
    if apdu.data:
        raise CardError(SW.WRONG_LENGTH)
    tag = apdu.p1p2
    value = card.data_objects_anywhere.get(tag)
    if value is None and card.current_df is None:
        value = card.data_objects.get(tag)
    if value is None:
        raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
    if apdu.ne is None:
        raise CardError(SW.WRONG_LENGTH)
    return _fits(card, apdu, value)


# ---------------------------------------------------------------- GET CHALLENGE


def get_challenge(card: Card, apdu: CommandApdu) -> bytes:
    """``00 84 00 00 Le``: Ne bytes from the card's random source (1..rules.challenge_max)."""
    if apdu.p1 != I.P1P2_NONE or apdu.p2 != I.P1P2_NONE:
        raise CardError(SW.INCORRECT_P1P2)
    if apdu.extended:
        raise CardError(card.rules.challenge_extended)
    if apdu.data or apdu.ne is None or apdu.ne > card.rules.challenge_max:
        raise CardError(SW.WRONG_LENGTH)
    challenge = card.random(apdu.ne)
    card.last_challenge = challenge
    return challenge


# ---------------------------------------------------------------- INTERNAL AUTHENTICATE


def internal_authenticate(card: Card, apdu: CommandApdu) -> bytes:
    """``00 88 00 P2 Lc challenge [Le]``: the key P2 names answers, by its profile's hook.

    P2 names the key by the card's reference rule. The key's use condition is
    checked first (6982), then whether it takes this command at all (6985).
    """
    if apdu.p1 != I.P1P2_NONE:
        raise CardError(SW.INCORRECT_P1P2)
    ef = card.references(card, apdu.p2)
    df = card.current_df
    if not isinstance(ef, KeyEF) or df is None:
        raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
    if not apdu.data:
        raise CardError(SW.WRONG_LENGTH)
    card.require(ef.use, df)
    if ef.authenticate is None:
        raise CardError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
    return _fits(card, apdu, ef.authenticate(apdu.data))
