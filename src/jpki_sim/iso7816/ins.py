"""ISO/IEC 7816-4 instruction bytes and the parameter values the engine and clients use.

Class bytes are split as ISO 7816-4 5.4.1 does: the *class group* (interindustry
``0x00`` or proprietary ``0x80``) and the bits for logical channels, secure
messaging and command chaining.
"""

from __future__ import annotations

from enum import IntEnum


class INS(IntEnum):
    """Interindustry instructions (ISO/IEC 7816-4 table 4)."""

    VERIFY = 0x20
    CHANGE_REFERENCE_DATA = 0x24
    RESET_RETRY_COUNTER = 0x2C
    GET_CHALLENGE = 0x84
    INTERNAL_AUTHENTICATE = 0x88
    SELECT = 0xA4
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    GET_DATA_ODD = 0xCB


#: class groups
CLA_INTERINDUSTRY = 0x00
CLA_PROPRIETARY = 0x80
#: the class bits the engine looks at before the group
CLA_CHANNEL_BITS = 0x03
#: bit 7 set (``01xx xxxx``): the further interindustry classes, logical channels 4-19
CLA_FURTHER_INTERINDUSTRY = 0x40
CLA_FURTHER_CHANNEL_BITS = 0x0F
CLA_SECURE_MESSAGING_BITS = 0x0C
CLA_CHAINING_BIT = 0x10
CLA_GROUP_BITS = 0xE0
#: reserved for PPS, never a class byte
CLA_INVALID = 0xFF


def instruction_key(cla_group: int, ins: int) -> int:
    """The key of an instruction table entry: class group (00 or 80) and INS."""
    return (cla_group << 8) | ins


# SELECT (ISO 7816-4 7.1.1)
P1_SELECT_MF_DF_EF = 0x00  # by file identifier (or the MF with no data)
P1_SELECT_CHILD_DF = 0x01
P1_SELECT_EF_UNDER_DF = 0x02
P1_SELECT_PARENT_DF = 0x03
P1_SELECT_BY_DF_NAME = 0x04
P1_SELECT_PATH_FROM_MF = 0x08
P1_SELECT_PATH_FROM_DF = 0x09
#: P2 bits 4-3: what to return
P2_SELECT_FCI = 0x00
P2_SELECT_FCP = 0x04
P2_SELECT_FMD = 0x08
P2_SELECT_NO_DATA = 0x0C
P2_SELECT_RETURN_BITS = 0x0C
#: P2 bits 2-1: first occurrence (the only one the engine knows)
P2_SELECT_OCCURRENCE_BITS = 0x03

# VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER (ISO 7816-4 7.5)
#: P2 bit 8: the reference is specific (local to the current DF), else global
P2_SPECIFIC_REFERENCE = 0x80
P2_REFERENCE_NUMBER_BITS = 0x1F
P1_VERIFY = 0x00
P1_CHANGE_NEW_ONLY = 0x01  # CHANGE REFERENCE DATA: the new value only, old one verified before

# READ BINARY (7.2.3): P1 bit 8 set means P1 bits 5-1 are a short EF identifier
P1_READ_BINARY_SFI = 0x80
SFI_BITS = 0x1F
MAX_OFFSET_15_BIT = 0x7FFF

# READ RECORD (7.3.3): P2 bits 3-1 say how P1 names the record, bits 8-4 the SFI
P2_RECORD_NUMBER_IN_P1 = 0x04
P2_RECORDS_FROM_P1 = 0x05  # all records from number P1 to the last
P2_RECORD_HOW_BITS = 0x07
P2_RECORD_SFI_SHIFT = 3
#: P2 bits 8-4 all set: reserved (ISO 7816-4 table 50)
P2_RECORD_SFI_RFU = 0x1F

# GET CHALLENGE (7.5.3) and INTERNAL AUTHENTICATE (7.5.2)
P1P2_NONE = 0x00
