"""The 共通カードAP and the 住基AP, and the card's JICSAP commands (CHANGE KEY, SET SESSION KEY).

What the public sources know of these applications (MC ``ap/common.rs``,
``ap/juki.rs``), assembled for the engine:

* 共通AP: EF 0001 (record-structured; record 1 is the card info), EF 0002 (one
  record, a 16-byte key reference), key 0019 (INTERNAL AUTHENTICATE with no
  credential: ``sha256WithRSAEncryption`` over the challenge, a per-card key
  whose public half is on no EF), PIN 001C (4 digits);
* 住基AP: EF 0002 as in the 共通AP, PIN 001C. Nothing else of it is public, so
  every other FID answers 6A82 as an unknown EF does.

Both PIN 001C keys are changed with JICSAP CHANGE KEY ``80 32 00 80 Lc new``
after a VERIFY of the current value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jpki_sim.card.engine import Card, change_verified_pin
from jpki_sim.card.files import (
    ALWAYS,
    DedicatedFile,
    ElementaryFile,
    KeyEF,
    PinEF,
    RecordEF,
)
from jpki_sim.card.pins import RetryCounter
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.jpki import chipdata
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.state import CardState

#: the longest challenge key 0019 takes (a short Lc; MC ``Card::internal_authenticate``)
MAX_CHALLENGE = 255
#: P1 of CHANGE KEY when it changes the key of the current EF (MC ``Card::change_key``)
P1_CHANGE_KEY = 0x00


class InternalAuthKey:
    """共通AP key 0019: signs a challenge, PKCS#1 v1.5 over its SHA-256 DigestInfo."""

    def __init__(self, pem: str | None) -> None:
        self.pem = pem
        self._key: Any = None

    def __call__(self, challenge: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if len(challenge) > MAX_CHALLENGE:
            raise CardError(SW.WRONG_LENGTH)
        if self.pem is None:
            # a card file from before the key existed: the reference holds no key
            raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._key = load_pem_private_key(self.pem.encode(), password=None)
        signature: bytes = self._key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
        return signature


def common_application(state: CardState, pin: Callable[[str], RetryCounter]) -> DedicatedFile:
    info = state.info
    record = chipdata.card_info_record(info.serial, info.municipality.code, state.expires)
    key = InternalAuthKey(info.internal_auth_key)
    files: list[ElementaryFile] = [
        RecordEF(jpki.EF_COMMON_CARD_INFO, [record]),
        RecordEF(jpki.EF_COMMON_KEY_REFERENCE, [chipdata.KEY_REFERENCE]),
        KeyEF(jpki.EF_COMMON_AUTH_KEY, key, use=ALWAYS, authenticate=key),
        PinEF(jpki.EF_COMMON_PIN, pin("common")),
    ]
    return DedicatedFile(jpki.COMMON_AID, "common", files)


def juki_application(pin: Callable[[str], RetryCounter]) -> DedicatedFile:
    files: list[ElementaryFile] = [
        RecordEF(jpki.EF_JUKI_KEY_REFERENCE, [chipdata.KEY_REFERENCE]),
        PinEF(jpki.EF_JUKI_PIN, pin("juki")),
    ]
    return DedicatedFile(jpki.JUKI_AID, "juki", files)


# ---------------------------------------------------------------- JICSAP commands


def change_key(card: Card, apdu: CommandApdu) -> bytes:
    """``80 32 00 P2 Lc new``: JICSAP CHANGE KEY of the PIN P2 names, verified before.

    The same checks as CHANGE REFERENCE DATA: 6982 unless the current value was
    verified in this session, 6A80 for a value of the wrong form, 6984 blocked.
    """
    if apdu.p1 != P1_CHANGE_KEY:
        raise CardError(SW.INCORRECT_P1P2)
    return change_verified_pin(card, apdu)


#: what SET SESSION KEY answers per application (MC: 66F1 in the 共通AP and the
#: surface AP, "the security environment itself is faulty"; 6982 in the 住基AP and
#: the JPKI AP)
SET_SESSION_KEY_ANSWERS = {
    jpki.COMMON_AID: SW.SECURITY_ENVIRONMENT_FAULTY,
    jpki.SURFACE_AID: SW.SECURITY_ENVIRONMENT_FAULTY,
    jpki.JUKI_AID: SW.SECURITY_STATUS_NOT_SATISFIED,
    jpki.JPKI_AID: SW.SECURITY_STATUS_NOT_SATISFIED,
}


def set_session_key(card: Card, apdu: CommandApdu) -> bytes:
    """``80 AE``: secure messaging is opened in the helper AP only, not emulated yet.

    **Chosen**: at the MF level and in the helper AP the command answers 6D00
    until the helper AP's secure messaging is emulated.
    """
    df = card.current_df
    answer = SET_SESSION_KEY_ANSWERS.get(df.aid) if df is not None else None
    raise CardError(answer if answer is not None else SW.INS_NOT_SUPPORTED)
