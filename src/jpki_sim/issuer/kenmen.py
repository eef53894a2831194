"""What the counter writes into the 券面 applications, and writes again when the card changes.

At issue (:func:`issue`): the card's own keys (helper 0013, the helper's
session key, surface 001A, the MF card key), the opaque bytes, the photo, the
images rendered from the holder's data, every record signed by the issuing
municipality's key of the test CV CA, the MF level's chain (F8 and a 7F21 that
certifies the card's MF key), and the 照合番号 keys' values with full counters.

Whenever what the card face shows changes (:func:`rewrite`: a change of address
or name; a new card at renewal is issued afresh), the images are rendered
again, the helper data rewritten and **every** record re-signed: the integrity
record (helper EF 0003), the signed key (EF 0007), the age record, the card
face and the My Number image; the CV certificates stay (they certify keys, not
data). The card's keys, the opaque bytes and the photo stay too.

Images and signatures are cheap (a few ms each); keys come from the caller's key
source (:mod:`.keystock`), which is what costs.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.card.pins import PinState
from jpki_sim.issuer import cvrecords
from jpki_sim.issuer.cv import AP_INFO_KEY_IDS, SURFACE_REFERENCE_KEY_ID, CvCA
from jpki_sim.issuer.keystock import private_pem
from jpki_sim.profiles.jpki import chipdata, codes, images, records, records_helper
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki import records_surface as surface
from jpki_sim.profiles.jpki.kenmen_state import OPAQUE_SIZES, Kenmen
from jpki_sim.profiles.jpki.records_cv import key_id
from jpki_sim.profiles.jpki.state import CardState

__all__ = ["MF_KEY_ID", "card_photo", "code_values", "issue", "public_key", "rewrite",
           "set_codes"]

#: **Chosen**: the identifier of the card key the MF level's 7F21 certifies (the
#: test CV CA's ``9`` hierarchy; the key itself is the card's own)
MF_KEY_ID = key_id("9000022")
#: the card's keys of the 券面 applications and the MF level, in the order drawn
CARD_KEY_NAMES = ("helper", "session", "surface", "mf")




def public_key(pem: str) -> rsa.RSAPublicKey:
    """The public half of one of the card's keys (its own PEM: no consistency check)."""
    key = serialization.load_pem_private_key(pem.encode(), password=None,
                                             unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key()


def code_values(state: CardState) -> dict[str, str]:
    """The value of each 照合番号 key, from what the card face shows."""
    ident = state.identity
    a = codes.verification_code_a(ident.my_number)
    b = codes.verification_code_b(ident.birthdate, state.expires, state.security_code)
    born = codes.birthdate_code(ident.birthdate)
    return {"helper-a": a, "surface-a": a, "helper-b": b, "surface-b": b, "birthdate": born}


def set_codes(state: CardState, *, full: bool = True) -> None:
    """Write the 照合番号 keys' values; ``full``: with full counters (a new card)."""
    for name, value in code_values(state).items():
        tries = jpki.CODE_POLICIES[name].max_tries
        old = state.pins.get(name)
        left = tries if full or old is None or old.value is None else old.tries_left
        state.pins[name] = PinState(value, left, tries)


def card_photo(source: bytes) -> bytes:
    """The card's photo made of any image Pillow reads (UserError for anything else)."""
    return images.photo_jp2(source)


def issue(state: CardState, ca_directory: str | os.PathLike[str],
          keys: Callable[[], rsa.RSAPrivateKey], *, photo: bytes | None = None,
          photo_source: bytes | None = None) -> None:  # fmt: skip
    """Give a new card its 券面 applications, MF chain and 照合番号 keys.

    ``photo`` is a card photo as stored (JPEG 2000, e.g. the old card's at
    renewal); ``photo_source`` any image to make one of; neither: a synthetic
    face, the same for the same holder (seeded by the My Number).
    """
    drawn = {name: keys() for name in CARD_KEY_NAMES}
    if photo is None:
        ident = state.identity
        photo = images.photo_jp2(photo_source, seed=ident.my_number.encode(), sex=ident.sex)
    data = Kenmen(
        photo=photo,
        keys={name: private_pem(key).decode() for name, key in drawn.items()},
        mf_key_id=MF_KEY_ID,
        opaque={name: secrets.token_bytes(size) for name, size in OPAQUE_SIZES.items()},
    )
    ca = CvCA.open(ca_directory)
    state.kenmen = data
    _write(state, data, ca, {name: key.public_key() for name, key in drawn.items()})
    state.info.cv_certificates = {
        chipdata.DO_CV_UPPER: ca.mf_chain_upper(),
        chipdata.DO_CV_LOWER: ca.certify_card_key(MF_KEY_ID, drawn["mf"].public_key()),
    }
    set_codes(state)


def rewrite(state: CardState, ca_directory: str | os.PathLike[str] | None = None) -> bool:
    """Render the images and sign every record again for the card's current data.

    Returns False (nothing done) for a card file from before the 券面
    applications existed.
    """
    data = state.kenmen
    if data is None:
        return False
    ca = CvCA.open(ca_directory or state.ca_dir or "")
    _write(state, data, ca, {name: public_key(data.keys[name]) for name in CARD_KEY_NAMES})
    set_codes(state, full=False)
    return True


def _write(state: CardState, data: Kenmen, ca: CvCA, public: dict[str, Any]) -> None:
    ident = state.identity
    town = state.info.municipality.code
    my_number_ef = records.encode_helper_my_number(ident.my_number)
    basic_info_ef = records.encode_helper_basic_info(
        name=ident.name, address=ident.address, birthdate=ident.birthdate, sex=ident.sex)
    data.efs["helper"] = {
        jpki.EF_HELPER_INTEGRITY: cvrecords.helper_integrity(ca, town, my_number_ef,
                                                             basic_info_ef),
        jpki.EF_HELPER_CERTIFICATE: ca.application_certificate("helper", town),
        jpki.EF_HELPER_AP_INFO: records_helper.encode_helper_ap_info(
            AP_INFO_KEY_IDS["helper"], data.opaque["helper"]),
        jpki.EF_HELPER_SESSION_KEY: records_helper.encode_helper_session_key(public["session"]),
        jpki.EF_HELPER_SIGNED_KEY: cvrecords.helper_signed_key(ca, town, public["helper"]),
    }
    card_key = public["surface"]
    data.efs["surface"] = {
        jpki.EF_SURFACE_AGE: cvrecords.surface_age_record(ca, town, ident.birthdate, card_key),
        jpki.EF_SURFACE_FACE: cvrecords.surface_card_face(
            ca, town, born=ident.birthdate, sex=ident.sex, card_key=card_key,
            name_png=images.name_image(ident.name).data,
            address_png=images.address_image(ident.address).data,
            photo=data.photo, expires=state.expires,
            security_code_png=images.security_code_image(state.security_code).data),
        jpki.EF_SURFACE_INFO: surface.encode_surface_basic_info(
            AP_INFO_KEY_IDS["surface"], town, SURFACE_REFERENCE_KEY_ID, data.opaque["surface"]),
        jpki.EF_SURFACE_CERTIFICATE: ca.application_certificate("surface", town),
        jpki.EF_SURFACE_MY_NUMBER: cvrecords.surface_my_number_image(
            ca, town, images.my_number_image(ident.my_number).data, card_key),
    }
