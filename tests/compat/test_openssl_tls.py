"""TLS client authentication with the card's authentication key: OpenSSL's s_client and
curl through libengine-pkcs11 (and pkcs11-provider where the platform has it), against
a local ``openssl s_server -Verify 1`` that trusts the test CA's authentication root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compat_harness import (
    AUTH_PIN,
    Row,
    Served,
    deb_candidate,
    first_error,
    need_file,
    need_tools,
    pkcs11_module,
    run,
)
from cryptography.x509.oid import NameOID
from tls_harness import (
    AUTH_CERT_URI,
    AUTH_KEY_URI,
    TlsServer,
    client_certificate_in_page,
    engine_config,
    holder_seen,
)

from pcsc_harness import unavailable

pytestmark = [pytest.mark.pcsc]

REQUEST = "GET / HTTP/1.0\r\n\r\n"


@pytest.fixture(scope="module")
def engine() -> str:
    need_tools("openssl", package="openssl")
    return need_file("/usr/lib/*/engines-3/pkcs11.so", "libengine-pkcs11-openssl")


@pytest.fixture
def auth_root(served: Served, tmp_path: Path) -> Path:
    return served.write_pem("auth", tmp_path / "auth-root.pem", ca=True)


@pytest.fixture
def server_factory(tmp_path: Path, auth_root: Path) -> Iterator[list[TlsServer]]:
    servers: list[TlsServer] = []
    yield servers
    for s in servers:
        s.close()


def holder_cn(served: Served) -> str:
    return str(served.cert("auth").subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def s_client(server: TlsServer, version: str, config: Path, extra: list[str],
             cert: Path) -> tuple[str, int]:
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", f"-{version}",
             "-engine", "pkcs11", "-keyform", "engine", "-key",
             f"{AUTH_KEY_URI};pin-value={AUTH_PIN}", "-cert", str(cert), "-CAfile",
             str(server.cert), "-verify_return_error", "-ign_eof", *extra],
            env={"OPENSSL_CONF": str(config)}, input=REQUEST, timeout=90)
    return r.stdout + r.stderr, r.returncode


@pytest.mark.compat("openssl-engine", "TLS 1.2 client authentication (`s_client`, key by pkcs11 "
                    "URI): the server verifies the holder's certificate")
def test_s_client_tls12(served: Served, engine: str, tmp_path: Path, auth_root: Path,
                        server_factory: list[TlsServer], row: Row) -> None:
    config = engine_config(tmp_path, pkcs11_module(), engine, restrict_sigalgs=True)
    cert = served.write_pem("auth", tmp_path / "auth.pem")
    server = TlsServer(tmp_path, auth_root, "tls1_2")
    server_factory.append(server)
    out, code = s_client(server, "tls1_2", config, [], cert)
    seen = server.finish()
    assert code == 0 and "Protocol  : TLSv1.2" in out, first_error(out)
    assert client_certificate_in_page(out) == served.cert_der("auth")
    assert holder_seen(seen, holder_cn(served)), seen
    row.note("with the client's signature algorithms limited to RSA PKCS#1 v1.5 "
             "(`ClientSignatureAlgorithms`, see the TLS 1.3 row)")


@pytest.mark.compat("openssl-engine", "TLS 1.3 client authentication (`s_client`)")
def test_s_client_tls13_needs_pss(served: Served, engine: str, tmp_path: Path, auth_root: Path,
                                  server_factory: list[TlsServer], row: Row) -> None:
    config = engine_config(tmp_path, pkcs11_module(), engine, restrict_sigalgs=False)
    cert = served.write_pem("auth", tmp_path / "auth.pem")
    server = TlsServer(tmp_path, auth_root, "tls1_3")
    server_factory.append(server)
    out, code = s_client(server, "tls1_3", config, [], cert)
    server.finish()
    assert client_certificate_in_page(out) is None
    line = next((ln.strip() for ln in out.splitlines() if "PKCS#11" in ln), "")
    # libp11 asks the module for CKM_RSA_PKCS_PSS, which OpenSC's jpki driver lacks
    assert "Mechanism invalid" in line and "p11_rsa.c" in line, out
    evidence = line.split(":", 1)[1] if ":" in line else line
    row.client_limitation(
        f"s_client: {evidence}",
        "TLS 1.3 signs with RSA-PSS only (RFC 8446 §4.2.3); OpenSC 0.23.0 "
        "src/libopensc/card-jpki.c:134 registers RSA with PKCS#1 v1.5 padding only "
        "(`SC_ALGORITHM_RSA_PAD_PKCS1`), so its module has no CKM_RSA_PKCS_PSS and the "
        "card's PSS schemes (COMPUTE DIGITAL SIGNATURE P1 04/05) are never used; the same "
        "happens in TLS 1.2 when the client offers RSA-PSS")


@pytest.mark.compat("curl", "TLS 1.2 client authentication, key and certificate by pkcs11 URI: "
                    "the server verifies the holder's certificate")
def test_curl_tls12(served: Served, engine: str, tmp_path: Path, auth_root: Path,
                    server_factory: list[TlsServer], row: Row) -> None:
    need_tools("curl", package="curl")
    config = engine_config(tmp_path, pkcs11_module(), engine, restrict_sigalgs=True)
    server = TlsServer(tmp_path, auth_root, "tls1_2")
    server_factory.append(server)
    r = run(["curl", "-sS", "--tlsv1.2", "--tls-max", "1.2", "--engine", "pkcs11",
             "--key-type", "ENG", "--key", AUTH_KEY_URI, "--cert-type", "ENG", "--cert",
             AUTH_CERT_URI, "--pass", AUTH_PIN, "--cacert", str(server.cert),
             f"https://localhost:{server.port}/"],
            env={"OPENSSL_CONF": str(config)}, timeout=90)
    seen = server.finish()
    assert r.returncode == 0, first_error(r.stderr)
    assert "Protocol  : TLSv1.2" in r.stdout
    assert client_certificate_in_page(r.stdout) == served.cert_der("auth")
    assert holder_seen(seen, holder_cn(served)), seen
    row.note("`ClientSignatureAlgorithms` as for s_client")


def provider_module() -> str:
    found = sorted(Path("/usr/lib").glob("*/ossl-modules/pkcs11.so"))
    if found:
        return str(found[0])
    if deb_candidate("pkcs11-provider") is None:
        pytest.skip("this platform has no pkcs11-provider package (Debian 12 has none; "
                    "Debian 13 and Ubuntu 24.04 have it)")
    unavailable("pkcs11-provider is not installed (apt-get install pkcs11-provider; "
                "tools/setup.sh installs it where the platform has it)")
    raise AssertionError("unreachable")


@pytest.mark.compat("openssl-provider", "TLS 1.2 client authentication (`s_client -provider "
                    "pkcs11`): the server verifies the holder's certificate")
def test_s_client_tls12_provider(served: Served, tmp_path: Path, auth_root: Path,
                                 server_factory: list[TlsServer]) -> None:
    need_tools("openssl", package="openssl")
    module = provider_module()
    cert = served.write_pem("auth", tmp_path / "auth.pem")
    server = TlsServer(tmp_path, auth_root, "tls1_2")
    server_factory.append(server)
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2",
             "-provider-path", str(Path(module).parent), "-provider", "pkcs11",
             "-provider", "default", "-key", f"{AUTH_KEY_URI};pin-value={AUTH_PIN}",
             "-cert", str(cert), "-CAfile", str(server.cert), "-verify_return_error",
             "-ign_eof", "-client_sigalgs", "RSA+SHA256:RSA+SHA384:RSA+SHA512"],
            env={"PKCS11_PROVIDER_MODULE": pkcs11_module()}, input=REQUEST, timeout=90)
    seen = server.finish()
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Protocol  : TLSv1.2" in out, first_error(out)
    assert client_certificate_in_page(out) == served.cert_der("auth")
    assert holder_seen(seen, holder_cn(served)), seen

