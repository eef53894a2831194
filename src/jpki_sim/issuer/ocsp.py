"""OCSP for the test CA: signed answers (RFC 6960).

The answers are built with asn1crypto, since ``cryptography``'s OCSP classes
handle one certificate per request. Each status comes from the CA's records.
The HTTP responder (pre-signed, cached answers) is :mod:`jpki_sim.control.ocsp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import ocsp

if TYPE_CHECKING:
    from jpki_sim.issuer.ca import Authority, TestCA

#: where `jpki-sim ca ocsp` listens unless told otherwise; written into the AIA of certificates
DEFAULT_PORT = 3280
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

#: hash algorithms an OCSP request may name for its CertID
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: how long an OCSP answer is good for (the CA's CRLs say the same)
UPDATE_INTERVAL = timedelta(days=1)

#: the CA's revocation reasons by asn1crypto's names
_ASN1_REASONS = {
    "superseded": "superseded",
    "affiliationChanged": "affiliation_changed",
    "keyCompromise": "key_compromise",
    "cessationOfOperation": "cessation_of_operation",
    "unspecified": "unspecified",
}


@dataclass(frozen=True)
class CertQuery:
    """One certificate an OCSP request asks about (its CertID, as parsed)."""

    algorithm: str
    name_hash: bytes
    key_hash: bytes
    serial: int

    @property
    def key(self) -> tuple[str, bytes, bytes, int]:
        return (self.algorithm, self.name_hash, self.key_hash, self.serial)


@dataclass(frozen=True)
class ParsedRequest:
    """What an OCSP request asks: its certificates, and its nonce (None: none)."""

    queries: tuple[CertQuery, ...]
    nonce: bytes | None

    @property
    def key(self) -> tuple[tuple[str, bytes, bytes, int], ...]:
        """What the answer depends on besides the CA's records (cache key without a nonce)."""
        return tuple(q.key for q in self.queries)


def parse_request(request_der: bytes) -> ParsedRequest | None:
    """The DER OCSP request's certificates and nonce; None when it is malformed."""
    from asn1crypto import ocsp as a_ocsp

    try:
        request = a_ocsp.OCSPRequest.load(request_der, strict=True)
        tbs = request["tbs_request"]
        queries = []
        for single in tbs["request_list"]:
            asked = single["req_cert"]
            hash_name = asked["hash_algorithm"]["algorithm"].native
            if hash_name not in _HASHES:
                return None
            queries.append(
                CertQuery(
                    hash_name,
                    bytes(asked["issuer_name_hash"].native),
                    bytes(asked["issuer_key_hash"].native),
                    int(asked["serial_number"].native),
                )
            )
        nonce = None
        for ext in tbs["request_extensions"] or []:
            if ext["extn_id"].native == "nonce":
                nonce = bytes(ext["extn_value"].parsed.native)
    except (ValueError, KeyError, TypeError):
        return None
    if not queries:
        return None
    return ParsedRequest(tuple(queries), nonce)


def respond(ca_: TestCA, request_der: bytes, *, at: datetime | None = None) -> bytes:
    """Answer a DER OCSP request (RFC 6960) about certificates of either CA.

    A request may list several certificates (``openssl ocsp -cert a -cert b``):
    the answer is signed by the CA of the first one this responder knows, and
    a certificate that CA did not issue is ``unknown``. Built with asn1crypto,
    since ``cryptography``'s OCSP classes handle one certificate per request.
    """
    parsed = parse_request(request_der)
    if parsed is None:
        return malformed()
    return answer(ca_, parsed, at=at)


def malformed() -> bytes:
    return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)


def unauthorized() -> bytes:
    return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)


def knows(ca_: TestCA, parsed: ParsedRequest) -> bool:
    """True when one of the request's certificates names an issuer of ``ca_``."""
    return any(
        authority_for(ca_, q.algorithm, q.name_hash, q.key_hash) is not None
        for q in parsed.queries
    )


def answer(ca_: TestCA, parsed: ParsedRequest, *, at: datetime | None = None,
           nonce: bool = True) -> bytes:
    """The signed answer to a parsed request, as of ``at`` (default now).

    ``nonce`` False leaves the request's nonce out (a pre-signed answer, RFC 5019).
    """
    from asn1crypto import core as a_core
    from asn1crypto import ocsp as a_ocsp

    items = parsed.queries
    owners = [authority_for(ca_, q.algorithm, q.name_hash, q.key_hash) for q in items]
    ca = next((o for o in owners if o is not None), None)
    if ca is None:
        return unauthorized()
    now = (at or datetime.now(timezone.utc)).replace(microsecond=0)
    responses = []
    for q, owner in zip(items, owners, strict=True):
        # the CertID is answered re-encoded from its parsed values, never copied:
        # junk inside the request must not reach the signed response
        cert_id = a_ocsp.CertId(
            {
                "hash_algorithm": {"algorithm": q.algorithm, "parameters": a_core.Null()},
                "issuer_name_hash": q.name_hash,
                "issuer_key_hash": q.key_hash,
                "serial_number": q.serial,
            }
        )
        rec = ca_.record(q.serial) if owner is ca else None
        if rec is None or rec.which != ca.which:
            status = a_ocsp.CertStatus(name="unknown", value=a_core.Null())
        elif rec.revoked_at is not None and rec.revoked_by(now):
            status = a_ocsp.CertStatus(
                name="revoked",
                value={
                    "revocation_time": rec.revoked_at,
                    "revocation_reason": _ASN1_REASONS[rec.reason or "unspecified"],
                },
            )
        else:
            status = a_ocsp.CertStatus(name="good", value=a_core.Null())
        responses.append(
            {
                "cert_id": cert_id,
                "cert_status": status,
                "this_update": now,
                "next_update": now + UPDATE_INTERVAL,
            }
        )
    spki = ca.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    data: dict[str, Any] = {
        "version": "v1",
        "responder_id": a_ocsp.ResponderId(name="by_key", value=_digest(hashes.SHA1(), spki)),
        "produced_at": now,
        "responses": responses,
    }
    if nonce and parsed.nonce is not None:
        data["response_extensions"] = [
            {"extn_id": "nonce", "critical": False, "extn_value": parsed.nonce}
        ]
    tbs_response = a_ocsp.ResponseData(data)
    signature = ca.key.sign(tbs_response.dump(), padding.PKCS1v15(), hashes.SHA256())
    basic = a_ocsp.BasicOCSPResponse(
        {
            "tbs_response_data": tbs_response,
            "signature_algorithm": {"algorithm": "sha256_rsa"},
            "signature": signature,
        }
    )
    return a_ocsp.OCSPResponse(
        {
            "response_status": "successful",
            "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
        }
    ).dump()


def authority_for(ca_: TestCA, algorithm: str, name_hash: bytes, key_hash: bytes
                  ) -> Authority | None:
    """The authority of ``ca_`` a CertID's issuer hashes name (None: neither)."""
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        return None
    for ca in ca_.authorities.values():
        name_der = ca.cert.subject.public_bytes()
        spki = ca.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        if _digest(hasher(), name_der) == name_hash and _digest(hasher(), spki) == key_hash:
            return ca
    return None


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )
