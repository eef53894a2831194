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
    db.json        every certificate issued (exact DER) and its revocation, and
                   the serial of every card issued (``cards``)

Every file is written atomically; a lock file serialises concurrent writers
(two shells renewing two cards against the same CA).

Certificates are returned and stored as the exact DER bytes signed, never
re-encoded.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from jpki_sim.card.store import folder_lock, write_atomic
from jpki_sim.errors import UserError
from jpki_sim.issuer import lifecycle
from jpki_sim.issuer.certprofile import (
    POLICY_AUTH,
    POLICY_SIGN_TEST,
    ROOT_EXPIRES,
    ROOT_NOT_BEFORE,
    WHICH,
    Which,
    crl_dp_name,
    holder_facts,
    japanese_name,
    key_usage,
    policies,
    root_name,
    subject_name,
)
from jpki_sim.issuer.ocsp import DEFAULT_BASE_URL
from jpki_sim.profiles.jpki.state import Identity

#: how long a CRL is good for
UPDATE_INTERVAL = timedelta(days=1)

FORMAT = "jpki-sim-ca"
VERSION = 1


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
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,  # any of the four facts changed
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,  # card returned
    "unspecified": x509.ReasonFlags.unspecified,
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
        try:
            if folder.exists() and not folder.is_dir():
                raise UserError(f"{folder}: CA directory is a file")
            complete = (folder / "ca.json").exists()
        except OSError as exc:
            raise UserError(f"{folder}: {exc.strerror or exc}") from None
        if not complete:
            if not create:
                raise UserError(
                    f"{folder}: no test CA here (no ca.json); create one with "
                    f"`jpki-sim ca init{'' if directory is None else f' --ca {directory}'}`"
                )
            try:
                from jpki_sim.card.store import private_dir

                if folder.parent == default_ca_dir().parent:
                    private_dir(folder.parent)  # the user data folder
                private_dir(folder)
                with folder_lock(folder):
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
        subject = subject_name(subject_id)
        builder = self._leaf("auth", public_key, subject, issued, expires)
        builder = (
            builder.add_extension(key_usage(non_repudiation=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(policies(POLICY_AUTH), critical=True)
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
        subject = subject_name(subject_id)
        builder = self._leaf("sign", public_key, subject, issued, expires)
        builder = (
            builder.add_extension(key_usage(non_repudiation=True), critical=True)
            .add_extension(policies(POLICY_SIGN_TEST), critical=True)
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
        with folder_lock(self.directory):
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

    def allocate_card_serial(self, issued: str) -> str:
        """A 15-digit card serial no card of this CA has had; recorded with its issue date."""
        with self._db() as db:
            cards = db.setdefault("cards", {})
            while True:
                serial = f"{secrets.randbelow(9 * 10**14) + 10**14:015d}"  # no leading 0
                if serial not in cards:
                    cards[serial] = {"issued": issued}
                    return serial

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

    def ocsp_response(self, request_der: bytes, *, at: datetime | None = None) -> bytes:
        """Answer a DER OCSP request about certificates of either CA (:mod:`.ocsp`)."""
        from jpki_sim.issuer.ocsp import respond

        return respond(self, request_der, at=at)

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

def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode()
