"""A local TLS server that demands a client certificate (``openssl s_server -Verify 1``),
and the OpenSSL configuration that loads libengine-pkcs11 with OpenSC's module."""

from __future__ import annotations

import datetime
import subprocess
import time
from pathlib import Path

import pytest
from compat_harness import client_env, free_port, pem_certificates
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

AUTH_KEY_URI = ("pkcs11:token=JPKI%20(User%20Authentication%20PIN);"
                "object=User%20Authentication%20Key;type=private")
AUTH_CERT_URI = ("pkcs11:token=JPKI%20(User%20Authentication%20PIN);"
                 "object=User%20Authentication%20Certificate;type=cert")

#: what a TLS 1.2 client must offer for the card's key: RSA with PKCS#1 v1.5 only
PKCS1_SIGALGS = "RSA+SHA256:RSA+SHA384:RSA+SHA512"


def server_identity(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (the server's, not the card's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def engine_config(folder: Path, module: str, engine: str, *, restrict_sigalgs: bool) -> Path:
    """An openssl.cnf that loads the pkcs11 engine, as its Debian README shows."""
    lines = [
        "openssl_conf = openssl_init",
        "[openssl_init]",
        "engines = engine_section",
    ]
    if restrict_sigalgs:
        lines.append("ssl_conf = ssl_section")
    lines += [
        "[engine_section]",
        "pkcs11 = pkcs11_section",
        "[pkcs11_section]",
        "engine_id = pkcs11",
        f"dynamic_path = {engine}",
        f"MODULE_PATH = {module}",
        "init = 0",
    ]
    if restrict_sigalgs:
        lines += ["[ssl_section]", "system_default = tls_defaults", "[tls_defaults]",
                  f"ClientSignatureAlgorithms = {PKCS1_SIGALGS}"]
    path = folder / ("openssl-pkcs1.cnf" if restrict_sigalgs else "openssl.cnf")
    path.write_text("\n".join(lines) + "\n")
    return path


class TlsServer:
    """``openssl s_server -www -Verify 1`` for one connection, trusting ``client_ca``.

    Its output goes to files that are polled: a pipe read line by line behind a
    selector can hold a second line in Python's buffer while select() waits."""

    def __init__(self, folder: Path, client_ca: Path, version: str) -> None:
        self.cert, key = server_identity(folder)
        self.port = free_port()
        self.out = folder / f"s_server-{self.port}.out"
        self.log = folder / f"s_server-{self.port}.log"
        with open(self.out, "w") as out, open(self.log, "w") as err:
            self.proc = subprocess.Popen(
                ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert",
                 str(self.cert), "-key", str(key), "-Verify", "1", "-CAfile", str(client_ca),
                 "-verify_return_error", f"-{version}", "-naccept", "1", "-www"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=client_env())
        deadline = time.monotonic() + 30
        while "ACCEPT" not in self.out.read_text():
            if self.proc.poll() is not None:
                pytest.fail(f"s_server exited: {self.text()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"s_server did not print ACCEPT: {self.text()}", pytrace=False)
            time.sleep(0.02)

    def finish(self, timeout: float = 30) -> str:
        """Everything s_server said, once its one connection is over."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
        return self.text()

    def text(self) -> str:
        return self.out.read_text() + "\n" + self.log.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def client_certificate_in_page(page: str) -> bytes | None:
    """The client certificate s_server -www shows in its status page, DER."""
    _, found, rest = page.partition("Client certificate")
    certs = pem_certificates(rest) if found else []
    return certs[0] if certs else None


def holder_seen(server_text: str, cn: str) -> bool:
    """s_server verified a chain whose leaf is the holder's certificate."""
    return f"depth=0 C = JP, CN = {cn}" in server_text and "verify error" not in server_text
