"""The 券面 applications' signed records, signed by the test CV CA.

Each function takes what the record holds, signs it with the municipality's
record-signing key (:class:`jpki_sim.issuer.cv.CvCA`) and returns the EF's bytes in
the card's layout (:mod:`records_helper`, :mod:`records_surface`). ``card_key`` is
the card's own key of the application (its public half goes into the record; the
private half stays on the card and signs challenges).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from jpki_sim.issuer.cv import CvCA
from jpki_sim.profiles.jpki import records_helper as helper
from jpki_sim.profiles.jpki import records_surface as surface

__all__ = [
    "helper_integrity",
    "helper_signed_key",
    "surface_age_record",
    "surface_card_face",
    "surface_my_number_image",
]


def helper_integrity(
    ca: CvCA, municipality: str, my_number_ef: bytes, basic_info_ef: bytes,
    size: int | None = None,
) -> bytes:  # fmt: skip
    """Helper EF 0003 for EF 0001 (as stored) and EF 0002, signed."""
    d1, d2 = helper.helper_integrity_digests(my_number_ef, basic_info_ef)
    signature = ca.sign("helper", municipality, helper.helper_integrity_signed_part(d1, d2))
    return helper.encode_helper_integrity(d1, d2, signature, size)


def helper_signed_key(ca: CvCA, municipality: str, card_key: Any,
                      size: int | None = None) -> bytes:  # fmt: skip
    """Helper EF 0007: the application's own public key, signed."""
    signature = ca.sign("helper", municipality, helper.helper_signed_key_signed_part(card_key))
    return helper.encode_helper_signed_key(card_key, signature, size)


def surface_age_record(ca: CvCA, municipality: str, born: date, card_key: Any,
                       size: int | None = None) -> bytes:  # fmt: skip
    """Surface EF 0001: the birth date and the card's key, signed."""
    signature = ca.sign("surface", municipality, surface.age_record_signed_part(born, card_key))
    return surface.encode_age_record(born, card_key, signature, size)


def surface_card_face(
    ca: CvCA, municipality: str, *, born: date, sex: str, card_key: Any, name_png: bytes,
    address_png: bytes, photo: bytes, expires: date, security_code_png: bytes,
    size: int | None = None,
) -> bytes:  # fmt: skip
    """Surface EF 0002: signed over its three digests; expiry and security code after."""
    digest_info = surface.card_face_digest_info(born, sex, card_key, name_png, address_png, photo)
    signature = ca.sign_digest_info("surface", municipality, digest_info)
    return surface.encode_card_face(born, sex, card_key, name_png, address_png, photo,
                                    signature, expires, security_code_png, size)  # fmt: skip


def surface_my_number_image(ca: CvCA, municipality: str, image_png: bytes, card_key: Any,
                            size: int | None = None) -> bytes:  # fmt: skip
    """Surface EF 0005: the My Number image and the card's key, signed."""
    signed = surface.my_number_image_signed_part(image_png, card_key)
    signature = ca.sign("surface", municipality, signed)
    return surface.encode_my_number_image(image_png, card_key, signature, size)
