"""The test CV CA: roots, the MF chain, the applications' certificates, signed records.

Every check goes through :mod:`jpki_sim.profiles.jpki.cv_verify`, which reads the
bytes with its own BER reader, against the roots as ``ca export-cv`` writes them.
"""

from __future__ import annotations

import json
import stat
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.cli import main
from jpki_sim.errors import UserError
from jpki_sim.issuer import cvrecords
from jpki_sim.issuer.cv import ROOT_IDS, CvCA, generate_keys, municipal_key_id
from jpki_sim.profiles.jpki import cv_verify as v
from jpki_sim.profiles.jpki import records
from jpki_sim.profiles.jpki import records_cv as rcv

MUNI = "01203"  # 小樽市
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))
JP2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(range(200)) * 3


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CvCA:
    return CvCA.open(tmp_path_factory.mktemp("cv") / "ca")


@pytest.fixture(scope="module")
def roots(ca: CvCA) -> dict[bytes, rsa.RSAPublicKey]:
    return v.load_roots(ca.root_certificates())


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return generate_keys(1)[0]


def _issuer(ca: CvCA, roots: Any, app: str) -> rsa.RSAPublicKey:
    return v.verify_cv_chain([ca.application_certificate(app, MUNI)], roots)  # type: ignore[arg-type]


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


# ---------------------------------------------------------------- roots


def test_three_self_signed_roots_in_the_cards_layout(ca: CvCA, roots: Any) -> None:
    raw = ca.root_certificates()
    assert len(raw) == 3 * rcv.CV_CERTIFICATE_SIZE and raw[:5] == bytes.fromhex("7F21820233")
    assert [rcv.key_id_text(k) for k in roots] == ["9000020/001", "9000023/001", "9000033/001"]
    assert set(roots) == set(ROOT_IDS.values())
    for offset in range(0, len(raw), rcv.CV_CERTIFICATE_SIZE):
        cert = rcv.decode_cv_certificate(raw[offset : offset + rcv.CV_CERTIFICATE_SIZE])
        assert cert["issuer_key_id"] == cert["subject_key_id"]


def test_a_tampered_or_foreign_root_file_is_refused(ca: CvCA) -> None:
    raw = ca.root_certificates()
    with pytest.raises(v.VerifyError, match="does not verify"):
        v.load_roots(_flip(raw, 100))  # inside the first body
    with pytest.raises(v.VerifyError):
        v.load_roots(b"")
    other = ca.application_certificate("surface", MUNI)  # issued by a root, not self-signed
    with pytest.raises(v.VerifyError, match="another key"):
        v.load_roots(other)


def test_the_ca_is_made_once_keeps_its_keys_private_and_reopens(ca: CvCA) -> None:
    again = CvCA.open(ca.directory.parent)
    assert again.root_certificates() == ca.root_certificates()
    for name in ("root-mf.key", "root-surface.key", "root-helper.key", "mf-intermediate.key"):
        assert stat.S_IMODE((ca.directory / name).stat().st_mode) == 0o600
    with pytest.raises(UserError, match="no CV CA"):
        CvCA.open(ca.directory.parent / "elsewhere", create=False)


def test_concurrent_first_use_makes_one_ca(tmp_path: Path) -> None:
    made: list[bytes] = []

    def open_it() -> None:
        made.append(CvCA.open(tmp_path / "ca").root_certificates())

    threads = [threading.Thread(target=open_it) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 3 and len(set(made)) == 1


# ---------------------------------------------------------------- the MF chain


def test_mf_chain_verifies_to_the_card_key_in_get_data_form(
    ca: CvCA, roots: Any, card_key: rsa.RSAPrivateKey
) -> None:
    subject = rcv.key_id("8000001")
    upper, lower = ca.mf_chain(subject, card_key.public_key())
    chain = [rcv.cv_contents(upper), rcv.cv_contents(lower)]  # as GET DATA F8 / 7F21 answer
    key = v.verify_cv_chain(chain, roots)
    assert v.same_key(key, card_key.public_key())
    assert v.parse_cv(chain[0]).subject_key_id == ca.mf_intermediate_id == v.parse_cv(
        chain[1]
    ).issuer_key_id
    with pytest.raises(v.VerifyError, match="broken"):
        v.verify_cv_chain([chain[0], chain[0]], roots)
    for wrong in (chain[::-1], chain[1:]):
        with pytest.raises(v.VerifyError, match="trusted root"):
            v.verify_cv_chain(wrong, roots)
    with pytest.raises(v.VerifyError, match="does not verify"):
        v.verify_cv_chain([chain[0], _flip(chain[1], 40)], roots)


def test_the_upper_certificate_is_the_same_on_every_card(ca: CvCA) -> None:
    a = ca.mf_chain(rcv.key_id("8000001"), generate_keys(1)[0].public_key())
    b = ca.mf_chain(rcv.key_id("8000002"), generate_keys(1)[0].public_key())
    assert a[0] == b[0] and a[1] != b[1]


# ---------------------------------------------------------------- application certificates


def test_application_certificates_certify_the_municipalitys_key(ca: CvCA, roots: Any) -> None:
    for app, root_id, subject in (("surface", "9000023/001", "0120321/000"),
                                  ("helper", "9000033/001", "0120331/000")):  # fmt: skip
        cert = ca.application_certificate(app, MUNI)  # type: ignore[arg-type]
        assert len(cert) == 568 and cert[:5] == bytes.fromhex("7F21820233")
        parsed = v.parse_cv(cert)
        assert rcv.key_id_text(parsed.issuer_key_id) == root_id
        assert rcv.key_id_text(parsed.subject_key_id) == subject
        assert parsed.subject_key_id == municipal_key_id(app, MUNI)  # type: ignore[arg-type]
        key = v.verify_cv_chain([cert], roots)
        assert v.same_key(key, ca.record_public_key(app, MUNI))  # type: ignore[arg-type]
        # not under another root, not under the key it carries
        other = roots[ROOT_IDS["helper" if app == "surface" else "surface"]]
        with pytest.raises(v.VerifyError):
            v.verify_cv(cert, other)
        with pytest.raises(v.VerifyError):
            v.verify_cv(cert, key)
    # one key per municipality: the same certificate again, another one elsewhere
    assert ca.application_certificate("surface", MUNI) == CvCA.open(
        ca.directory.parent
    ).application_certificate("surface", MUNI)
    assert ca.application_certificate("surface", "13221") != ca.application_certificate(
        "surface", MUNI
    )
    with pytest.raises(UserError, match="5 digits"):
        ca.application_certificate("surface", "1322")


# ---------------------------------------------------------------- signed records


def test_surface_records_verify_and_tampering_is_caught(
    ca: CvCA, roots: Any, card_key: rsa.RSAPrivateKey
) -> None:
    issuer = _issuer(ca, roots, "surface")
    age = cvrecords.surface_age_record(ca, MUNI, date(1980, 2, 17), card_key)
    v.verify_record(age, 0xFF10, 0xDF13, issuer)
    assert v.same_key(v.record_key(age, 0xFF10, 0xDF12), card_key.public_key())
    with pytest.raises(v.VerifyError):
        v.verify_record(_flip(age, 14), 0xFF10, 0xDF13, issuer)  # the birth date
    # the card's own key (carried in the record) is not the one that signed it
    with pytest.raises(v.VerifyError):
        v.verify_record(age, 0xFF10, 0xDF13, card_key.public_key())

    face = cvrecords.surface_card_face(
        ca, MUNI, born=date(1980, 2, 17), sex="1", card_key=card_key, name_png=PNG,
        address_png=PNG + b"!", photo=JP2, expires=date(2035, 2, 17), security_code_png=PNG,
    )  # fmt: skip
    v.verify_card_face(face, issuer)
    image = cvrecords.surface_my_number_image(ca, MUNI, PNG, card_key)
    v.verify_record(image, 0xFF40, 0xDF43, issuer)
    # a changed photo, name image, sex or key breaks the face; expiry and code image do not
    photo_at = face.index(JP2)
    for at in (photo_at + 100, face.index(PNG) + 20, face.index(b"\xdf\x23\x01") + 3):
        with pytest.raises(v.VerifyError):
            v.verify_card_face(_flip(face, at), issuer)
    expiry_at = face.index(b"\xdf\x29\x08") + 3
    v.verify_card_face(_flip(face, expiry_at), issuer)
    v.verify_card_face(_flip(face, len(face) - 1), issuer)  # the security code image


def test_helper_records_verify_against_the_files_they_vouch_for(
    ca: CvCA, roots: Any, card_key: rsa.RSAPrivateKey
) -> None:
    issuer = _issuer(ca, roots, "helper")
    my_number = records.encode_helper_my_number("012345678903")
    facts = records.encode_helper_basic_info("番号\u3000花子", "北海道小樽市花園２丁目１２番１号",
                                             date(1993, 3, 31), "2", size=300)  # fmt: skip
    integrity = cvrecords.helper_integrity(ca, MUNI, my_number, facts)
    v.verify_integrity(integrity, my_number, facts, issuer)
    # EF 0001 is hashed as stored, filler included; EF 0002 after its offset table
    with pytest.raises(v.VerifyError, match="DF31"):
        v.verify_integrity(integrity, my_number[:15], facts, issuer)
    other = records.encode_helper_basic_info("番号\u3000花子", "北海道小樽市花園２丁目１２番２号",
                                             date(1993, 3, 31), "2")  # fmt: skip
    with pytest.raises(v.VerifyError, match="DF32"):
        v.verify_integrity(integrity, my_number, other, issuer)
    v.verify_integrity(integrity, my_number, _flip(facts, 7), issuer)  # the offsets: not covered
    with pytest.raises(v.VerifyError, match="does not verify"):
        v.verify_integrity(_flip(integrity, 10), my_number, facts, issuer)
    signed = cvrecords.helper_signed_key(ca, MUNI, card_key)
    v.verify_record(signed, 0xFF50, 0xDF52, issuer)
    assert v.same_key(v.record_key(signed, 0xFF50, 0xDF51), card_key.public_key())
    with pytest.raises(v.VerifyError):
        v.verify_record(signed, 0xFF50, 0xDF52, _issuer(ca, roots, "surface"))


def test_a_challenge_signature_checks_against_the_card_key(card_key: rsa.RSAPrivateKey) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    challenge = bytes(range(16))
    signature = card_key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())
    v.verify_challenge(card_key.public_key(), challenge, signature)
    with pytest.raises(v.VerifyError):
        v.verify_challenge(card_key.public_key(), challenge[::-1], signature)


def test_the_verifier_refuses_malformed_bytes() -> None:
    for bad in (b"", b"\x7f\x21\x05\x5f\x4e\x01\x00", b"\x5f\x4e\x82\xff", b"\x30\x00"):
        with pytest.raises(v.VerifyError):
            v.parse_cv(bad)
    with pytest.raises(v.VerifyError, match="90 object"):
        v.rsa_key(b"\x91\x01\x03\x90\x01\x03")


def test_generate_keys_gives_distinct_rsa_2048_keys() -> None:
    keys = generate_keys(3)
    assert len({k.public_key().public_numbers().n for k in keys}) == 3
    assert all(k.key_size == 2048 for k in keys) and generate_keys(0) == []


# ---------------------------------------------------------------- the CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ca_show_lists_the_cv_roots_and_export_cv_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir = str(tmp_path / "ca")
    # `ca show` never creates a CA (issue 11): a missing one is an error, `ca init` makes it
    code, _, _ = _run(capsys, "ca", "show", "--ca", ca_dir, "--json")
    assert code == 2
    code, _, _ = _run(capsys, "ca", "init", "--ca", ca_dir)
    assert code == 0
    code, out, _ = _run(capsys, "ca", "show", "--ca", ca_dir, "--json")
    assert code == 0
    shown = json.loads(out)["cv_roots"]
    assert {n: r["key_id"] for n, r in shown.items()} == {
        "mf": "9000020/001", "surface": "9000023/001", "helper": "9000033/001"}  # fmt: skip
    code, out, _ = _run(capsys, "ca", "show", "--ca", ca_dir)
    assert code == 0 and "CV root 9000023/001" in out
    code, out, _ = _run(capsys, "ca", "export-cv", "--ca", ca_dir, "--out", str(tmp_path / "r"))
    assert code == 0 and "9000033/001" in out
    roots = v.load_roots((tmp_path / "r").read_bytes())
    assert len(roots) == 3
    code, _, _ = _run(capsys, "ca", "export-cv", "--ca", ca_dir, "--pem", "--out",
                      str(tmp_path / "r.pem"))  # fmt: skip
    text = (tmp_path / "r.pem").read_text()
    blocks = text.split("-----END PUBLIC KEY-----")[:-1]
    assert code == 0 and len(blocks) == 3 and text.startswith("key id 9000020/001")
    for block, (_id, key) in zip(blocks, roots.items(), strict=True):
        pem = block[block.index("-----BEGIN") :] + "-----END PUBLIC KEY-----\n"
        loaded = serialization.load_pem_public_key(pem.encode())
        assert isinstance(loaded, rsa.RSAPublicKey) and v.same_key(loaded, key)


def test_export_cv_to_a_bad_path_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "ca", "export-cv", "--ca", str(tmp_path / "ca"), "--out",
                          str(tmp_path / "no" / "such" / "file"))  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "existing directory" in err and "Traceback" not in err
