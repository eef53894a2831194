"""The test CA: roots, certificate profiles, path validation, CRL, OCSP (function and HTTP)."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki_sim.errors import UserError
from jpki_sim.issuer import certprofile
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.certprofile import read_holder_facts
from jpki_sim.profiles.jpki.state import Identity

HANAKO = Identity(
    name="番号　花子",
    birthdate=date(1993, 3, 31),
    sex="2",
    address="北海道小樽市花園２丁目１２番１号",
    my_number="012345678903",
)
ISSUED = date(2020, 8, 27)
EXPIRES = date(2025, 3, 31)


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(tmp_path_factory.mktemp("ca") / "ca")


@pytest.fixture(scope="module")
def leaf_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def auth_der(test_ca: TestCA, leaf_key: rsa.RSAPrivateKey) -> bytes:
    return test_ca.issue_auth(leaf_key.public_key(), issued=ISSUED, expires=EXPIRES)


@pytest.fixture(scope="module")
def sign_der(test_ca: TestCA, leaf_key: rsa.RSAPrivateKey) -> bytes:
    return test_ca.issue_sign(leaf_key.public_key(), HANAKO, issued=ISSUED, expires=EXPIRES)


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    key.verify(
        cert.signature,
        cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        cert.signature_hash_algorithm,
    )


# ---------------------------------------------------------------- roots


def test_roots_are_self_signed_test_cas_with_jpki_style_names(test_ca: TestCA) -> None:
    purposes: tuple[tuple[certprofile.Which, str], ...] = (
        ("auth", "JPKI for user authentication"),
        ("sign", "JPKI for digital signature"),
    )
    for which, purpose in purposes:
        root = test_ca[which].cert
        assert root.subject == root.issuer
        verify_signed_by(root, root)
        names = [a.value for a in root.subject]
        assert names[:3] == ["JP", "JPKI-TEST", purpose]
        bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = root.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert isinstance(root.public_key(), rsa.RSAPublicKey)
        assert root.public_key().key_size == 2048  # type: ignore[union-attr]
        assert isinstance(root.signature_hash_algorithm, hashes.SHA256)
    assert test_ca.auth.cert.public_key() != test_ca.sign.cert.public_key()


def test_ca_is_created_once_and_private_keys_are_owner_only(test_ca: TestCA) -> None:
    again = TestCA.open(test_ca.directory)
    assert again.auth.cert_der == test_ca.auth.cert_der
    assert again.sign.cert_der == test_ca.sign.cert_der
    for which in ("auth", "sign"):
        mode = stat.S_IMODE((test_ca.directory / f"{which}-ca.key").stat().st_mode)
        assert mode == 0o600
    assert stat.S_IMODE((test_ca.directory / "db.json").stat().st_mode) == 0o600


def test_broken_or_missing_ca_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no test CA"):
        TestCA.open(tmp_path / "nothing", create=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ca.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match="not a jpki-sim CA"):
        TestCA.open(tmp_path / "bad")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        TestCA.open(tmp_path / "file")


# ---------------------------------------------------------------- certificate profiles


def test_auth_certificate_profile(
    test_ca: TestCA, auth_der: bytes, leaf_key: rsa.RSAPrivateKey
) -> None:
    cert = x509.load_der_x509_certificate(auth_der)
    verify_signed_by(cert, test_ca.auth.cert)
    assert cert.issuer == test_ca.auth.cert.subject
    # subject: C=JP, CN=<23 alphanumerics>, nothing personal
    attrs = list(cert.subject)
    assert [a.oid for a in attrs] == [NameOID.COUNTRY_NAME, NameOID.COMMON_NAME]
    cn = str(attrs[1].value)
    assert len(cn) == 23 and cn.isalnum() and cn.isascii()
    assert "花子" not in cert.subject.rfc4514_string()
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies)
    assert pol.critical
    assert [p.policy_identifier.dotted_string for p in pol.value] == ["1.2.392.200149.8.5.1.3.30"]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == [test_ca.ocsp_url]
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dps[0].full_name is not None
    assert x509.UniformResourceIdentifier(test_ca.crl_url("auth")) in dps[0].full_name
    assert cert.not_valid_after_utc == datetime(2025, 3, 31, 14, 59, 59, tzinfo=timezone.utc)
    assert cert.not_valid_before_utc == datetime(2020, 8, 26, 15, 0, 0, tzinfo=timezone.utc)
    assert cert.public_key() == leaf_key.public_key()
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.authority_cert_serial_number == test_ca.auth.cert.serial_number


def test_sign_certificate_profile(test_ca: TestCA, sign_der: bytes) -> None:
    cert = x509.load_der_x509_certificate(sign_der)
    verify_signed_by(cert, test_ca.sign.cert)
    with pytest.raises(InvalidSignature):
        verify_signed_by(cert, test_ca.auth.cert)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    pol = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in pol] == ["1.2.392.200149.8.5.1.0.20"]
    assert read_holder_facts(cert) == {
        "1.2.392.200149.8.5.5.1": "番号　花子",
        "1.2.392.200149.8.5.5.2": "00000",
        "1.2.392.200149.8.5.5.3": "2",
        "1.2.392.200149.8.5.5.4": "419930331",  # 平成 (era 4), 1993-03-31
        "1.2.392.200149.8.5.5.5": "北海道小樽市花園２丁目１２番１号",
        "1.2.392.200149.8.5.5.6": "0" * 16,  # one flag per character of the address
    }
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert dps[0].full_name is not None
    assert x509.UniformResourceIdentifier(test_ca.crl_url("sign")) in dps[0].full_name


def test_other_name_values_are_der_utf8_strings() -> None:
    assert certprofile.utf8_string("00000") == b"\x0c\x0500000"
    long = "あ" * 50  # 150 bytes: long-form length
    assert certprofile.utf8_string(long)[:3] == b"\x0c\x81\x96"
    assert certprofile.JPKI_SEX == {"1": "1", "2": "2", "9": "3", "0": "3"}


def test_certificate_der_is_kept_exactly_as_issued(test_ca: TestCA, auth_der: bytes) -> None:
    serial = x509.load_der_x509_certificate(auth_der).serial_number
    rec = test_ca.record(serial)
    assert rec is not None and rec.cert_der == auth_der and rec.which == "auth"


def test_serials_are_positive_and_distinct(test_ca: TestCA, leaf_key: rsa.RSAPrivateKey) -> None:
    serials = {
        x509.load_der_x509_certificate(
            test_ca.issue_auth(leaf_key.public_key(), issued=ISSUED, expires=EXPIRES)
        ).serial_number
        for _ in range(5)
    }
    assert len(serials) == 5
    assert all(0 < s < 1 << 63 for s in serials)


def test_expiry_before_issue_is_refused(test_ca: TestCA, leaf_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(UserError, match="before it is issued"):
        test_ca.issue_auth(leaf_key.public_key(), issued=EXPIRES, expires=ISSUED)


# ---------------------------------------------------------------- path validation (openssl)

OPENSSL = shutil.which("openssl")


def openssl_verify(
    tmp: Path, root: x509.Certificate, leaf_der: bytes, at: datetime, *args: str
) -> subprocess.CompletedProcess[str]:
    assert OPENSSL, "openssl is needed for path validation"
    (tmp / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    leaf = x509.load_der_x509_certificate(leaf_der)
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        [OPENSSL, "verify", "-x509_strict", "-attime", str(int(at.timestamp())), *args,
         "-CAfile", str(tmp / "root.pem"), str(tmp / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_auth_certificate_validates_to_its_root_as_a_client_cert(
    test_ca: TestCA, auth_der: bytes, tmp_path: Path
) -> None:
    args = ("-purpose", "sslclient", "-policy", "1.2.392.200149.8.5.1.3.30", "-explicit_policy")
    inside = datetime(2023, 1, 1, tzinfo=timezone.utc)
    ok = openssl_verify(tmp_path, test_ca.auth.cert, auth_der, inside, *args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # (openssl treats the notAfter second itself as expired; RFC 5280 includes it)
    last = datetime(2025, 3, 31, 14, 59, 58, tzinfo=timezone.utc)
    assert openssl_verify(tmp_path, test_ca.auth.cert, auth_der, last, *args).returncode == 0
    gone = datetime(2025, 3, 31, 15, 0, 0, tzinfo=timezone.utc)
    expired = openssl_verify(tmp_path, test_ca.auth.cert, auth_der, gone, *args)
    assert expired.returncode != 0 and "expired" in expired.stdout + expired.stderr
    wrong_root = openssl_verify(tmp_path, test_ca.sign.cert, auth_der, inside)
    assert wrong_root.returncode != 0


def test_sign_certificate_validates_to_the_sign_root_only(
    test_ca: TestCA, sign_der: bytes, tmp_path: Path
) -> None:
    at = datetime(2023, 1, 1, tzinfo=timezone.utc)
    args = ("-policy", "1.2.392.200149.8.5.1.0.20", "-explicit_policy")
    assert openssl_verify(tmp_path, test_ca.sign.cert, sign_der, at, *args).returncode == 0
    assert openssl_verify(tmp_path, test_ca.auth.cert, sign_der, at).returncode != 0


# ---------------------------------------------------------------- revocation


@pytest.fixture()
def fresh(
    test_ca: TestCA, leaf_key: rsa.RSAPrivateKey
) -> tuple[x509.Certificate, x509.Certificate]:
    a = test_ca.issue_auth(leaf_key.public_key(), issued=ISSUED, expires=EXPIRES)
    s = test_ca.issue_sign(leaf_key.public_key(), HANAKO, issued=ISSUED, expires=EXPIRES)
    return x509.load_der_x509_certificate(a), x509.load_der_x509_certificate(s)


def test_crl_lists_revoked_serials_of_its_own_ca_signed_by_it(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate]
) -> None:
    auth, sign = fresh
    when = datetime(2024, 6, 1, 3, 0, tzinfo=timezone.utc)
    test_ca.revoke(auth.serial_number, at=when, reason="superseded")
    test_ca.revoke(sign.serial_number, at=when, reason="affiliationChanged")
    auth_crl = x509.load_der_x509_crl(
        test_ca.crl("auth", at=datetime(2024, 7, 1, tzinfo=timezone.utc))
    )
    sign_crl = x509.load_der_x509_crl(
        test_ca.crl("sign", at=datetime(2024, 7, 1, tzinfo=timezone.utc))
    )
    assert auth_crl.issuer == test_ca.auth.cert.subject
    assert auth_crl.is_signature_valid(test_ca.auth.cert.public_key())  # type: ignore[arg-type]
    assert not auth_crl.is_signature_valid(test_ca.sign.cert.public_key())  # type: ignore[arg-type]
    assert sign_crl.is_signature_valid(test_ca.sign.cert.public_key())  # type: ignore[arg-type]
    entry = auth_crl.get_revoked_certificate_by_serial_number(auth.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == when
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded
    assert auth_crl.get_revoked_certificate_by_serial_number(sign.serial_number) is None
    assert sign_crl.get_revoked_certificate_by_serial_number(sign.serial_number) is not None
    # a CRL dated before the revocation does not list it yet
    early = x509.load_der_x509_crl(
        test_ca.crl("auth", at=datetime(2024, 5, 1, tzinfo=timezone.utc))
    )
    assert early.get_revoked_certificate_by_serial_number(auth.serial_number) is None


def test_revoking_twice_keeps_the_first_date_and_unknown_serial_is_refused(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate]
) -> None:
    auth, _ = fresh
    first = datetime(2024, 1, 1, tzinfo=timezone.utc)
    test_ca.revoke(auth.serial_number, at=first)
    rec = test_ca.revoke(auth.serial_number, at=datetime(2024, 2, 1, tzinfo=timezone.utc))
    assert rec.revoked_at == first
    with pytest.raises(UserError, match="not issued"):
        test_ca.revoke(12345, at=first)


def ocsp_request(
    cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def check_ocsp_signature(resp: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    key = issuer.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(resp.signature, resp.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256())


def test_ocsp_good_then_revoked(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate]
) -> None:
    auth, sign = fresh
    before = datetime(2023, 1, 1, tzinfo=timezone.utc)
    resp = ocsp.load_der_ocsp_response(
        test_ca.ocsp_response(ocsp_request(auth, test_ca.auth.cert, b"n0nce-1"), at=before)
    )
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == auth.serial_number
    check_ocsp_signature(resp, test_ca.auth.cert)
    nonce = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"n0nce-1"

    when = datetime(2024, 3, 1, tzinfo=timezone.utc)
    test_ca.revoke(auth.serial_number, at=when)
    after = datetime(2024, 3, 2, tzinfo=timezone.utc)
    resp = ocsp.load_der_ocsp_response(
        test_ca.ocsp_response(ocsp_request(auth, test_ca.auth.cert), at=after)
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc == when
    assert resp.revocation_reason is x509.ReasonFlags.superseded
    # asked about an earlier instant, the answer is still "good"
    resp = ocsp.load_der_ocsp_response(
        test_ca.ocsp_response(ocsp_request(auth, test_ca.auth.cert), at=before)
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    # the sign certificate is answered by the sign CA
    resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(ocsp_request(sign, test_ca.sign.cert)))
    assert resp.certificate_status is ocsp.OCSPCertStatus.GOOD
    check_ocsp_signature(resp, test_ca.sign.cert)


def test_ocsp_unknown_unauthorized_and_malformed(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate], leaf_key: rsa.RSAPrivateKey
) -> None:
    auth, _ = fresh
    # right CA names, but a serial it never issued
    stranger = (
        x509.CertificateBuilder()
        .subject_name(auth.subject)
        .issuer_name(test_ca.auth.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(424242)
        .not_valid_before(auth.not_valid_before_utc)
        .not_valid_after(auth.not_valid_after_utc)
        .sign(leaf_key, hashes.SHA256())
    )
    resp = ocsp.load_der_ocsp_response(
        test_ca.ocsp_response(ocsp_request(stranger, test_ca.auth.cert))
    )
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    # a sign serial asked of the auth CA: unknown there
    sign_serial = fresh[1].serial_number
    probe = ocsp.load_der_ocsp_request(ocsp_request(auth, test_ca.auth.cert))
    crossed = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            probe.issuer_name_hash, probe.issuer_key_hash, sign_serial, hashes.SHA1()
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(crossed))
    assert resp.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    # the auth CA's name with the sign CA's key: no such issuer here
    resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(ocsp_request(auth, test_ca.sign.cert)))
    assert resp.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    # an issuer this responder does not serve
    resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(ocsp_request(auth, auth)))
    assert resp.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    for junk in (b"", b"\x30\x03\x02\x01\x00", b"not der at all"):
        resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(junk))
        assert resp.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# ---------------------------------------------------------------- OCSP over HTTP


@pytest.fixture()
def http_server(test_ca: TestCA) -> Iterator[str]:
    from jpki_sim.control.runner import ControlRunner

    runner = ControlRunner.start([], "127.0.0.1:0", cas=[test_ca], control=False, presign=False)
    try:
        yield runner.url.rstrip("/")
    finally:
        runner.stop()


def test_http_ocsp_post_get_and_crl(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate], http_server: str
) -> None:
    auth, _ = fresh
    test_ca.revoke(auth.serial_number, at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    body = ocsp_request(auth, test_ca.auth.cert)
    req = urllib.request.Request(
        f"{http_server}/ocsp", data=body, headers={"Content-Type": "application/ocsp-request"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"] == "application/ocsp-response"
        resp = ocsp.load_der_ocsp_response(r.read())
    assert resp.certificate_status is ocsp.OCSPCertStatus.REVOKED
    encoded = urllib.parse.quote(base64.b64encode(body).decode(), safe="")
    with urllib.request.urlopen(f"{http_server}/ocsp/{encoded}", timeout=10) as r:
        assert (
            ocsp.load_der_ocsp_response(r.read()).certificate_status is ocsp.OCSPCertStatus.REVOKED
        )
    with urllib.request.urlopen(f"{http_server}/crl/auth.crl", timeout=10) as r:
        crl = x509.load_der_x509_crl(r.read())
    assert crl.get_revoked_certificate_by_serial_number(auth.serial_number) is not None
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{http_server}/nothing", timeout=10)
    assert err.value.code == 404


def test_http_server_binds_localhost_only(test_ca: TestCA) -> None:
    from jpki_sim.control.runner import ControlRunner

    runner = ControlRunner.start([], "127.0.0.1:0", cas=[test_ca], control=False, presign=False)
    try:
        assert runner.server.sock.getsockname()[0] == "127.0.0.1"
    finally:
        runner.stop()


def test_openssl_ocsp_client_with_several_certificates(
    test_ca: TestCA,
    fresh: tuple[x509.Certificate, x509.Certificate],
    leaf_key: rsa.RSAPrivateKey,
    http_server: str,
    tmp_path: Path,
) -> None:
    auth, _ = fresh
    other = x509.load_der_x509_certificate(
        test_ca.issue_auth(leaf_key.public_key(), issued=ISSUED, expires=EXPIRES)
    )
    test_ca.revoke(auth.serial_number, at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    root = tmp_path / "root.pem"
    root.write_bytes(test_ca.auth.cert.public_bytes(serialization.Encoding.PEM))
    for name, cert in (("revoked.pem", auth), ("good.pem", other)):
        (tmp_path / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert OPENSSL
    run = subprocess.run(
        [OPENSSL, "ocsp", "-issuer", str(root), "-CAfile", str(root),
         "-cert", str(tmp_path / "revoked.pem"), "-cert", str(tmp_path / "good.pem"),
         "-url", f"{http_server}/ocsp"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Response verify OK" in out
    assert f"{tmp_path / 'revoked.pem'}: revoked" in out
    assert f"{tmp_path / 'good.pem'}: good" in out
    assert "Reason: superseded" in out


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_ocsp_answers_any_bytes_with_a_well_formed_response(
    test_ca: TestCA, fresh: tuple[x509.Certificate, x509.Certificate], data: st.DataObject
) -> None:
    valid = bytearray(ocsp_request(fresh[0], test_ca.auth.cert, b"nonce"))
    kind = data.draw(st.sampled_from(["random", "mutated", "truncated"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=300))
    elif kind == "truncated":
        blob = bytes(valid[: data.draw(st.integers(0, len(valid)))])
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(valid) - 1))
            valid[pos] = data.draw(st.integers(0, 255))
        blob = bytes(valid)
    resp = ocsp.load_der_ocsp_response(test_ca.ocsp_response(blob))
    if resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        check_ocsp_signature(resp, test_ca.auth.cert)
