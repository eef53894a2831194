"""NSS: OpenSC's module added to a fresh database lists the card's certificates, tstclnt
authenticates with the card in TLS 1.2, and NSS's two verifiers judge the certificate."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from compat_harness import (
    AUTH_PIN,
    AUTH_TOKEN,
    Row,
    Served,
    client_env,
    first_error,
    need_tools,
    ok,
    pem_certificates,
    pkcs11_module,
    run,
)
from tls_harness import TlsServer, client_certificate_in_page, holder_seen

pytestmark = [pytest.mark.pcsc]

AUTH_NICK = f"{AUTH_TOKEN}:User Authentication Certificate"


@pytest.fixture
def nssdb(served: Served, tmp_path: Path) -> str:
    """A fresh NSS database with OpenSC's module, as a browser profile would have it."""
    need_tools("modutil", "certutil", "tstclnt", "vfychain", package="libnss3-tools")
    folder = tmp_path / "nssdb"
    folder.mkdir()
    db = f"sql:{folder}"
    ok(run(["certutil", "-N", "-d", db, "--empty-password"]))
    added = ok(run(["modutil", "-dbdir", db, "-add", "opensc", "-libfile", pkcs11_module(),
                    "-force"]))
    assert 'Module "opensc" added to database' in added.stdout
    (tmp_path / "pin").write_text(AUTH_PIN + "\n")
    return db


@pytest.mark.compat("nss", "`modutil -add` OpenSC's module to a fresh database, "
                    "`certutil -L -h all` lists the card's certificates")
def test_certutil_lists_the_card(served: Served, nssdb: str, tmp_path: Path) -> None:
    listed = ok(run(["modutil", "-dbdir", nssdb, "-list"])).stdout
    assert f"token: {AUTH_TOKEN}" in listed and "token: JPKI (Digital Signature PIN)" in listed
    out = ok(run(["certutil", "-L", "-d", nssdb, "-h", "all", "-f",
                  str(tmp_path / "pin")])).stdout
    names = sorted(m.group(1) for ln in out.splitlines()
                   if (m := re.match(r"(JPKI \(.*?)\s+\S*,\S*,\S*\s*$", ln)))
    assert names == sorted([AUTH_NICK, f"{AUTH_TOKEN}:User Authentication Certificate CA",
                            f"{AUTH_TOKEN}:Digital Signature Certificate CA"])
    pem = ok(run(["certutil", "-L", "-d", nssdb, "-h", AUTH_TOKEN, "-f", str(tmp_path / "pin"),
                  "-n", AUTH_NICK, "-a"])).stdout
    assert pem_certificates(pem) == [served.cert_der("auth")], pem


@pytest.mark.compat("nss", "`tstclnt` TLS 1.2 client authentication with the card's "
                    "certificate: the server verifies the holder's certificate")
def test_tstclnt_tls12(served: Served, nssdb: str, tmp_path: Path) -> None:
    auth_root = served.write_pem("auth", tmp_path / "auth-root.pem", ca=True)
    server = TlsServer(tmp_path, auth_root, "tls1_2")
    try:
        ok(run(["certutil", "-A", "-d", nssdb, "-n", "local server", "-t", "P,,",
                "-i", str(server.cert)]))
        page = tmp_path / "tstclnt.out"
        with open(page, "w") as out, open(tmp_path / "tstclnt.err", "w") as err:
            client = subprocess.Popen(
                ["tstclnt", "-4", "-h", "localhost", "-p", str(server.port), "-d", nssdb,
                 "-n", AUTH_NICK, "-w", AUTH_PIN, "-V", "tls1.2:tls1.2"],
                stdin=subprocess.PIPE, stdout=out, stderr=err, text=True, env=client_env())
            assert client.stdin is not None
            client.stdin.write("GET / HTTP/1.0\r\n\r\n")
            client.stdin.close()
            # tstclnt does not always return when s_server closes: stop it once the page is in
            deadline = time.monotonic() + 60
            while "</HTML>" not in page.read_text() and client.poll() is None:
                assert time.monotonic() < deadline, "no answer page within 60 s"
                time.sleep(0.05)
            client.kill()
            client.wait()
        seen = server.finish()
    finally:
        server.close()
    text = page.read_text()
    assert "Protocol  : TLSv1.2" in text, first_error((tmp_path / "tstclnt.err").read_text())
    assert client_certificate_in_page(text) == served.cert_der("auth")
    cn = served.cert("auth").subject.rfc4514_string().split("CN=")[1].split(",")[0]
    assert holder_seen(seen, cn), seen


def vfychain(db: str, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # -u 0: certUsageSSLClient; the test root is trusted in the database
    return run(["vfychain", "-d", db, *extra, "-u", "0", "-a", str(cert)])


@pytest.fixture
def trusting_db(served: Served, nssdb: str, tmp_path: Path) -> tuple[str, Path]:
    root = served.write_pem("auth", tmp_path / "auth-root.pem", ca=True)
    ok(run(["certutil", "-A", "-d", nssdb, "-n", "jpki-sim auth root", "-t", "CT,C,C",
            "-i", str(root)]))
    return nssdb, served.write_pem("auth", tmp_path / "auth.pem")


@pytest.mark.compat("nss", "verify the authentication certificate for TLS client use, libpkix "
                    "(`vfychain -pp`)")
def test_vfychain_libpkix_accepts(trusting_db: tuple[str, Path]) -> None:
    db, cert = trusting_db
    r = vfychain(db, cert, "-pp")
    assert r.returncode == 0 and "Chain is good!" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.compat("nss", "verify the authentication certificate for TLS client use, legacy "
                    "verifier (`vfychain`, `certutil -V`)")
def test_vfychain_legacy_rejects_critical_policies(trusting_db: tuple[str, Path],
                                                   row: Row) -> None:
    db, cert = trusting_db
    r = vfychain(db, cert)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    line = next(ln.strip() for ln in out.splitlines() if "ERROR" in ln)
    assert line == "ERROR -8151: Certificate contains unknown critical extension.", out
    row.client_limitation(
        f"vfychain: {line}",
        "NSS 3.87.1 lib/util/secoid.c:885-887 lists Certificate Policies as "
        "FAKE_SUPPORTED_CERT_EXTENSION, unsupported unless built with "
        "NSS_ALLOW_UNSUPPORTED_CRITICAL (631-635); lib/certdb/certdb.c:767-768 marks the "
        "certificate and lib/certhigh/certvfy.c:732-734 (CERT_VerifyCertChain) refuses it. "
        "Real JPKI certificates carry the policy as critical, as the test CA's do; "
        "NSS's libpkix verifier processes it (the `vfychain -pp` row)")
