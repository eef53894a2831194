"""Assemble the JPKI card (engine + data) from a card state.

The engine is generic; this module is the JPKI card: which applications and
EFs exist, who may read or use them, the PIN policies, the token info and
certificate-presence EFs, and the one proprietary command the card has,
COMPUTE DIGITAL SIGNATURE (``80 2A``).
"""

from __future__ import annotations

from typing import Any

from jpki_sim.card.engine import Card, by_current_ef
from jpki_sim.card.files import (
    ALWAYS,
    Access,
    DedicatedFile,
    ElementaryFile,
    KeyEF,
    PinEF,
    TransparentEF,
    pin_verified,
)
from jpki_sim.card.pins import RetryCounter
from jpki_sim.card.store import CardStore
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.state import CardState

#: capacity of the certificate EFs; the DER is followed by FF filler up to it.
#: Real capacities are not public; a real auth certificate is 1583 bytes.
CERT_EF_CAPACITY = 2048
#: GET DATA tag of the contact ATR, answered at MF level
DO_ATR = 0x5F51
#: EF 0008 byte for "this certificate is present"
CERT_PRESENT = 0x8F

#: input length limits of COMPUTE DIGITAL SIGNATURE per scheme (P1)
SIGN_INPUT_LIMITS = {
    jpki.SIGN_PKCS1: (1, 245),
    jpki.SIGN_SHA256_RAW: (1, 255),
    jpki.SIGN_WRAP_SHA256: (32, 32),
    jpki.SIGN_SHA256_PKCS1: (1, 255),
    jpki.SIGN_PSS_SHA256: (32, 32),
    jpki.SIGN_SHA256_PSS: (1, 255),
}
SIGNATURE_LENGTH = 256


class CardKey:
    """A private key on the card, parsed from PEM on first use and kept."""

    def __init__(self, pem: str | None) -> None:
        self.pem = pem
        self._key: Any = None

    def private_key(self) -> Any:
        if self.pem is None:
            return None
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._key = load_pem_private_key(self.pem.encode(), password=None)
        return self._key


def cert_presence(state: CardState) -> bytes:
    """EF 0008: sign cert, auth cert, RFU: 8F where present, 00 where not."""
    return bytes(
        (
            CERT_PRESENT if state.sign else 0x00,
            CERT_PRESENT if state.auth else 0x00,
            0x00,
        )
    )


def _cert_ef(fid: int, der: bytes | None, read: Access) -> TransparentEF:
    if der is None:
        # The EF exists on every card; without a certificate it holds nothing.
        return TransparentEF(fid, b"", read=read)
    return TransparentEF(fid, der, read=read, capacity=CERT_EF_CAPACITY)


def compute_digital_signature(card: Card, apdu: CommandApdu) -> bytes:
    """``80 2A P1 P2 Lc data [Le]``: sign with the key EF current (P2=80) or named (80|SFI)."""
    from jpki_sim.profiles.jpki.signing import sign_scheme

    df, ef = card.referenced_key(apdu.p2)
    card.require(ef.use, df)
    limits = SIGN_INPUT_LIMITS.get(apdu.p1)
    if limits is None:
        raise CardError(SW.INCORRECT_P1P2)
    lo, hi = limits
    if not lo <= len(apdu.data) <= hi:
        raise CardError(SW.WRONG_LENGTH)
    if apdu.ne is not None and apdu.ne < SIGNATURE_LENGTH:
        raise CardError(SW.WRONG_LENGTH)
    key = ef.key.private_key()
    if key is None:
        raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
    return sign_scheme(key, apdu.p1, apdu.data)


def build_card(store: CardStore[CardState], *, atr: bytes | None = None) -> Card:
    """The JPKI card for ``store``'s state. PIN counter changes are written through ``store``."""
    from jpki_sim.profiles.jpki import records

    st = store.state

    def pin(name: str) -> RetryCounter:
        return RetryCounter(
            lambda: store.state.pins[name],
            store,
            check_format=jpki.PIN_POLICIES[name].accepts,
            name=name,
        )

    auth_pin = pin_verified(jpki.EF_AUTH_PIN)
    sign_pin = pin_verified(jpki.EF_SIGN_PIN)
    jpki_files: list[ElementaryFile] = [
        _cert_ef(jpki.EF_SIGN_CERT, st.sign.cert_der if st.sign else None, sign_pin),
        TransparentEF(jpki.EF_SIGN_CA_CERT, st.sign_ca_der, capacity=CERT_EF_CAPACITY),
        TransparentEF(
            jpki.EF_TOKEN_INFO,
            records.encode_token_info(jpki.TOKEN_LABEL, st.application_id[-16:]),
        ),
        TransparentEF(jpki.EF_CERT_PRESENCE, cert_presence(st)),
        _cert_ef(jpki.EF_AUTH_CERT, st.auth.cert_der if st.auth else None, ALWAYS),
        TransparentEF(jpki.EF_AUTH_CA_CERT, st.auth_ca_der, capacity=CERT_EF_CAPACITY),
        KeyEF(jpki.EF_AUTH_KEY, CardKey(st.auth.key_pem if st.auth else None), use=auth_pin),
        PinEF(jpki.EF_AUTH_PIN, pin("auth")),
        KeyEF(jpki.EF_SIGN_KEY, CardKey(st.sign.key_pem if st.sign else None), use=sign_pin),
        PinEF(jpki.EF_SIGN_PIN, pin("sign")),
    ]
    ident = st.identity
    helper_pin = pin_verified(jpki.EF_HELPER_PIN)
    helper_files: list[ElementaryFile] = [
        TransparentEF(
            jpki.EF_HELPER_MY_NUMBER,
            records.encode_helper_my_number(ident.my_number),
            read=helper_pin,
        ),
        TransparentEF(
            jpki.EF_HELPER_BASIC_INFO,
            records.encode_helper_basic_info(
                name=ident.name, address=ident.address, birthdate=ident.birthdate, sex=ident.sex
            ),
            read=helper_pin,
        ),
        PinEF(jpki.EF_HELPER_PIN, pin("helper")),
    ]
    card_atr = atr or jpki.ATR
    return Card(
        card_atr,
        [
            DedicatedFile(jpki.JPKI_AID, "jpki", jpki_files),
            DedicatedFile(jpki.HELPER_AID, "helper", helper_files),
        ],
        instructions={
            instruction_key(CLA_PROPRIETARY, jpki.INS_COMPUTE_SIGNATURE): compute_digital_signature
        },
        references=by_current_ef,
        data_objects={DO_ATR: card_atr},
        sm_refused_sw=SW.SM_REFUSED,
    )
