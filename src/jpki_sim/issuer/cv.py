"""The test CV CA: card-verifiable certificates for the MF chain and the 券面 applications.

The real hierarchy (soltia48/myna-card ``src/ca.rs``, ``tests/signatures.rs``) has
three top keys that are on no card: one signs the MF chain (``x000020``), one the
card-surface application's certificate (``x000023``), one the helper application's
(``x000033``); ``5`` leads the production identifiers, ``6`` the J-LIS test ones. An
application's certificate (EF 0004) certifies the issuing municipality's own key
(``1322121/000`` for 13221), and that key signs the application's records. The MF
chain is two certificates: F8 (top key -> an intermediate) and 7F21 (intermediate ->
the key below it).

**Chosen** for this test CA (docs/protocol.md, "The test CV CA"):

- the three top keys are ``9000020/001`` (MF), ``9000023/001`` (surface) and
  ``9000033/001`` (helper): ``9`` leads, so no client takes them for J-LIS keys (a
  client with J-LIS's table answers "unknown authority", not "bad signature");
- they are exported as self-signed CV certificates in the card's layout
  (:meth:`CvCA.root_certificates`, ``jpki-sim ca export-cv``);
- the MF intermediate is ``9000021/001``; the 7F21 certificate certifies a key of the
  card's own, generated at issue (its identifier is the caller's);
- a municipality's record-signing key is made on first use, one per application and
  municipality: ``<code>21/000`` (surface) and ``<code>31/000`` (helper);
- every signature is PKCS#1 v1.5 with SHA-256, as the sources verified on test cards.

The CA keeps its keys in ``<test CA dir>/cv/`` (PEM, owner-only), created on first
use beside the X.509 test CA::

    cv.json                       format, version
    root-mf.key  root-surface.key  root-helper.key  mf-intermediate.key
    roots.cv                      the three self-signed roots (what export-cv writes)
    mf-upper.cv                   F8: MF root -> intermediate
    municipal/<app>-<code>.key    a municipality's record-signing key
    municipal/<app>-<code>.cv     its certificate (the application's EF 0004)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from jpki_sim.card.store import folder_lock, write_atomic
from jpki_sim.errors import UserError
from jpki_sim.issuer.keystock import generate_keys, private_pem
from jpki_sim.profiles.jpki.records_cv import (
    RsaPublicKey,
    cv_body,
    encode_cv_certificate,
    key_id,
    key_id_text,
)
from jpki_sim.profiles.jpki.signing import pkcs1_v15_sign_raw

__all__ = [
    "APPLICATIONS",
    "CvCA",
    "ROOT_IDS",
    "generate_keys",
    "municipal_key_id",
]

App = Literal["surface", "helper"]
Root = Literal["mf", "surface", "helper"]
APPLICATIONS: tuple[App, ...] = ("surface", "helper")
ROOTS: tuple[Root, ...] = ("mf", "surface", "helper")

ROOT_IDS: dict[Root, bytes] = {
    "mf": key_id("9000020"),
    "surface": key_id("9000023"),
    "helper": key_id("9000033"),
}
MF_INTERMEDIATE_ID = key_id("9000021")
#: the key identifiers the applications' basic info EFs name (helper DF42, surface DF32)
AP_INFO_KEY_IDS: dict[App, bytes] = {"helper": key_id("9000034"), "surface": key_id("9000024")}
#: the identifier at the head of surface EF 0003's DF35
SURFACE_REFERENCE_KEY_ID = key_id("9900025")
_MUNICIPAL_SUFFIX: dict[App, str] = {"surface": "21", "helper": "31"}
ROOT_LABELS: dict[Root, str] = {
    "mf": "MF chain (GET DATA F8)",
    "surface": "券面事項確認AP (card surface)",
    "helper": "券面事項入力補助AP (card-info input helper)",
}

FORMAT = "jpki-sim-cv-ca"
VERSION = 1
KEY_BITS = 2048


def municipal_key_id(app: App, municipality_code: str) -> bytes:
    """The record-signing key of ``municipality_code`` for ``app``: ``<code>21/000``, ``31``."""
    if len(municipality_code) != 5 or not municipality_code.isdigit():
        raise UserError(f"a municipality code is 5 digits, got {municipality_code!r}")
    return key_id(municipality_code + _MUNICIPAL_SUFFIX[app], "000")


def _load_key(path: Path) -> rsa.RSAPrivateKey:
    # the CA's own files (owner-only, written here): the RSA consistency check of a
    # foreign key would cost ~35 ms a key, on every issue
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable CV CA key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEY_BITS:
        raise UserError(f"{path}: not an RSA-{KEY_BITS} key")
    return key


def sign_cv(issuer: bytes, issuer_key: rsa.RSAPrivateKey, subject: bytes,
            public: rsa.RSAPublicKey | RsaPublicKey) -> bytes:  # fmt: skip
    """A CV certificate: PKCS#1 v1.5 / SHA-256 over the 5F4E body, by ``issuer_key``."""
    body = cv_body(issuer, subject, public)
    signature = issuer_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return encode_cv_certificate(issuer, subject, public, signature)


@dataclass(frozen=True)
class RootKey:
    name: Root
    key_id: bytes
    key: rsa.RSAPrivateKey

    @property
    def label(self) -> str:
        return ROOT_LABELS[self.name]


class CvCA:
    """The CV certification authority of the test CA directory."""

    def __init__(self, directory: Path, roots: dict[Root, RootKey],
                 intermediate: rsa.RSAPrivateKey) -> None:  # fmt: skip
        self.directory = directory
        self.roots = roots
        self._intermediate = intermediate
        self._municipal_keys: dict[tuple[App, str], tuple[rsa.RSAPrivateKey, bytes]] = {}

    # ---- opening and creating

    @classmethod
    def open(cls, ca_directory: str | os.PathLike[str], *, create: bool = True) -> CvCA:
        """The CV CA beside the X.509 test CA in ``ca_directory`` (made on first use)."""
        folder = Path(ca_directory).absolute() / "cv"
        if not (folder / "cv.json").exists():
            if not create:
                raise UserError(f"{folder}: no CV CA here (no cv.json)")
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                with folder_lock(folder):
                    if not (folder / "cv.json").exists():
                        cls._create(folder)
            except OSError as exc:
                raise UserError(f"{folder}: cannot create the CV CA ({exc.strerror})") from None
        return cls._load(folder)

    @staticmethod
    def _create(folder: Path) -> None:
        keys = generate_keys(len(ROOTS) + 1)
        for name, key in zip(ROOTS, keys, strict=False):
            write_atomic(folder / f"root-{name}.key", private_pem(key), 0o600)
        write_atomic(folder / "mf-intermediate.key", private_pem(keys[-1]), 0o600)
        roots = b"".join(
            sign_cv(ROOT_IDS[name], key, ROOT_IDS[name], key.public_key())
            for name, key in zip(ROOTS, keys, strict=False)
        )
        write_atomic(folder / "roots.cv", roots, 0o644)
        upper = sign_cv(ROOT_IDS["mf"], keys[0], MF_INTERMEDIATE_ID, keys[-1].public_key())
        write_atomic(folder / "mf-upper.cv", upper, 0o644)
        (folder / "municipal").mkdir(mode=0o700, exist_ok=True)
        doc = {"format": FORMAT, "version": VERSION,
               "roots": {n: key_id_text(ROOT_IDS[n]) for n in ROOTS}}  # fmt: skip
        # cv.json last: its presence says the CV CA is complete
        write_atomic(folder / "cv.json", (json.dumps(doc, indent=1) + "\n").encode(), 0o644)

    @classmethod
    def _load(cls, folder: Path) -> CvCA:
        try:
            doc = json.loads((folder / "cv.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{folder}/cv.json: unreadable ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError(f"{folder}/cv.json: not a jpki-sim CV CA")
        roots = {n: RootKey(n, ROOT_IDS[n], _load_key(folder / f"root-{n}.key")) for n in ROOTS}
        return cls(folder, roots, _load_key(folder / "mf-intermediate.key"))

    # ---- what clients trust

    def root_certificates(self) -> bytes:
        """The three roots as self-signed CV certificates, concatenated (``export-cv``)."""
        return _read(self.directory / "roots.cv")

    def root_pem(self) -> bytes:
        """The roots' public keys as PEM, each after a line naming its key identifier."""
        out = []
        for root in self.roots.values():
            pem = root.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            out.append(f"key id {key_id_text(root.key_id)}: {root.label}\n".encode() + pem)
        return b"".join(out)

    # ---- the MF chain

    def mf_chain_upper(self) -> bytes:
        """F8 at MF level: the MF root certifies the intermediate (the same on every card)."""
        return _read(self.directory / "mf-upper.cv")

    @property
    def mf_intermediate_id(self) -> bytes:
        """GET DATA F7: the key identifier of the intermediate that signs the 7F21 object."""
        return MF_INTERMEDIATE_ID

    def certify_card_key(self, subject: bytes, public: rsa.RSAPublicKey | RsaPublicKey) -> bytes:
        """7F21 at MF level: the intermediate certifies a key of the card's own."""
        return sign_cv(MF_INTERMEDIATE_ID, self._intermediate, subject, public)

    def mf_chain(self, subject: bytes, public: rsa.RSAPublicKey | RsaPublicKey) -> Sequence[bytes]:
        return (self.mf_chain_upper(), self.certify_card_key(subject, public))

    # ---- the applications' certificates and record signatures

    def _municipal(self, app: App, code: str) -> tuple[rsa.RSAPrivateKey, bytes]:
        if app not in APPLICATIONS:
            raise ValueError(f"no CV certificate for application {app!r}")
        cached = self._municipal_keys.get((app, code))
        if cached is not None:
            return cached
        subject = municipal_key_id(app, code)
        base = self.directory / "municipal" / f"{app}-{code}"
        key_path, cert_path = base.with_suffix(".key"), base.with_suffix(".cv")
        if not cert_path.exists():
            with folder_lock(self.directory):
                if not cert_path.exists():
                    key = generate_keys(1)[0]
                    write_atomic(key_path, private_pem(key), 0o600)
                    root = self.roots[app]
                    cert = sign_cv(root.key_id, root.key, subject, key.public_key())
                    write_atomic(cert_path, cert, 0o644)  # last: the pair is complete
        pair = self._municipal_keys[(app, code)] = (_load_key(key_path), _read(cert_path))
        return pair

    def application_certificate(self, app: App, municipality_code: str) -> bytes:
        """EF 0004 of ``app``: its root certifies the municipality's record-signing key."""
        return self._municipal(app, municipality_code)[1]

    def sign(self, app: App, municipality_code: str, data: bytes) -> bytes:
        """A record signature: PKCS#1 v1.5 / SHA-256 over ``data`` by the municipality's key."""
        key = self._municipal(app, municipality_code)[0]
        return key.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())

    def sign_digest_info(self, app: App, municipality_code: str, digest_info: bytes) -> bytes:
        """PKCS#1 v1.5 over a DigestInfo as given (the card face's three digests)."""
        return pkcs1_v15_sign_raw(self._municipal(app, municipality_code)[0], bytes(digest_info))

    def record_public_key(self, app: App, municipality_code: str) -> rsa.RSAPublicKey:
        return self._municipal(app, municipality_code)[0].public_key()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: unreadable ({exc.strerror})") from None
