"""The JPKI certificate profile of the test CA: names, policies, the holder's facts.

What a certificate of the test CA says, field by field (protocol notes §9):
root and issuer names as the real J-LIS ones with ``O=JPKI-TEST``, the
policies, the subject of a user-authentication certificate (no personal data),
and the signature certificate's four facts in subjectAltName otherNames.
"""

from __future__ import annotations

import secrets
import string
from datetime import date
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from jpki_sim.issuer import lifecycle
from jpki_sim.profiles.jpki.charset import jis_text
from jpki_sim.profiles.jpki.state import Identity

Which = Literal["auth", "sign"]
WHICH: tuple[Which, ...] = ("auth", "sign")

#: JPKI certificate policy for user-authentication certificates (real cards)
POLICY_AUTH = ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
#: JPKI certificate policy for signature certificates on test cards (real: ...1.1.20)
POLICY_SIGN_TEST = ObjectIdentifier("1.2.392.200149.8.5.1.0.20")
#: arc of the holder's facts in the signature certificate's subjectAltName otherNames
FACTS_ARC = "1.2.392.200149.8.5.5"
OID_NAME = ObjectIdentifier(f"{FACTS_ARC}.1")
OID_NAME_FLAGS = ObjectIdentifier(f"{FACTS_ARC}.2")
OID_SEX = ObjectIdentifier(f"{FACTS_ARC}.3")
OID_BIRTHDATE = ObjectIdentifier(f"{FACTS_ARC}.4")
OID_ADDRESS = ObjectIdentifier(f"{FACTS_ARC}.5")
OID_ADDRESS_FLAGS = ObjectIdentifier(f"{FACTS_ARC}.6")

#: ISO 5218 (the card's helper data) to the JPKI sex code (1 male, 2 female, 3 unknown)
JPKI_SEX = {"1": "1", "2": "2", "9": "3", "0": "3"}

CPS_URL = "http://jpki-sim.invalid/cps.html"

_PURPOSE = {
    "auth": ("JPKI for user authentication", "公的個人認証サービス利用者証明用"),
    "sign": ("JPKI for digital signature", "公的個人認証サービス署名用"),
}
_OPERATOR = "jpki-sim test CA, not Japan Agency for Local Authority Information Systems"
_OPERATOR_JA = "jpki-sim試験用（地方公共団体情報システム機構ではない）"

#: roots are valid wide enough for any card date a test may want
ROOT_NOT_BEFORE = date(2000, 1, 1)
ROOT_EXPIRES = date(2099, 12, 31)

ISSUER_ID_ALPHABET = string.digits + string.ascii_uppercase
ISSUER_ID_LENGTH = 23


def root_name(which: Which) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _PURPOSE[which][0]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _OPERATOR),
        ]
    )


def japanese_name(which: Which) -> x509.Name:
    """The DirName the real CAs put in their alternative names, in Japanese."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "公的個人認証サービス（試験用）"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _PURPOSE[which][1]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _OPERATOR_JA),
        ]
    )


def crl_dp_name(which: Which) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "CRL Distribution Points"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"jpki-sim {which} CRLDP"),
        ]
    )


def birthdate_field(born: date) -> str:
    """Date of birth as the signature certificate carries it: era code + YYYYMMDD."""
    code, _, _ = lifecycle.era_of(born)
    return f"{code}{born:%Y%m%d}"


def utf8_string(text: str) -> bytes:
    """DER of an ASN.1 UTF8String (the value of an otherName)."""
    body = text.encode("utf-8")
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x0c" + length + body


def holder_facts(identity: Identity) -> list[x509.GeneralName]:
    """The four basic facts as subjectAltName otherNames, in OID order.

    Name and address in JIS X 0208/0212 characters, each other character replaced by
    a substitute, and the substitute-character flags (one digit per character).
    """
    name, name_flags = jis_text(identity.name)
    address, address_flags = jis_text(identity.address)
    values = [
        (OID_NAME, name),
        (OID_NAME_FLAGS, name_flags),
        (OID_SEX, JPKI_SEX[identity.sex]),
        (OID_BIRTHDATE, birthdate_field(identity.birthdate)),
        (OID_ADDRESS, address),
        (OID_ADDRESS_FLAGS, address_flags),
    ]
    return [x509.OtherName(oid, utf8_string(v)) for oid, v in values]


def read_holder_facts(cert: x509.Certificate) -> dict[str, str]:
    """The otherName facts of a signature certificate, by OID dotted string."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    facts: dict[str, str] = {}
    for other in san.get_values_for_type(x509.OtherName):
        raw = other.value
        if raw[:1] != b"\x0c":
            continue
        if raw[1] < 0x80:
            body = raw[2:]
        else:
            body = raw[2 + (raw[1] & 0x7F) :]
        facts[other.type_id.dotted_string] = body.decode("utf-8")
    return facts


def subject_name(subject_id: str | None) -> x509.Name:
    """``C=JP, CN=<23-character id>``: a JPKI certificate's subject carries no personal data."""
    ident = subject_id or "".join(
        secrets.choice(ISSUER_ID_ALPHABET) for _ in range(ISSUER_ID_LENGTH)
    )
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.COMMON_NAME, ident),
        ]
    )


def key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def policies(oid: ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, [CPS_URL])])
