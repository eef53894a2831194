"""Status words: an IntEnum of the ones the card uses, and a table of meanings.

The table covers ISO/IEC 7816-4 plus the JPKI-specific readings. ``describe(sw)``
gives e.g. ``"6982 security status not satisfied"``; families with a parameter in
the low byte (61xx, 63Cx, 6Cxx) are described with their parameter.
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


_MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6282: "end of file reached before reading Le bytes",
    0x6300: "verification failed",
    0x6581: "memory failure",
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
    0x69FC: "secure messaging refused (JPKI)",
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


def meaning(sw: int) -> str:
    """Plain-language meaning of a status word (without the hex)."""
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
    """Tries left carried by a 63Cx status word, else None."""
    if (sw & 0xFFF0) == 0x63C0:
        return sw & 0x0F
    return None


def is_success(sw: int) -> bool:
    return sw == 0x9000 or (sw >> 8) == 0x61


def pin_status_sw(tries: int) -> int:
    """The 63Cx word reporting ``tries`` tries left (capped at 15)."""
    # chained comparisons, not min/max: this runs on every retry-counter query
    return 0x63C0 | (tries if 0 <= tries <= 0x0F else 0 if tries < 0 else 0x0F)
