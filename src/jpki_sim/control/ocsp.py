"""OCSP and CRLs for relying parties: answers pre-signed and cached (RFC 5019 style).

The answer to a request without a nonce depends only on the certificates it
asks about and their status, so it is signed once and kept:

1. by the request's exact bytes (a relying party sends the same request each
   time: one dict look-up, no parsing);
2. by its CertIDs (another encoding of the same question: parsed, not signed).

Every certificate the served cards carry is pre-signed at start (SHA-1 and
SHA-256 CertIDs, the forms clients send), so even a first request is a look-up.
A request with a nonce gets an answer signed for it, echoing the nonce
(RFC 6960 §4.4.1). The caches are dropped when a CA's records change (a
revocation by the API, or by ``jpki-sim card ...`` in another process: the
CA's ``db.json`` is watched), when the status date moves, and after
:data:`REFRESH` (answers say ``thisUpdate`` now, ``nextUpdate`` a day later).
CRLs are cached the same way, at the paths the certificates name.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from jpki_sim.issuer import ocsp as issuer_ocsp
from jpki_sim.issuer.ca import TestCA

log = logging.getLogger("jpki_sim.control.ocsp")

#: cached answers are signed again after this long (they say nextUpdate = +1 day)
REFRESH = 3600.0
#: at most this many cached answers (a flood of distinct requests starts over)
MAX_CACHED = 20_000
#: the largest OCSP request accepted (RFC 6960 requests are a few hundred bytes)
MAX_REQUEST = 16 * 1024

CONTENT_TYPE_REQUEST = "application/ocsp-request"
CONTENT_TYPE_RESPONSE = "application/ocsp-response"
CONTENT_TYPE_CRL = "application/pkix-crl"


class OcspResponder:
    """Answers for the test CAs of the served cards (several CAs: by issuer hashes)."""

    def __init__(self, cas: list[TestCA] | None = None, *,
                 at: Callable[[], datetime | None] | None = None,
                 generation: Callable[[], int] | None = None) -> None:
        self._cas: list[TestCA] = []
        self._lock = threading.Lock()
        #: the instant answers are given as of (None: now)
        self._at = at or (lambda: None)
        #: a counter that changes when the status date moves
        self._generation = generation or (lambda: 0)
        self._by_bytes: dict[bytes, bytes] = {}
        self._by_key: dict[Any, bytes] = {}
        self._crls: dict[str, bytes] = {}
        #: RFC 5019 dates of answers served by GET: body -> (Last-Modified, Expires, epoch)
        self._dates: dict[bytes, tuple[str, str | None, float]] = {}
        self._crl_paths: dict[str, tuple[TestCA, str]] | None = None
        self._stamp: tuple[Any, ...] = ()
        self._signed_at = time.monotonic()
        #: answers signed (not served from the cache), for the benchmark and tests
        self.signed = 0
        for ca in cas or []:
            self.add_ca(ca)

    # ------------------------------------------------------------ the CAs

    @property
    def cas(self) -> list[TestCA]:
        return list(self._cas)

    def add_ca(self, ca: TestCA) -> None:
        """Answer for ``ca`` too (a swapped-in card from another CA)."""
        with self._lock:
            if any(c.directory == ca.directory for c in self._cas):
                return
            self._cas = [*self._cas, ca]
            self._crl_paths = None
            self._drop()

    def crl_paths(self) -> dict[str, tuple[TestCA, str]]:
        """URL path -> (CA, which) for the CRLs the certificates name (first CA wins a path)."""
        paths = self._crl_paths
        if paths is None:
            paths = {}
            for ca in self._cas:
                for which in ("auth", "sign"):
                    paths.setdefault(urlsplit(ca.crl_url(which)).path, (ca, which))
            self._crl_paths = paths
        return dict(paths)

    def is_crl_path(self, path: str) -> bool:
        """True when a CRL is served at URL path ``path`` (no copy, for every request)."""
        paths = self._crl_paths
        if paths is None:
            paths = self.crl_paths()
        return path in paths

    # ------------------------------------------------------------ freshness

    def _current_stamp(self) -> tuple[Any, ...]:
        stats: list[tuple[int, int, int] | None] = []
        for ca in self._cas:
            try:
                st = os.stat(ca.directory / "db.json")
                stats.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                stats.append(None)
        return (self._generation(), *stats)

    def _fresh(self) -> None:
        """Drop the caches when a CA's records or the status date changed, or they aged."""
        stamp = self._current_stamp()
        if stamp != self._stamp or time.monotonic() - self._signed_at > REFRESH:
            with self._lock:
                if stamp != self._stamp or time.monotonic() - self._signed_at > REFRESH:
                    self._drop()
                    self._stamp = stamp

    def _drop(self) -> None:
        self._by_bytes = {}
        self._by_key = {}
        self._crls = {}
        self._dates = {}
        self._signed_at = time.monotonic()

    def invalidate(self) -> None:
        """Forget every cached answer (after a revocation)."""
        with self._lock:
            self._drop()
            self._stamp = ()

    # ------------------------------------------------------------ answering

    def cached(self, request_der: bytes) -> bytes | None:
        """The cached answer to exactly these request bytes, if any (no parsing, no signing)."""
        self._fresh()
        return self._by_bytes.get(request_der)

    def respond(self, request_der: bytes) -> bytes:
        """The DER answer to a DER OCSP request."""
        self._fresh()
        cached = self._by_bytes.get(request_der)
        if cached is not None:
            return cached
        parsed = issuer_ocsp.parse_request(request_der)
        if parsed is None:
            return issuer_ocsp.malformed()
        if parsed.nonce is not None:
            return self._sign(parsed, nonce=True)
        key = parsed.key
        body = self._by_key.get(key)
        if body is None:
            body = self._sign(parsed, nonce=False)
            self._remember(self._by_key, key, body)
        self._remember(self._by_bytes, request_der, body)
        return body

    def _sign(self, parsed: Any, *, nonce: bool) -> bytes:
        owner = next((ca for ca in self._cas if issuer_ocsp.knows(ca, parsed)), None)
        if owner is None:
            return issuer_ocsp.unauthorized()
        self.signed += 1
        return issuer_ocsp.answer(owner, parsed, at=self._at(), nonce=nonce)

    @staticmethod
    def _remember(cache: dict[Any, bytes], key: Any, body: bytes) -> None:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = body

    def presign(self, certificates: list[bytes]) -> int:
        """Sign the answers for these certificates (DER) ahead of any request; how many."""
        from cryptography import x509

        self._fresh()
        done = 0
        for der in certificates:
            cert = x509.load_der_x509_certificate(der)
            for ca in self._cas:
                for authority in ca.authorities.values():
                    if cert.issuer != authority.cert.subject:
                        continue
                    for algorithm in ("sha1", "sha256"):
                        query = _query(authority, algorithm, cert.serial_number)
                        parsed = issuer_ocsp.ParsedRequest((query,), None)
                        if parsed.key in self._by_key:
                            continue
                        body = self._sign(parsed, nonce=False)
                        self._remember(self._by_key, parsed.key, body)
                        done += 1
        return done

    # ------------------------------------------------------------ CRLs

    def cached_crl(self, path: str) -> bytes | None:
        """The cached DER CRL at URL path ``path``, if signed already (no signing)."""
        self._fresh()
        return self._crls.get(path)

    def get_headers(self, body: bytes) -> list[tuple[str, str]]:
        """RFC 5019 §6.2 caching headers for an answer served by GET (see :func:`http_dates`).

        The dates an answer carries are read once per answer; ``max-age`` is
        counted from now on each call.
        """
        dates = self._dates.get(body)
        if dates is None:
            dates = _answer_dates(body)
            if len(self._dates) >= MAX_CACHED:
                self._dates = {}
            self._dates[body] = dates
        last_modified, expires, next_update = dates
        if not last_modified:
            return [("Cache-Control", "no-store")]
        headers = [("Last-Modified", last_modified)]
        if expires is not None:
            age = max(0, int(next_update - time.time()))
            headers += [("Expires", expires),
                        ("Cache-Control", f"max-age={age}, public, no-transform, must-revalidate")]
        return headers

    def crl(self, path: str) -> bytes | None:
        """The DER CRL at URL path ``path`` (None: no CRL there)."""
        self._fresh()
        body = self._crls.get(path)
        if body is not None:
            return body
        target = self.crl_paths().get(path)
        if target is None:
            return None
        ca, which = target
        body = ca.crl(which, at=self._at())  # type: ignore[arg-type]
        self._crls[path] = body
        return body


def _query(authority: Any, algorithm: str, serial: int) -> issuer_ocsp.CertQuery:
    from cryptography.hazmat.primitives import hashes, serialization

    hasher = {"sha1": hashes.SHA1, "sha256": hashes.SHA256}[algorithm]
    spki = authority.cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(hasher())
        h.update(data)
        return h.finalize()

    return issuer_ocsp.CertQuery(algorithm, digest(authority.cert.subject.public_bytes()),
                                 digest(spki), serial)


def http_dates(body: bytes) -> dict[str, str]:
    """RFC 5019 §6.2 caching headers of a successful answer (Last-Modified, Expires, ...)."""
    last_modified, expires, next_update = _answer_dates(body)
    if not last_modified:
        return {"Cache-Control": "no-store"}
    headers = {"Last-Modified": last_modified}
    if expires is not None:
        age = max(0, int(next_update - datetime.now(timezone.utc).timestamp()))
        headers["Expires"] = expires
        headers["Cache-Control"] = f"max-age={age}, public, no-transform, must-revalidate"
    return headers


def _answer_dates(body: bytes) -> tuple[str, str | None, float]:
    """(Last-Modified, Expires or None, nextUpdate as epoch seconds) of an answer;
    ("", None, 0) for an unsuccessful or unreadable one."""
    from email.utils import format_datetime

    from cryptography.x509 import ocsp

    try:
        resp = ocsp.load_der_ocsp_response(body)
        if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return "", None, 0.0
        produced = resp.produced_at_utc
        nxt = resp.next_update_utc
    except ValueError:
        return "", None, 0.0
    if nxt is None:
        return format_datetime(produced, usegmt=True), None, 0.0
    return (format_datetime(produced, usegmt=True), format_datetime(nxt, usegmt=True),
            nxt.timestamp())
