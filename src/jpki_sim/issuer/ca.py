"""The test CA: a JPKI look-alike with separate roots for signature and user authentication.

Like the real JPKI (J-LIS), two certification authorities issue the card's two
certificates, each from its own self-signed root. Names follow the real ones
with ``O=JPKI-TEST`` so that nobody can take a test certificate for a real one.

The CA lives in a directory, created on first use::

    ca.json        settings (base URL of the OCSP responder and CRLs)
    auth-ca.crt    root of the user-authentication CA (PEM)
    auth-ca.key    its private key (PEM, mode 0600)
    sign-ca.crt    root of the signature CA (PEM)
    sign-ca.key    its private key (PEM, mode 0600)
    db.json        every certificate issued (exact DER) and its revocation

Every file is written atomically; a lock file serialises concurrent writers
(two shells renewing two cards against the same CA).

Certificates are returned and stored as the exact DER bytes signed, never
re-encoded.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from jpki_sim.card.store import write_atomic
from jpki_sim.errors import UserError
from jpki_sim.issuer import lifecycle
from jpki_sim.profiles.jpki.state import Identity

Which = Literal["auth", "sign"]
WHICH: tuple[Which, ...] = ("auth", "sign")

FORMAT = "jpki-sim-ca"
VERSION = 1

#: where `jpki-sim ca ocsp` listens unless told otherwise; written into the AIA of certificates
DEFAULT_PORT = 3280
DEFAULT_BASE_URL = f"http://127.0.0.1:{DEFAULT_PORT}"

# ---------------------------------------------------------------- the JPKI profile

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

#: "no substitute characters used" for the name and address flags
NO_SUBSTITUTES = "00000"
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

#: hash algorithms an OCSP request may name for its CertID
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: how long a CRL or an OCSP answer is good for
UPDATE_INTERVAL = timedelta(days=1)

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
    """The four basic facts as subjectAltName otherNames, in OID order."""
    values = [
        (OID_NAME, identity.name),
        (OID_NAME_FLAGS, NO_SUBSTITUTES),
        (OID_SEX, JPKI_SEX[identity.sex]),
        (OID_BIRTHDATE, birthdate_field(identity.birthdate)),
        (OID_ADDRESS, identity.address),
        (OID_ADDRESS_FLAGS, NO_SUBSTITUTES),
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


# ---------------------------------------------------------------- one CA


@dataclass
class Authority:
    """One JPKI CA: its root certificate and key."""

    which: Which
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_identifier(self) -> x509.AuthorityKeyIdentifier:
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier(
            ski.digest, [x509.DirectoryName(self.cert.subject)], self.cert.serial_number
        )


def _new_root(which: Which, key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = root_name(which)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(secrets.randbits(31) | 1 << 24)
        .not_valid_before(lifecycle.valid_from(ROOT_NOT_BEFORE))
        .not_valid_after(lifecycle.expires_at(ROOT_EXPIRES))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DirectoryName(japanese_name(which))]),
            critical=False,
        )
    )
    return builder.sign(key, hashes.SHA256())


# ---------------------------------------------------------------- revocation records


@dataclass
class Record:
    """One issued certificate in the CA's database."""

    serial: int
    which: Which
    cert_der: bytes
    revoked_at: datetime | None = None
    reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def revoked_by(self, at: datetime) -> bool:
        return self.revoked_at is not None and self.revoked_at <= at

    def to_json(self) -> dict[str, Any]:
        return {
            "ca": self.which,
            "cert": base64.b64encode(self.cert_der).decode(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, serial: int, d: dict[str, Any]) -> Record:
        at = d.get("revoked_at")
        return cls(
            serial,
            d["ca"],
            base64.b64decode(d["cert"]),
            datetime.fromisoformat(at) if at else None,
            d.get("reason"),
        )


#: reasons this CA revokes for; the names are RFC 5280's CRLReason values
REASONS = {
    "superseded": x509.ReasonFlags.superseded,  # renewed or re-issued at the counter
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,  # name or address changed
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,  # card returned
    "unspecified": x509.ReasonFlags.unspecified,
}


#: the same reasons by asn1crypto's names (OCSP answers are built with asn1crypto)
_ASN1_REASONS = {
    "superseded": "superseded",
    "affiliationChanged": "affiliation_changed",
    "keyCompromise": "key_compromise",
    "cessationOfOperation": "cessation_of_operation",
    "unspecified": "unspecified",
}


# ---------------------------------------------------------------- the CA directory


def default_ca_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("jpki-sim")) / "ca"


class TestCA:
    """The pair of JPKI test CAs kept in one directory."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, auth: Authority, sign: Authority, base_url: str) -> None:
        self.directory = directory
        self.authorities: dict[Which, Authority] = {"auth": auth, "sign": sign}
        self.base_url = base_url.rstrip("/")

    # ---- opening and creating

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        base_url: str = DEFAULT_BASE_URL,
    ) -> TestCA:
        """Open the CA in ``directory`` (default: the user data dir), creating it if needed."""
        # absolute, since card files record it and are used from other directories
        folder = (Path(directory) if directory is not None else default_ca_dir()).absolute()
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder}: CA directory is a file")
        if not (folder / "ca.json").exists():
            if not create:
                raise UserError(f"{folder}: no test CA here (no ca.json)")
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                with _locked(folder):
                    if not (folder / "ca.json").exists():
                        cls._create(folder, base_url)
            except OSError as exc:
                raise UserError(f"{folder}: cannot create the test CA ({exc.strerror})") from None
        return cls._load(folder)

    @staticmethod
    def _create(folder: Path, base_url: str) -> None:
        for which in WHICH:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = _new_root(which, key)
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_atomic(folder / f"{which}-ca.key", key_pem, 0o600)
            write_atomic(
                folder / f"{which}-ca.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644
            )
        write_atomic(folder / "db.json", _dump({"certificates": {}}), 0o600)
        settings = {"format": FORMAT, "version": VERSION, "base_url": base_url}
        # ca.json last: its presence says the CA is complete
        write_atomic(folder / "ca.json", _dump(settings), 0o644)

    @classmethod
    def _load(cls, folder: Path) -> TestCA:
        try:
            settings = json.loads((folder / "ca.json").read_text())
            if settings.get("format") != FORMAT:
                raise UserError(f"{folder}/ca.json: not a jpki-sim CA")
            authorities = []
            for which in WHICH:
                key = serialization.load_pem_private_key(
                    (folder / f"{which}-ca.key").read_bytes(), password=None
                )
                cert = x509.load_pem_x509_certificate((folder / f"{which}-ca.crt").read_bytes())
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise UserError(f"{folder}/{which}-ca.key: not an RSA key")
                authorities.append(Authority(which, key, cert))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{folder}: broken test CA ({exc})") from None
        return cls(
            folder, authorities[0], authorities[1], str(settings.get("base_url", DEFAULT_BASE_URL))
        )

    def __getitem__(self, which: Which) -> Authority:
        return self.authorities[which]

    @property
    def auth(self) -> Authority:
        return self.authorities["auth"]

    @property
    def sign(self) -> Authority:
        return self.authorities["sign"]

    # ---- URLs written into certificates

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    def crl_url(self, which: Which) -> str:
        return f"{self.base_url}/crl/{which}.crl"

    # ---- issuing

    def issue_auth(
        self,
        public_key: rsa.RSAPublicKey,
        *,
        issued: date,
        expires: date,
        subject_id: str | None = None,
    ) -> bytes:
        """A user-authentication certificate: no personal data at all, clientAuth."""
        subject = _subject(subject_id)
        builder = self._leaf("auth", public_key, subject, issued, expires)
        builder = (
            builder.add_extension(_key_usage(non_repudiation=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(_policies(POLICY_AUTH), critical=True)
        )
        return self._sign_and_record("auth", builder)

    def issue_sign(
        self,
        public_key: rsa.RSAPublicKey,
        identity: Identity,
        *,
        issued: date,
        expires: date,
        subject_id: str | None = None,
    ) -> bytes:
        """A signature certificate: the holder's four facts in subjectAltName otherNames."""
        subject = _subject(subject_id)
        builder = self._leaf("sign", public_key, subject, issued, expires)
        builder = (
            builder.add_extension(_key_usage(non_repudiation=True), critical=True)
            .add_extension(_policies(POLICY_SIGN_TEST), critical=True)
            .add_extension(x509.SubjectAlternativeName(holder_facts(identity)), critical=False)
        )
        return self._sign_and_record("sign", builder)

    def _leaf(
        self,
        which: Which,
        public_key: rsa.RSAPublicKey,
        subject: x509.Name,
        issued: date,
        expires: date,
    ) -> x509.CertificateBuilder:
        if expires < issued:
            raise UserError(f"certificate would expire ({expires}) before it is issued ({issued})")
        ca = self[which]
        dp = x509.DistributionPoint(
            full_name=[
                x509.UniformResourceIdentifier(self.crl_url(which)),
                x509.DirectoryName(crl_dp_name(which)),
            ],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.cert.subject)
            .public_key(public_key)
            .serial_number(self._new_serial())
            .not_valid_before(lifecycle.valid_from(issued))
            .not_valid_after(lifecycle.expires_at(expires))
            .add_extension(ca.key_identifier(), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.IssuerAlternativeName([x509.DirectoryName(japanese_name(which))]),
                critical=False,
            )
            .add_extension(x509.CRLDistributionPoints([dp]), critical=False)
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.AuthorityInformationAccessOID.OCSP,
                            x509.UniformResourceIdentifier(self.ocsp_url),
                        )
                    ]
                ),
                critical=False,
            )
        )

    def _new_serial(self) -> int:
        taken = self._read_db()["certificates"]
        while True:
            # 8 bytes, top bit clear (a positive INTEGER without padding)
            serial = secrets.randbits(63) | 1 << 56
            if format(serial, "x") not in taken:
                return serial

    def _sign_and_record(self, which: Which, builder: x509.CertificateBuilder) -> bytes:
        cert = builder.sign(self[which].key, hashes.SHA256())
        der = cert.public_bytes(serialization.Encoding.DER)
        with self._db() as db:
            db["certificates"][format(cert.serial_number, "x")] = Record(
                cert.serial_number, which, der
            ).to_json()
        return der

    # ---- the database

    def _read_db(self) -> dict[str, Any]:
        try:
            db = json.loads((self.directory / "db.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.directory}/db.json: unreadable ({exc})") from None
        if not isinstance(db, dict) or not isinstance(db.get("certificates"), dict):
            raise UserError(f"{self.directory}/db.json: not a jpki-sim CA database")
        return db

    @contextmanager
    def _db(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the database under the CA's lock."""
        with _locked(self.directory):
            db = self._read_db()
            yield db
            write_atomic(self.directory / "db.json", _dump(db), 0o600)

    def records(self, which: Which | None = None) -> list[Record]:
        out = [
            Record.from_json(int(serial, 16), d)
            for serial, d in self._read_db()["certificates"].items()
        ]
        return [r for r in out if which is None or r.which == which]

    def record(self, serial: int) -> Record | None:
        d = self._read_db()["certificates"].get(format(serial, "x"))
        return Record.from_json(serial, d) if d else None

    def revoke(self, serial: int, *, at: datetime, reason: str = "superseded") -> Record:
        """Revoke a certificate this CA issued. Revoking twice keeps the first date."""
        if reason not in REASONS:
            raise ValueError(f"unknown revocation reason {reason!r}")
        key = format(serial, "x")
        with self._db() as db:
            entry = db["certificates"].get(key)
            if entry is None:
                raise UserError(f"serial {key} was not issued by the test CA in {self.directory}")
            if not entry.get("revoked_at"):
                entry["revoked_at"] = at.astimezone(timezone.utc).replace(microsecond=0).isoformat()
                entry["reason"] = reason
            return Record.from_json(serial, entry)

    # ---- CRL

    def crl(self, which: Which, *, at: datetime | None = None) -> bytes:
        """A CRL of ``which`` CA as of ``at``, signed by that CA (DER)."""
        now = (at or datetime.now(timezone.utc)).replace(microsecond=0)
        ca = self[which]
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(now)
            .next_update(now + UPDATE_INTERVAL)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for rec in self.records(which):
            if rec.revoked_at is None or not rec.revoked_by(now):
                continue
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(rec.serial)
                .revocation_date(rec.revoked_at)
                .add_extension(x509.CRLReason(REASONS[rec.reason or "unspecified"]), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    # ---- OCSP

    def ocsp_response(self, request_der: bytes, *, at: datetime | None = None) -> bytes:
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
        owners = [self._authority_for(alg, nh, kh) for _, alg, nh, kh, _ in items]
        ca = next((o for o in owners if o is not None), None)
        if ca is None:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        now = (at or datetime.now(timezone.utc)).replace(microsecond=0)
        responses = []
        for (cert_id, _, _, _, serial), owner in zip(items, owners, strict=True):
            rec = self.record(serial) if owner is ca else None
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
        self, algorithm: hashes.HashAlgorithm, name_hash: bytes, key_hash: bytes
    ) -> Authority | None:
        for ca in self.authorities.values():
            name_der = ca.cert.subject.public_bytes()
            spki = ca.cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.PKCS1
            )
            if _digest(algorithm, name_der) == name_hash and _digest(algorithm, spki) == key_hash:
                return ca
        return None


# ---------------------------------------------------------------- helpers


def _subject(subject_id: str | None) -> x509.Name:
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


def _key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
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


def _policies(oid: ObjectIdentifier) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(oid, [CPS_URL])])


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
