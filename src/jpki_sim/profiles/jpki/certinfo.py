"""A read-only summary of a DER certificate, with the JPKI sign certificate's facts.

Read with asn1crypto, which does not re-encode: what is shown is what the card
holds, byte for byte.
"""

from __future__ import annotations

import hashlib
from typing import Any

_SHORT_NAMES = {
    "country_name": "C",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "common_name": "CN",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "serial_number": "serialNumber",
    "email_address": "emailAddress",
}

#: subjectAltName otherName OIDs of the sign certificate's four facts
JPKI_SAN_FIELDS = {
    "1.2.392.200149.8.5.5.1": "name",
    "1.2.392.200149.8.5.5.2": "name_substitute_flags",
    "1.2.392.200149.8.5.5.3": "sex",
    "1.2.392.200149.8.5.5.4": "birthdate",
    "1.2.392.200149.8.5.5.5": "address",
    "1.2.392.200149.8.5.5.6": "address_substitute_flags",
}


def _name_text(name: Any) -> str:
    parts = []
    for rdn in name.chosen:
        for atv in rdn:
            kind = atv["type"].native
            label = _SHORT_NAMES.get(kind, atv["type"].dotted)
            parts.append(f"{label}={atv['value'].native}")
    return ", ".join(parts)


def describe_certificate(der: bytes) -> dict[str, Any]:
    """A summary of a DER certificate, read without re-encoding it.

    Keys: subject, issuer (``C=JP, O=JPKI, ...`` in DER order), serial (int),
    serial_hex, not_before, not_after (aware datetimes), sha256 (hex of the DER),
    key_bits, signature_algorithm, is_ca, key_usage (list), jpki_attributes
    (the sign certificate's four facts from subjectAltName, by field name).
    Raises ValueError on bytes that are not a certificate.
    """
    from asn1crypto import x509  # local: keeps importing this module cheap

    try:
        cert = x509.Certificate.load(bytes(der))
        tbs = cert["tbs_certificate"]
        summary: dict[str, Any] = {
            "subject": _name_text(tbs["subject"]),
            "issuer": _name_text(tbs["issuer"]),
            "serial": tbs["serial_number"].native,
            "not_before": tbs["validity"]["not_before"].native,
            "not_after": tbs["validity"]["not_after"].native,
            "signature_algorithm": cert["signature_algorithm"].signature_algo,
            "key_bits": cert.public_key.bit_size,
            "is_ca": bool(cert.ca),
            "key_usage": sorted(cert.key_usage_value.native) if cert.key_usage_value else [],
        }
        facts: dict[str, str] = {}
        for general_name in cert.subject_alt_name_value or ():
            if general_name.name != "other_name":
                continue
            other = general_name.chosen
            field = JPKI_SAN_FIELDS.get(other["type_id"].dotted)
            if field is not None:
                facts[field] = str(other["value"].native)
        summary["jpki_attributes"] = facts
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a DER X.509 certificate: {exc}") from None
    summary["serial_hex"] = format(summary["serial"], "X")
    summary["sha256"] = hashlib.sha256(bytes(der)).hexdigest()
    return summary
