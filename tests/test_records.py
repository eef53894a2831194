"""The JPKI card's records (helper EFs, token info) and the certificate summary."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from card_samples import HANAKO_BASIC_INFO, MY_NUMBER_EF
from jpki_sim.iso7816 import tlv
from jpki_sim.iso7816.tlv import TlvError
from jpki_sim.profiles.jpki import records
from jpki_sim.profiles.jpki import records_cv as rcv
from jpki_sim.profiles.jpki import records_helper as rhelper
from jpki_sim.profiles.jpki import records_surface as rsurface
from jpki_sim.profiles.jpki.certinfo import describe_certificate
from jpki_sim.profiles.jpki.state import Identity
from jpki_sim.testing import strategies as jst

# ---------------------------------------------------------------- helper application EFs


def test_encode_basic_info_matches_the_hand_assembled_file() -> None:
    ef = records.encode_helper_basic_info(
        "番号\u3000花子", "〇〇県△△市□□町１－１－１", date(1993, 3, 31), "2"
    )
    assert ef == HANAKO_BASIC_INFO


def test_decode_basic_info() -> None:
    info = records.decode_helper_basic_info(HANAKO_BASIC_INFO + b"\xff" * 40)
    assert info == {
        "name": "番号\u3000花子",
        "address": "〇〇県△△市□□町１－１－１",
        "birthdate": date(1993, 3, 31),
        "birthdate_text": "19930331",
        "sex": "2",
        "offsets": (0x0E, 0x20, 0x4D, 0x58),
    }


def test_long_address_uses_the_two_byte_length_form() -> None:
    address = "東京都千代田区霞が関" + "一丁目" * 20  # 70 characters, 210 bytes of UTF-8
    ef = records.encode_helper_basic_info("番号\u3000花子", address, "19930331", "2", size=400)
    assert len(ef) == 400 and ef.endswith(b"\xff" * 10)
    root = tlv.parse(ef)[0]
    assert root.raw_length[0] == 0x82
    assert root.find(0xDF23).raw_length == b"\x82\x00\xd2"  # type: ignore[union-attr]
    info = records.decode_helper_basic_info(ef)
    assert info["address"] == address
    assert info["offsets"][0] == 5 + 11  # FF 20 82 hh ll, then DF21


@given(jst.identities())
def test_identities_round_trip_through_ef_0002(person: Identity) -> None:
    ef = records.encode_helper_basic_info(person.name, person.address, person.birthdate, person.sex)
    info = records.decode_helper_basic_info(ef)
    assert (info["name"], info["address"], info["birthdate"], info["sex"]) == (
        person.name,
        person.address,
        person.birthdate,
        person.sex,
    )
    assert tlv.parse(ef)[0].to_bytes() == ef


def test_offset_table_is_checked() -> None:
    bad = bytearray(HANAKO_BASIC_INFO)
    bad[7] = 0x0F  # first offset 000E -> 000F
    with pytest.raises(TlvError, match="offset 0"):
        records.decode_helper_basic_info(bytes(bad))


@pytest.mark.parametrize(
    "ef",
    [
        b"",
        MY_NUMBER_EF,
        bytes.fromhex("FF2003DF2100"),  # no fields
        bytes.fromhex("FF2007DF2103000000DF22"),  # truncated
    ],
)
def test_bad_basic_info_is_refused(ef: bytes) -> None:
    with pytest.raises(TlvError):
        records.decode_helper_basic_info(ef)


def test_impossible_date_is_reported_not_crashed() -> None:
    ef = records.encode_helper_basic_info("a\u3000b", "x", "19800000", "9")
    info = records.decode_helper_basic_info(ef)
    assert info["birthdate"] is None and info["birthdate_text"] == "19800000"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("n", "a", "1993-03-31", "2"), "8 digits"),
        (("n", "a", date(1993, 3, 31), "F"), "ISO 5218"),
    ],
)
def test_basic_info_refuses_bad_facts(args: tuple, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        records.encode_helper_basic_info(*args)


def test_my_number_ef() -> None:
    assert records.encode_helper_my_number("012345678903") == MY_NUMBER_EF
    assert len(MY_NUMBER_EF) == 17
    assert records.decode_helper_my_number(MY_NUMBER_EF) == "012345678903"
    assert records.decode_helper_my_number(MY_NUMBER_EF[:15]) == "012345678903"


@given(jst.my_numbers())
def test_my_numbers_round_trip(number: str) -> None:
    assert records.decode_helper_my_number(records.encode_helper_my_number(number)) == number


@pytest.mark.parametrize(
    "ef",
    [
        b"",
        bytes.fromhex("FF110C") + b"012345678903",
        bytes.fromhex("FF100C") + b"01234567890",
        bytes.fromhex("FF100C") + b"01234567890A",
        MY_NUMBER_EF + b"\x00",
    ],
)
def test_bad_my_number_ef(ef: bytes) -> None:
    with pytest.raises(TlvError):
        records.decode_helper_my_number(ef)


@pytest.mark.parametrize("bad", ["01234567890", "０１２３４５６７８９０３", "0123-4567-8903"])
def test_encode_my_number_refuses_non_digits(bad: str) -> None:
    with pytest.raises(ValueError):
        records.encode_helper_my_number(bad)


# ---------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def sign_like_cert() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for digital signature"),
    ])  # fmt: skip
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.COMMON_NAME, "TEST0123456789ABCDEFGHIJ"),
        ]
    )

    def other(arc: int, text: str) -> x509.OtherName:
        raw = text.encode()
        return x509.OtherName(
            x509.ObjectIdentifier(f"1.2.392.200149.8.5.5.{arc}"), b"\x0c" + bytes((len(raw),)) + raw
        )

    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x0133C349)
        .not_valid_before(datetime(2026, 1, 5, tzinfo=timezone.utc))
        .not_valid_after(datetime(2031, 1, 5, 14, 59, 59, tzinfo=timezone.utc))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    other(1, "番号\u3000花子"),
                    other(3, "2"),
                    other(4, "419930331"),
                    other(5, "〇〇県△△市"),
                ]
            ),
            critical=False,
        )  # fmt: skip
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _ = serialization  # imported for symmetry with the CA code; not needed here
    return cert.public_bytes(serialization.Encoding.DER)


def test_describe_certificate(sign_like_cert: bytes) -> None:
    d = describe_certificate(sign_like_cert)
    assert d["subject"] == "C=JP, CN=TEST0123456789ABCDEFGHIJ"
    assert d["issuer"] == "C=JP, O=JPKI-TEST, OU=JPKI for digital signature"
    assert (d["serial"], d["serial_hex"]) == (0x0133C349, "133C349")
    assert d["not_before"] == datetime(2026, 1, 5, tzinfo=timezone.utc)
    assert d["not_after"] == datetime(2031, 1, 5, 14, 59, 59, tzinfo=timezone.utc)
    assert d["sha256"] == hashlib.sha256(sign_like_cert).hexdigest()
    assert d["key_bits"] == 256 and d["is_ca"] is False
    assert d["key_usage"] == ["digital_signature", "non_repudiation"]
    assert d["jpki_attributes"] == {
        "name": "番号\u3000花子",
        "sex": "2",
        "birthdate": "419930331",
        "address": "〇〇県△△市",
    }


def test_describe_certificate_refuses_garbage(sign_like_cert: bytes) -> None:
    for bad in (b"", b"\x30\x03\x02\x01\x01", sign_like_cert[:100]):
        with pytest.raises(ValueError, match="not a DER X.509 certificate"):
            describe_certificate(bad)



@given(st.binary(max_size=120), st.integers(0, len(HANAKO_BASIC_INFO) - 1), st.integers(0, 255))
def test_helper_decoders_fail_cleanly(noise: bytes, pos: int, byte: int) -> None:
    mutated = bytearray(HANAKO_BASIC_INFO)
    mutated[pos] = byte
    for ef in (noise, bytes(mutated)):
        for decode in (records.decode_helper_basic_info, records.decode_helper_my_number):
            try:
                decode(ef)
            except TlvError:
                pass


# ---------------------------------------------------------------- vectors beside the codecs

#: every codec's vectors, kept beside it in the package
CODEC_VECTORS = sorted(Path(records.__file__).resolve().parents[2].rglob("*.vectors.json"))


def _bytes(text: str) -> bytes:
    """Hex in parts separated by spaces; a part ``HH*N`` is the byte HH N times."""
    out = b""
    for part in text.split():
        byte, _, count = part.partition("*")
        out += bytes.fromhex(byte) * int(count) if count else bytes.fromhex(byte)
    return out


def _key(f: dict[str, Any]) -> rcv.RsaPublicKey:
    return rcv.RsaPublicKey(f["exponent"], int.from_bytes(_bytes(f["modulus"]), "big"))


def _key_fields(key: rcv.RsaPublicKey) -> dict[str, Any]:
    return {"exponent": key.exponent, "modulus": key.modulus.to_bytes(256, "big")}


def _id(text: str) -> bytes:
    number, group = text.split("/")
    return rcv.key_id(number, group)


def _cv_fields(d: rcv.CvCertificate) -> dict[str, Any]:
    return {"issuer": rcv.key_id_text(d["issuer_key_id"]),
            "subject": rcv.key_id_text(d["subject_key_id"]),
            **_key_fields(d["public_key"]), "signature": d["signature"]}  # fmt: skip


def _face(f: dict[str, Any]) -> bytes:
    b = {k: _bytes(f[k]) for k in ("name_png", "address_png", "photo", "signature",
                                   "security_code_png")}  # fmt: skip
    return rsurface.encode_card_face(f["birthdate"], f["sex"], _key(f), b["name_png"],
                                     b["address_png"], b["photo"], b["signature"], f["expiry"],
                                     b["security_code_png"])  # fmt: skip


def _face_fields(d: rsurface.CardFace) -> dict[str, Any]:
    return {"birthdate": d["birthdate_text"], "sex": d["sex"], **_key_fields(d["public_key"]),
            "name_png": d["name_png"], "address_png": d["address_png"], "photo": d["photo"],
            "signature": d["signature"], "expiry": d["expiry_text"],
            "security_code_png": d["security_code_png"]}  # fmt: skip


#: codec name: (encode fields, decode to fields, the fields that are bytes in the notation)
_CODECS: dict[str, tuple[Any, Any, tuple[str, ...]]] = {
    "helper_my_number": (lambda f: records.encode_helper_my_number(f["number"]),
                         lambda b: {"number": records.decode_helper_my_number(b)}, ()),
    "helper_basic_info": (
        lambda f: records.encode_helper_basic_info(f["name"], f["address"], f["birthdate"],
                                                   f["sex"]),
        lambda b: {k: v for k, v in records.decode_helper_basic_info(b).items()
                   if k in ("name", "address", "sex")}
        | {"birthdate": records.decode_helper_basic_info(b)["birthdate_text"]}, ()),
    "token_info": (lambda f: records.encode_token_info(f["label"], f["serial"]),
                   lambda b: {k: records.decode_token_info(b)[k] for k in ("label", "serial")},
                   ()),
    # ---- records_cv
    "rsa_public_key": (lambda f: rcv.encode_rsa_public_key(_key(f)),
                       lambda b: _key_fields(rcv.decode_rsa_public_key(b)), ("modulus",)),
    "key_id": (lambda f: _id(f["text"]), lambda b: {"text": rcv.key_id_text(b)}, ()),
    "cv_certificate": (
        lambda f: rcv.encode_cv_certificate(_id(f["issuer"]), _id(f["subject"]), _key(f),
                                            _bytes(f["signature"])),
        lambda b: _cv_fields(rcv.decode_cv_certificate(b)), ("modulus", "signature")),
    "cv_contents": (
        lambda f: rcv.cv_contents(rcv.encode_cv_certificate(
            _id(f["issuer"]), _id(f["subject"]), _key(f), _bytes(f["signature"]))),
        lambda b: _cv_fields(rcv.decode_cv_certificate(b)), ("modulus", "signature")),
    # ---- records_helper
    "helper_integrity": (
        lambda f: rhelper.encode_helper_integrity(_bytes(f["my_number_digest"]),
                                                  _bytes(f["basic_info_digest"]),
                                                  _bytes(f["signature"])),
        lambda b: {k: v for k, v in rhelper.decode_helper_integrity(b).items() if k != "signed"},
        ("my_number_digest", "basic_info_digest", "signature")),
    "helper_ap_info": (
        lambda f: rhelper.encode_helper_ap_info(_id(f["key_id"]), _bytes(f["opaque"])),
        lambda b: {"key_id": rcv.key_id_text(rhelper.decode_helper_ap_info(b)["key_id"]),
                   "opaque": rhelper.decode_helper_ap_info(b)["trailing"].rstrip(b"\xff")},
        ("opaque",)),
    "helper_session_key": (lambda f: rhelper.encode_helper_session_key(_key(f)),
                           lambda b: _key_fields(rhelper.decode_helper_session_key(b)),
                           ("modulus",)),
    "helper_signed_key": (
        lambda f: rhelper.encode_helper_signed_key(_key(f), _bytes(f["signature"])),
        lambda b: _key_fields(rhelper.decode_helper_signed_key(b)["public_key"])
        | {"signature": rhelper.decode_helper_signed_key(b)["signature"]},
        ("modulus", "signature")),
    # ---- records_surface
    "surface_age_record": (
        lambda f: rsurface.encode_age_record(f["birthdate"], _key(f), _bytes(f["signature"])),
        lambda b: {"birthdate": rsurface.decode_age_record(b)["birthdate_text"],
                   **_key_fields(rsurface.decode_age_record(b)["public_key"]),
                   "signature": rsurface.decode_age_record(b)["signature"]},
        ("modulus", "signature")),
    "surface_card_face": (_face, lambda b: _face_fields(rsurface.decode_card_face(b)),
                          ("modulus", "name_png", "address_png", "photo", "signature",
                           "security_code_png")),
    "surface_basic_info": (
        lambda f: rsurface.encode_surface_basic_info(
            _id(f["key_id"]), f["municipality"], _id(f["reference_key_id"]), _bytes(f["opaque"])),
        lambda b: (lambda d: {"key_id": rcv.key_id_text(d["key_id"]),
                              "municipality": d["municipality_code"],
                              "reference_key_id": rcv.key_id_text(d["reference_key_id"]),
                              "opaque": d["opaque"]})(rsurface.decode_surface_basic_info(b)),
        ("opaque",)),
    "surface_my_number_image": (
        lambda f: rsurface.encode_my_number_image(_bytes(f["image_png"]), _key(f),
                                                  _bytes(f["signature"])),
        lambda b: (lambda d: {"image_png": d["image_png"], **_key_fields(d["public_key"]),
                              "signature": d["signature"]})(rsurface.decode_my_number_image(b)),
        ("image_png", "modulus", "signature")),
}  # fmt: skip


def _codec_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for path in CODEC_VECTORS:
        for v in json.loads(path.read_text(encoding="utf-8"))["vectors"]:
            cases.append((f"{path.name}:{v['codec']}:{v['name'][:30]}", v))
    return cases


def test_the_vectors_beside_the_codecs_are_found() -> None:
    assert {v["codec"] for _id, v in _codec_cases()} == set(_CODECS)


@pytest.mark.parametrize("case", [c for _i, c in _codec_cases()],
                         ids=[i for i, _c in _codec_cases()])
def test_codec_vector_builds_and_parses(case: dict[str, Any]) -> None:
    encode, decode, byte_fields = _CODECS[case["codec"]]
    want = _bytes(case["hex"])
    assert encode(case["fields"]) == want
    expected = {k: _bytes(v) if k in byte_fields else v for k, v in case["fields"].items()}
    assert decode(want) == expected
