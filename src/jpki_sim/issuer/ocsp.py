"""OCSP for the test CA: signed answers (RFC 6960) and a small HTTP responder.

The answers are built with asn1crypto, since ``cryptography``'s OCSP classes
handle one certificate per request. Each status comes from the CA's records.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509 import ocsp

from jpki_sim.issuer.certprofile import WHICH

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


def respond(ca_: TestCA, request_der: bytes, *, at: datetime | None = None) -> bytes:
    """Answer a DER OCSP request (RFC 6960) about certificates of either CA.

    A request may list several certificates (``openssl ocsp -cert a -cert b``):
    the answer is signed by the CA of the first one this responder knows, and
    a certificate that CA did not issue is ``unknown``. Built with asn1crypto,
    since ``cryptography``'s OCSP classes handle one certificate per request.
    """
    from asn1crypto import core as a_core
    from asn1crypto import ocsp as a_ocsp

    try:
        request = a_ocsp.OCSPRequest.load(request_der, strict=True)
        tbs = request["tbs_request"]
        items = []
        for single in tbs["request_list"]:
            asked = single["req_cert"]
            hash_name = asked["hash_algorithm"]["algorithm"].native
            # the CertID is answered re-encoded from its parsed values, never copied:
            # junk inside the request must not reach the signed response
            cert_id = a_ocsp.CertId(
                {
                    "hash_algorithm": {"algorithm": hash_name, "parameters": a_core.Null()},
                    "issuer_name_hash": asked["issuer_name_hash"].native,
                    "issuer_key_hash": asked["issuer_key_hash"].native,
                    "serial_number": asked["serial_number"].native,
                }
            )
            items.append(
                (
                    cert_id,
                    _HASHES[hash_name](),
                    cert_id["issuer_name_hash"].native,
                    cert_id["issuer_key_hash"].native,
                    cert_id["serial_number"].native,
                )
            )
        nonce = None
        for ext in tbs["request_extensions"] or []:
            if ext["extn_id"].native == "nonce":
                nonce = ext["extn_value"].parsed.native
    except (ValueError, KeyError, TypeError):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not items:
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    owners = [_authority_for(ca_, alg, nh, kh) for _, alg, nh, kh, _ in items]
    ca = next((o for o in owners if o is not None), None)
    if ca is None:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    now = (at or datetime.now(timezone.utc)).replace(microsecond=0)
    responses = []
    for (cert_id, _, _, _, serial), owner in zip(items, owners, strict=True):
        rec = ca_.record(serial) if owner is ca else None
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
    if nonce is not None:
        data["response_extensions"] = [
            {"extn_id": "nonce", "critical": False, "extn_value": nonce}
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

def _authority_for(
ca_: TestCA, algorithm: hashes.HashAlgorithm, name_hash: bytes, key_hash: bytes
) -> Authority | None:
    for ca in ca_.authorities.values():
        name_der = ca.cert.subject.public_bytes()
        spki = ca.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        if _digest(algorithm, name_der) == name_hash and _digest(algorithm, spki) == key_hash:
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


# ---------------------------------------------------------------- OCSP over HTTP


def make_ocsp_server(
    ca: TestCA, port: int, *, host: str = "127.0.0.1", at: datetime | None = None
) -> Any:
    """An HTTP server answering OCSP (POST, or GET with base64 path) and serving the CRLs.

    Bound to localhost only: it exists for relying-party software under test on
    this machine. ``port`` 0 picks a free port (see ``server.server_address``).
    ``at`` answers as of that instant instead of the real time (simulated dates).
    """
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    max_request = 64 * 1024

    class Handler(BaseHTTPRequestHandler):
        server_version = "jpki-sim-ocsp"

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= max_request:
                self._send(400, b"bad Content-Length\n", "text/plain")
                return
            body = self.rfile.read(length)
            self._send(200, ca.ocsp_response(body, at=at), "application/ocsp-response")

        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            for which in WHICH:
                if path == f"/crl/{which}.crl":
                    self._send(200, ca.crl(which, at=at), "application/pkix-crl")
                    return
            if path.startswith("/ocsp/"):
                encoded = urllib.parse.unquote(path[len("/ocsp/") :])
                try:
                    request = base64.b64decode(encoded, validate=True)
                except ValueError:
                    request = b""
                self._send(200, ca.ocsp_response(request, at=at), "application/ocsp-response")
                return
            self._send(404, b"not found\n", "text/plain")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
