"""The chip's data outside the JPKI application, byte for byte.

* 共通AP EF 0001, record 1: simple-TLV ``01 1C`` + 28 ASCII digits: the
  15-digit card serial, the issuing municipality's 5-digit code, the card's
  expiry ``YYYYMMDD`` (MC ``ap/common.rs``, the test card's record
  ``01 1C "400000012719843" "13221" "20350217"``);
* EF 0002 of the 共通AP and the 住基AP: one record, a 16-byte key reference,
  the same in both (MC);
* the MF level's GET DATA objects (MC ``src/mf.rs``): 0042 issuer
  identification, 0045 card identification number, 0066 card recognition data
  (GlobalPlatform), 00F0 municipality code, 00F2 expiry, 00F7 the key id of
  the intermediate CV key, 00F8 and 7F21 CV certificates; 5F51 the contact ATR
  without its TS byte (answered in every state).
"""

from __future__ import annotations

from datetime import date

from jpki_sim.iso7816 import tlv
from jpki_sim.profiles.jpki import records_cv

TAG_CARD_INFO = 0x01
CARD_INFO_DIGITS = 28

# GET DATA tags at the MF level
DO_ISSUER_IDENTIFICATION = 0x0042
DO_CARD_IDENTIFICATION = 0x0045
DO_CARD_RECOGNITION = 0x0066
DO_MUNICIPALITY = 0x00F0
DO_EXPIRY = 0x00F2
DO_INTERMEDIATE_KEY_ID = 0x00F7
DO_CV_UPPER = 0x00F8  # the certificate a root key (not on the card) signed
DO_CV_LOWER = 0x7F21  # the certificate the key F8 certifies signed
DO_CONTACT_ATR = 0x5F51
CV_TAGS = (DO_CV_UPPER, DO_CV_LOWER)

#: **Chosen**: the 16-byte key reference of 共通AP / 住基AP EF 0002 (its meaning is
#: not public); a key id of the test hierarchy, the same on every emulated card
KEY_REFERENCE = records_cv.key_id("6000010", "001")
#: **Chosen**: GET DATA 0042, the issuer identification (a 16-byte key reference)
ISSUER_IDENTIFICATION = records_cv.key_id("6000001", "001")


class ChipDataError(ValueError):
    """Bytes that are not the record they should be."""


def card_info_record(serial: str, municipality: str, expires: date) -> bytes:
    """共通AP EF 0001 record 1: ``01 1C`` serial(15) municipality(5) expiry(YYYYMMDD)."""
    if len(serial) != 15 or not serial.isdigit():
        raise ValueError(f"a card serial is 15 digits, got {serial!r}")
    if len(municipality) != 5 or not municipality.isdigit():
        raise ValueError(f"a municipality code is 5 digits, got {municipality!r}")
    digits = f"{serial}{municipality}{expires:%Y%m%d}".encode("ascii")
    return bytes((TAG_CARD_INFO, len(digits))) + digits


def decode_card_info(record: bytes) -> dict[str, str]:
    """``{"serial", "municipality", "expires" (YYYY-MM-DD)}`` from record 1 of 共通AP EF 0001."""
    if len(record) < 2 or record[0] != TAG_CARD_INFO or record[1] != CARD_INFO_DIGITS:
        raise ChipDataError(f"card info record starts {record[:2].hex().upper()}, not 011C")
    body = record[2:]
    if len(body) != CARD_INFO_DIGITS or not body.isdigit():
        raise ChipDataError("card info is not 28 ASCII digits")
    text = body.decode("ascii")
    ymd = text[20:]
    return {
        "serial": text[:15],
        "municipality": text[15:20],
        "expires": f"{ymd[:4]}-{ymd[4:6]}-{ymd[6:]}",
    }


def contact_atr_object(atr: bytes) -> bytes:
    """GET DATA 5F51: the contact ATR as the card stores it, without TS (3B or 3F)."""
    return atr[1:]


def card_recognition_data() -> bytes:
    """GET DATA 0066: GlobalPlatform card recognition data (GP 2.1.1, SCP02).

    **Chosen** content: the real card's is not public beyond "GlobalPlatform's,
    under the arc 1.2.840.114283" (MC). ``66 { 73 { OID gp-card-recognition,
    60 { OID gp 2.1.1 }, 63 { OID card identification scheme },
    64 { OID SCP02 i=15 } } }``.
    """
    def oid(*arc: int) -> tlv.Tlv:
        # 1.2.840.114283 = 2A 86 48 86 FC 6B
        return tlv.Tlv.primitive(0x06, bytes.fromhex("2A864886FC6B") + bytes(arc))

    return tlv.Tlv.constructed(0x66, [tlv.Tlv.constructed(0x73, [
        oid(0x01),
        tlv.Tlv.constructed(0x60, [oid(0x02, 0x02, 0x01, 0x01)]),
        tlv.Tlv.constructed(0x63, [oid(0x03)]),
        tlv.Tlv.constructed(0x64, [oid(0x04, 0x02, 0x15)]),
    ])]).to_bytes()


def mf_data_objects(*, serial: str, municipality: str, expires: date,
                    cv_certificates: dict[int, bytes]) -> dict[int, bytes]:
    """The GET DATA objects the MF level answers (no application selected)."""
    objects = {
        DO_ISSUER_IDENTIFICATION: ISSUER_IDENTIFICATION,
        DO_CARD_IDENTIFICATION: serial.encode("ascii"),
        DO_CARD_RECOGNITION: card_recognition_data(),
        DO_MUNICIPALITY: municipality.encode("ascii"),
        DO_EXPIRY: f"{expires:%Y%m%d}".encode("ascii"),
    }
    for tag in CV_TAGS:
        cert = cv_certificates.get(tag)
        if cert is not None:
            objects[tag] = records_cv.cv_contents(cert)
    lower = cv_certificates.get(DO_CV_LOWER)
    if lower is not None:
        objects[DO_INTERMEDIATE_KEY_ID] = records_cv.decode_cv_certificate(lower)["issuer_key_id"]
    return objects
