"""The 券面 applications on the card: the card-info input helper AP and the card-surface AP.

Assembled for the engine from the card state (the issuer wrote their EFs, see
:mod:`.kenmen_state`). Access, as the sources measured it on cards (MC
``ap/text.rs``, ``ap/surface.rs``, ``tests/fixtures/README.md``):

券面事項入力補助AP (PIN 0011, 照合番号A 0014, 照合番号B 0015)

====  =====================================  ===============================
EF    content                                read
====  =====================================  ===============================
0001  the My Number                          PIN or 照合番号A
0002  the four basic facts                   PIN or 照合番号B
0003  integrity record (digests of 0001/2)   PIN, 照合番号A or 照合番号B
0004  CV certificate                         free
0005  application basic info                 free
0006  session-key public key                 PIN, 照合番号A or 照合番号B
0007  key 0013's public half, signed         PIN, 照合番号A or 照合番号B
0008  sixteen FF                             free (**Chosen**: no source says)
0012  a key issued blocked (63C0, 6984)      never
0013  the application's key                  ``80 2A 00 00``, no credential
====  =====================================  ===============================

券面事項確認AP (birth date 0011, 照合番号B 0012, 照合番号A 0013)

====  =====================================  ===============================
0001  age record                             birth date only
0002  card face                              照合番号A or 照合番号B
0003  application basic info                 free
0004  CV certificate                         free
0005  the My Number as an image              照合番号A only
0006  sixteen FF                             照合番号A or 照合番号B
001A  the card's key                         ``80 2A 00 00``, no credential
====  =====================================  ===============================

The 照合番号 keys take no new value: their reference data is what the card's face
shows, so CHANGE REFERENCE DATA answers 6A80 (**Chosen**).
"""

from __future__ import annotations

from collections.abc import Callable

from jpki_sim.card.files import (
    ALWAYS,
    DedicatedFile,
    ElementaryFile,
    KeyEF,
    PinEF,
    TransparentEF,
    pin_verified,
)
from jpki_sim.card.pins import PinState, RetryCounter
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki import records
from jpki_sim.profiles.jpki.state import CardState

#: helper EF 0008 and surface EF 0006: sixteen FF bytes on every card examined
UNKNOWN_EF = b"\xff" * 16
#: helper key 0012's counter: issued blocked, and nothing changes it (it is no PIN
#: of the holder's and no counter procedure is known), so it is not in the card file
BLOCKED_KEY_TRIES = 3

PinSource = Callable[[str], RetryCounter]


class CardKey:
    """A private key on the card, parsed from PEM on first use and kept.

    The keys are the card file's own (the issuer generated them), so the RSA
    consistency check of a foreign key is skipped: it costs ~35 ms per key.
    """

    def __init__(self, pem: str | None) -> None:
        self.pem = pem
        self._key: object = None

    def private_key(self) -> object:
        if self.pem is None:
            return None
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            self._key = load_pem_private_key(self.pem.encode(), password=None,
                                             unsafe_skip_rsa_key_validation=True)
        return self._key


def helper_application(state: CardState, pin: PinSource) -> DedicatedFile:
    ident = state.identity
    p, a, b = jpki.EF_HELPER_PIN, jpki.EF_HELPER_PIN_A, jpki.EF_HELPER_PIN_B
    files: list[ElementaryFile] = [
        TransparentEF(jpki.EF_HELPER_MY_NUMBER, records.encode_helper_my_number(ident.my_number),
                      read=pin_verified(p, a)),
        TransparentEF(jpki.EF_HELPER_BASIC_INFO,
                      records.encode_helper_basic_info(name=ident.name, address=ident.address,
                                                       birthdate=ident.birthdate, sex=ident.sex),
                      read=pin_verified(p, b)),
        PinEF(jpki.EF_HELPER_PIN, pin("helper")),
    ]
    data = state.kenmen
    if data is not None:
        any_of = pin_verified(p, a, b)
        efs = data.efs["helper"]
        files += [
            TransparentEF(jpki.EF_HELPER_INTEGRITY, efs[jpki.EF_HELPER_INTEGRITY], read=any_of),
            TransparentEF(jpki.EF_HELPER_CERTIFICATE, efs[jpki.EF_HELPER_CERTIFICATE]),
            TransparentEF(jpki.EF_HELPER_AP_INFO, efs[jpki.EF_HELPER_AP_INFO]),
            TransparentEF(jpki.EF_HELPER_SESSION_KEY, efs[jpki.EF_HELPER_SESSION_KEY],
                          read=any_of),
            TransparentEF(jpki.EF_HELPER_SIGNED_KEY, efs[jpki.EF_HELPER_SIGNED_KEY], read=any_of),
            TransparentEF(jpki.EF_HELPER_UNKNOWN, UNKNOWN_EF),
            PinEF(jpki.EF_HELPER_BLOCKED_KEY, RetryCounter.of(
                PinState(None, 0, BLOCKED_KEY_TRIES), name="helper 0012")),
            KeyEF(jpki.EF_HELPER_KEY, CardKey(data.keys["helper"]), use=ALWAYS),
            PinEF(jpki.EF_HELPER_PIN_A, pin("helper-a")),
            PinEF(jpki.EF_HELPER_PIN_B, pin("helper-b")),
        ]
    return DedicatedFile(jpki.HELPER_AID, "helper", files)


def surface_application(state: CardState, pin: PinSource) -> DedicatedFile | None:
    """The card-surface AP, or None for a card file written before it."""
    data = state.kenmen
    if data is None:
        return None
    efs = data.efs["surface"]
    d, b, a = jpki.EF_SURFACE_BIRTHDATE, jpki.EF_SURFACE_PIN_B, jpki.EF_SURFACE_PIN_A
    a_or_b = pin_verified(a, b)
    files: list[ElementaryFile] = [
        TransparentEF(jpki.EF_SURFACE_AGE, efs[jpki.EF_SURFACE_AGE], read=pin_verified(d)),
        TransparentEF(jpki.EF_SURFACE_FACE, efs[jpki.EF_SURFACE_FACE], read=a_or_b),
        TransparentEF(jpki.EF_SURFACE_INFO, efs[jpki.EF_SURFACE_INFO]),
        TransparentEF(jpki.EF_SURFACE_CERTIFICATE, efs[jpki.EF_SURFACE_CERTIFICATE]),
        TransparentEF(jpki.EF_SURFACE_MY_NUMBER, efs[jpki.EF_SURFACE_MY_NUMBER],
                      read=pin_verified(a)),
        TransparentEF(jpki.EF_SURFACE_UNKNOWN, UNKNOWN_EF, read=a_or_b),
        PinEF(d, pin("birthdate")),
        PinEF(b, pin("surface-b")),
        PinEF(a, pin("surface-a")),
        KeyEF(jpki.EF_SURFACE_KEY, CardKey(data.keys["surface"]), use=ALWAYS),
    ]
    return DedicatedFile(jpki.SURFACE_AID, "surface", files)
