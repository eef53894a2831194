"""Assemble the JPKI card (engine + data) from a card state.

The engine is generic; this module is the My Number card: which applications
and EFs exist (the JPKI AP and the helper AP here, the 共通AP and 住基AP in
:mod:`.common`), who may read or use them, the PIN policies, the token info and
certificate-presence EFs, the MF level's data objects, the rules the card
follows, and its proprietary commands: COMPUTE DIGITAL SIGNATURE (``80 2A``),
JICSAP CHANGE KEY (``80 32``), SET SESSION KEY (``80 AE``).
"""

from __future__ import annotations

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
from jpki_sim.card.rules import CardRules, ChallengeSource, system_random
from jpki_sim.card.store import CardStore
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.jpki import chipdata
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.kenmen import CardKey, helper_application, surface_application
from jpki_sim.profiles.jpki.state import CardState

#: capacity of the certificate EFs; the DER is followed by FF filler up to it.
#: Real capacities are not public; a real auth certificate is 1583 bytes.
CERT_EF_CAPACITY = 2048
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


def _no_new_value(_value: bytes) -> bool:
    return False


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


def signing_key(card: Card, p2: int) -> tuple[DedicatedFile, KeyEF]:
    """The key ``80 2A`` signs with: the EF current (P2=80), named (80|SFI), or P2=00.

    P2=00 is "the application's default key" (MC ``ap/text.rs``, ``ap/surface.rs``):
    the helper AP's 0013 and the surface AP's 001A. **Chosen**: elsewhere (the JPKI
    AP, the MF level) P2=00 answers 6A86 as any other unknown P2.
    """
    df = card.current_df
    if p2 == jpki.P2_DEFAULT_KEY:
        fid = jpki.DEFAULT_SIGNING_KEYS.get(df.aid) if df is not None else None
        ef = df.files.get(fid) if df is not None and fid is not None else None
        if df is None or not isinstance(ef, KeyEF):
            raise CardError(SW.INCORRECT_P1P2)
        return df, ef
    return card.referenced_key(p2)


def compute_digital_signature(card: Card, apdu: CommandApdu) -> bytes:
    """``80 2A P1 P2 Lc data [Le]``: sign with the key P2 names (:func:`signing_key`)."""
    from jpki_sim.profiles.jpki.signing import sign_scheme

    df, ef = signing_key(card, apdu.p2)
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


def contact_atr_of(atr: bytes) -> bytes:
    """The contact ATR a card presented with ``atr`` keeps in GET DATA 5F51.

    A contactless reader makes its ATR up from the card's ATQB (PC/SC part 3:
    ``3B 8x 80 01 ...``); the card still holds its contact ATR, the default
    variant's. Any other ATR is taken as the card's own contact ATR.
    """
    if is_contactless(atr):
        return jpki.ATR
    return atr


def is_contactless(atr: bytes) -> bool:
    """True for a PC/SC part-3 ATR of a contactless card (``3B 8x 80 01``)."""
    return len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01"


def atr_of(state: CardState) -> bytes:
    """The ATR the card file names: a variant of the profile, or hex."""
    variant = state.info.atr
    if variant in jpki.ATRS:
        return jpki.ATRS[variant]
    try:
        return bytes.fromhex(variant)
    except ValueError:
        return jpki.ATR  # a damaged field: the card keeps working with the default


def rules_for(atr: bytes) -> CardRules:
    """The card's rules: a contactless card never sees a reader's warm reset (docs/protocol.md)."""
    return CardRules(reset_restarts=not is_contactless(atr))


def build_card(
    store: CardStore[CardState],
    *,
    atr: bytes | None = None,
    random: ChallengeSource | None = None,
) -> Card:
    """The My Number card for ``store``'s state. PIN counter changes are written through ``store``.

    ``atr`` overrides the card file's ATR variant (``serve --atr``); ``random``
    seeds GET CHALLENGE (default: the system CSPRNG).
    """
    from jpki_sim.profiles.jpki import records
    from jpki_sim.profiles.jpki.common import (
        change_key,
        common_application,
        juki_application,
        set_session_key,
    )

    st = store.state

    def pin(name: str) -> RetryCounter:
        return RetryCounter(
            lambda: store.state.pins[name],
            store,
            # the 照合番号 keys take no new value (their value is the card face's)
            check_format=jpki.PIN_POLICIES[name].accepts if name in jpki.PIN_POLICIES
            else _no_new_value,
            name=name,
        )

    auth_pin = pin_verified(jpki.EF_AUTH_PIN)
    sign_pin = pin_verified(jpki.EF_SIGN_PIN)
    jpki_files: list[ElementaryFile] = [
        _cert_ef(jpki.EF_SIGN_CERT, st.sign.cert_der if st.sign else None, sign_pin),
        TransparentEF(jpki.EF_SIGN_CA_CERT, st.sign_ca_der, capacity=CERT_EF_CAPACITY),
        TransparentEF(
            jpki.EF_TOKEN_INFO,
            records.encode_token_info(st.info.token_label, st.application_id[-16:]),
        ),
        TransparentEF(jpki.EF_CERT_PRESENCE, cert_presence(st)),
        _cert_ef(jpki.EF_AUTH_CERT, st.auth.cert_der if st.auth else None, ALWAYS),
        TransparentEF(jpki.EF_AUTH_CA_CERT, st.auth_ca_der, capacity=CERT_EF_CAPACITY),
        KeyEF(jpki.EF_AUTH_KEY, CardKey(st.auth.key_pem if st.auth else None), use=auth_pin),
        PinEF(jpki.EF_AUTH_PIN, pin("auth")),
        KeyEF(jpki.EF_SIGN_KEY, CardKey(st.sign.key_pem if st.sign else None), use=sign_pin),
        PinEF(jpki.EF_SIGN_PIN, pin("sign")),
    ]
    card_atr = atr or atr_of(st)
    info = st.info
    return Card(
        card_atr,
        [
            DedicatedFile(jpki.JPKI_AID, "jpki", jpki_files),
            helper_application(st, pin),
            common_application(st, pin),
            juki_application(pin),
            *([surface] if (surface := surface_application(st, pin)) is not None else []),
        ],
        instructions={
            instruction_key(CLA_PROPRIETARY, jpki.INS_COMPUTE_SIGNATURE): compute_digital_signature,
            instruction_key(CLA_PROPRIETARY, jpki.INS_CHANGE_KEY): change_key,
            instruction_key(CLA_PROPRIETARY, jpki.INS_SET_SESSION_KEY): set_session_key,
        },
        references=by_current_ef,
        data_objects=chipdata.mf_data_objects(
            serial=info.serial, municipality=info.municipality.code, expires=st.expires,
            cv_certificates=info.cv_certificates,
        ),
        data_objects_anywhere={
            chipdata.DO_CONTACT_ATR: chipdata.contact_atr_object(contact_atr_of(card_atr)),
        },
        sm_refused_sw=SW.SM_REFUSED,
        rules=rules_for(card_atr),
        random=random or system_random,
        mf_names=(jpki.CARD_MANAGER_AID,),
    )
