"""Status words: an IntEnum of every one a card answers, and a table of meanings.

The table covers ISO/IEC 7816-4; a card profile adds the readings of its own
words (:func:`add_meanings`, called when a profile is registered). ``describe(sw)``
gives e.g. ``"6982 security status not satisfied"``; families with a parameter in
the low byte (61xx, 63Cx, 6Cxx) are described with their parameter.
:func:`tries_left` is the one decoder of ``63Cx``.
"""

from __future__ import annotations

from enum import IntEnum


class SW(IntEnum):
    OK = 0x9000
    # warnings
    END_OF_FILE = 0x6282
    VERIFY_FAILED = 0x6300  # with no counter information
    # execution / checking errors
    MEMORY_FAILURE = 0x6581
    SECURITY_ENVIRONMENT_FAULTY = 0x66F1  # proprietary (JICSAP family): no SM set up here
    WRONG_LENGTH = 0x6700
    CLA_FUNCTION_NOT_SUPPORTED = 0x6800
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    LAST_COMMAND_EXPECTED = 0x6883
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_NOT_ALLOWED = 0x6900
    COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_OF_USE_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED_NO_EF = 0x6986
    SM_DATA_OBJECTS_MISSING = 0x6987
    SM_DATA_OBJECTS_INCORRECT = 0x6988
    SM_REFUSED = 0x69FC  # JPKI-proprietary: secure messaging refused
    WRONG_PARAMETERS_IN_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCE_DATA_NOT_FOUND = 0x6A88
    WRONG_PARAMETERS = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00
    # retry counter reports: 63Cx, x tries left (63C0: blocked, or the try that blocked it)
    TRIES_LEFT_0 = 0x63C0
    TRIES_LEFT_1 = 0x63C1
    TRIES_LEFT_2 = 0x63C2
    TRIES_LEFT_3 = 0x63C3
    TRIES_LEFT_4 = 0x63C4
    TRIES_LEFT_5 = 0x63C5
    TRIES_LEFT_6 = 0x63C6
    TRIES_LEFT_7 = 0x63C7
    TRIES_LEFT_8 = 0x63C8
    TRIES_LEFT_9 = 0x63C9
    TRIES_LEFT_10 = 0x63CA
    TRIES_LEFT_11 = 0x63CB
    TRIES_LEFT_12 = 0x63CC
    TRIES_LEFT_13 = 0x63CD
    TRIES_LEFT_14 = 0x63CE
    TRIES_LEFT_15 = 0x63CF


_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6282: "end of file reached before reading Le bytes",
    0x6300: "verification failed",
    0x6581: "memory failure",
    0x66F1: "security environment faulty (proprietary)",
    0x6700: "wrong length",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6900: "command not allowed",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable (PIN blocked)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x69FC: "secure messaging refused (proprietary)",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2 (offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}


#: meanings of card-specific words, added by card profiles (see :func:`add_meanings`)
_ADDED: dict[int, str] = {}


def add_meanings(table: dict[int, str]) -> None:
    """Teach the table a card's own status words (a profile does this when registered)."""
    _ADDED.update({sw & 0xFFFF: text for sw, text in table.items()})


def as_sw(sw: int) -> SW | int:
    """The enum member of ``sw`` when the table has one (every word a card answers does)."""
    try:
        return SW(sw & 0xFFFF)
    except ValueError:
        return sw & 0xFFFF


def meaning(sw: int) -> str:
    """Plain-language meaning of a status word (without the hex); a card's own reading first."""
    sw &= 0xFFFF
    if sw in _ADDED:
        return _ADDED[sw]
    return iso_meaning(sw)


def iso_meaning(sw: int) -> str:
    """The meaning ISO 7816-4 (or the family of the word) gives, whatever card answered it."""
    sw &= 0xFFFF
    if sw in _MEANINGS:
        return _MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        n = sw2 & 0x0F
        if n == 0:
            return "verification failed, no tries left (blocked)"
        return f"verification failed or PIN status: {n} {'try' if n == 1 else 'tries'} left"
    if sw1 == 0x62:
        return "warning: state of non-volatile memory unchanged"
    if sw1 == 0x63:
        return "warning: state of non-volatile memory changed"
    if sw1 == 0x64:
        return "execution error: state of non-volatile memory unchanged"
    if sw1 == 0x65:
        return "execution error: state of non-volatile memory changed"
    if sw1 == 0x66:
        return "security-related issue"
    if sw1 == 0x67:
        return "wrong length"
    if sw1 == 0x68:
        return "functions in CLA not supported"
    if sw1 == 0x69:
        return "command not allowed"
    if sw1 == 0x6A:
        return "wrong parameters P1-P2"
    return "unknown status word"


def describe(sw: int) -> str:
    """``'6982 security status not satisfied'``."""
    return f"{sw & 0xFFFF:04X} {meaning(sw)}"


def tries_left(sw: int) -> int | None:
    """Tries left carried by a 63Cx status word, else None. The one 63Cx decoder."""
    if (sw & 0xFFF0) == SW.TRIES_LEFT_0:
        return sw & 0x0F
    return None


def is_success(sw: int) -> bool:
    return sw == SW.OK or (sw >> 8) == 0x61


#: the 63Cx words by tries left, so the retry-counter query needs no enum lookup
_TRIES_SW = tuple(SW(SW.TRIES_LEFT_0 | n) for n in range(16))


def pin_status_sw(tries: int) -> SW:
    """The 63Cx word reporting ``tries`` tries left (capped at 15)."""
    # chained comparisons, not min/max: this runs on every retry-counter query
    return _TRIES_SW[tries if 0 <= tries <= 0x0F else 0 if tries < 0 else 0x0F]
