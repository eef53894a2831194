"""The 券面 applications in-process: access for every credential, counters, signatures, lifecycle.

The expectations are the sources' (MC ``ap/text.rs``, ``ap/surface.rs``,
``tests/fixtures/README.md``; docs/protocol.md): which credential opens which
EF, 63Cx for a wrong 照合番号, blocked at 0, ``card reset-pin`` restoring it,
every record verifying against the test CV root, and, whatever the counter
does to a card, every record still verifying (hypothesis). The card is read by
the tests' own reader (:mod:`kenmen_reader`), which shares no code with the
emulator.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki_sim.card.store import CardStore
from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.cv import CvCA
from jpki_sim.issuer.lifecycle import FixedClock
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import CardState, load, new_store, save
from jpki_sim.testing import strategies as jst
from kenmen_reader import Credentials, ReadError, ThoroughReader, image_facts, load_roots

ISSUED = date(2025, 4, 1)
HELPER, SURFACE = jpki.HELPER_AID.hex(), jpki.SURFACE_AID.hex()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def keys() -> issuer.KeyPool:
    return issuer.KeyPool.generate(9)


@pytest.fixture(scope="module")
def roots(ca: TestCA) -> dict[bytes, Any]:
    return load_roots(CvCA.open(ca.directory).root_certificates())


@pytest.fixture(scope="module")
def issued(ca: TestCA, keys: issuer.KeyPool) -> CardState:
    return issuer.issue_card(issuer.default_identity(), ISSUED, ca=ca, keys=keys)


@pytest.fixture
def store(issued: CardState, tmp_path: Path) -> CardStore:
    path = tmp_path / "card.json"
    save(copy.deepcopy(issued), path)
    from jpki_sim.profiles.jpki.state import open_store

    return open_store(path)


def powered(store: CardStore) -> Any:
    card = build_card(store)
    card.power_on()
    return card


def tx(card: Any, hexstr: str) -> tuple[bytes, int]:
    r = card.process(bytes.fromhex(hexstr))
    return r[:-2], r[-2] << 8 | r[-1]


#: the default holder was born on 1993-03-31, 平成5年3月31日: era YYMMDD 050331
BIRTH_CODE = "050331"


def heisei(born: date) -> str:
    """Era YYMMDD of a birth date in 平成 (1989-01-08 to 2019-04-30): year 1 is 1989."""
    assert date(1989, 1, 8) <= born <= date(2019, 4, 30)
    return f"{born.year - 1988:02d}{born.month:02d}{born.day:02d}"


def credentials(state: CardState, **kw: Any) -> Credentials:
    """What the holder reads off the card's face (a holder born in 平成)."""
    ident = state.identity
    born = heisei(ident.birthdate)
    return Credentials(
        helper_pin=state.pins["helper"].value,
        code_a=ident.my_number,
        code_b=f"{born}{state.expires.year}{state.security_code}",
        birthdate=born,
        **kw,
    )


def read_card(store: CardStore, roots: dict[bytes, Any], **kw: Any) -> Any:
    card = powered(store)
    return ThoroughReader(card.process, roots).read_everything(credentials(store.state, **kw))


# ---------------------------------------------------------------- reading everything


@pytest.mark.parametrize("helper_with,surface_with", [("pin", "a"), ("a", "b"), ("b", "a")])
def test_the_tests_reader_reads_everything_and_every_signature_verifies(
    store: CardStore, roots: dict[bytes, Any], helper_with: str, surface_with: str
) -> None:
    reading = read_card(store, roots, helper_with=helper_with, surface_with=surface_with)
    st_ = store.state
    ident = st_.identity
    assert reading.data["serial"] == st_.info.serial == reading.data["card_number"]
    assert reading.data["face_birthdate"] == reading.data["age_birthdate"] == "19930331"
    assert reading.data["face_expiry"] == f"{st_.expires:%Y%m%d}"
    assert reading.data["token"] == "JPKIAPICCTOKEN2"
    if helper_with in ("pin", "a"):
        assert reading.data["my_number"] == ident.my_number
    if helper_with in ("pin", "b"):
        assert (reading.data["name"], reading.data["address"]) == (ident.name, ident.address)
    expected = {"name": ("PNG", "1"), "address": ("PNG", "1"), "photo": ("JPEG2000", "L"),
                "security-code": ("PNG", "1"), "my-number": ("PNG", "1")}
    for name, data in reading.images.items():
        fmt, mode, size = image_facts(data)
        assert (fmt, mode) == expected[name], name
        if name == "photo":
            assert size == (140, 180) and len(data) <= 4000
        elif name == "security-code":
            assert size == (24, 12)
        elif name == "my-number":
            assert size == (72, 12)
        else:
            assert size[1] % 24 == 0 and size[0] % 12 == 0
    assert ("my-number" in reading.images) == (surface_with == "a")
    assert any("EF 0003 DF31" in c for c in reading.checks) == (helper_with in ("pin", "a"))
    assert any("EF 0003 DF32" in c for c in reading.checks) == (helper_with in ("pin", "b"))


def test_a_record_tampered_with_fails_the_readers_check(
    store: CardStore, roots: dict[bytes, Any]
) -> None:
    kenmen = store.state.kenmen
    assert kenmen is not None
    face = bytearray(kenmen.efs["surface"][jpki.EF_SURFACE_FACE])
    at = face.index(b"\xdf\x22") + 3
    face[at] ^= 0x01  # one digit of the birth date
    kenmen.efs["surface"][jpki.EF_SURFACE_FACE] = bytes(face)
    with pytest.raises(ReadError, match="card face"):
        read_card(store, roots)


def test_roots_of_another_ca_do_not_verify(store: CardStore, tmp_path: Path) -> None:
    other = load_roots(CvCA.open(TestCA.open(tmp_path / "other").directory).root_certificates())
    with pytest.raises(ReadError, match="MF F8"):
        read_card(store, other)


def test_the_mf_chain_certifies_the_cards_own_key(issued: CardState,
                                                   roots: dict[bytes, Any]) -> None:
    from jpki_sim.issuer.kenmen import MF_KEY_ID, public_key
    from jpki_sim.profiles.jpki import chipdata
    from jpki_sim.profiles.jpki.cv_verify import load_roots as project_roots
    from jpki_sim.profiles.jpki.cv_verify import parse_cv, verify_cv_chain

    kenmen = issued.kenmen
    assert kenmen is not None
    chain = [issued.info.cv_certificates[t] for t in chipdata.CV_TAGS]
    trusted = project_roots(_exported(issued))
    key = verify_cv_chain(chain, trusted)
    assert key.public_numbers() == public_key(kenmen.keys["mf"]).public_numbers()
    assert parse_cv(chain[1]).subject_key_id == MF_KEY_ID == kenmen.mf_key_id
    assert roots  # the tests' reader checks the same chain against the same roots


def _exported(state: CardState) -> bytes:
    assert state.ca_dir is not None
    return CvCA.open(state.ca_dir).root_certificates()


# ---------------------------------------------------------------- access, EF by EF

#: what each credential opens (sources: MC ap/text.rs, ap/surface.rs, fixtures README)
HELPER_ACCESS = {
    0x0001: {"helper", "helper-a"},
    0x0002: {"helper", "helper-b"},
    0x0003: {"helper", "helper-a", "helper-b"},
    0x0004: None,  # free
    0x0005: None,
    0x0006: {"helper", "helper-a", "helper-b"},
    0x0007: {"helper", "helper-a", "helper-b"},
    0x0008: None,
}
SURFACE_ACCESS = {
    0x0001: {"birthdate"},
    0x0002: {"surface-a", "surface-b"},
    0x0003: None,
    0x0004: None,
    0x0005: {"surface-a"},
    0x0006: {"surface-a", "surface-b"},
}


@pytest.mark.parametrize("app,credential", [
    ("helper", None), ("helper", "helper"), ("helper", "helper-a"), ("helper", "helper-b"),
    ("surface", None), ("surface", "birthdate"), ("surface", "surface-a"),
    ("surface", "surface-b"),
])
def test_every_ef_opens_to_its_credentials_only(store: CardStore, app: str,
                                                credential: str | None) -> None:
    card = powered(store)
    aid = HELPER if app == "helper" else SURFACE
    assert tx(card, "00A4040C0A" + aid)[1] == 0x9000
    if credential is not None:
        value = store.state.pins[credential].value
        assert value is not None
        fid = jpki.VERIFY_EFS[credential][1]
        tx(card, f"00A4020C02{fid:04X}")
        assert tx(card, f"00200080{len(value):02X}{value.encode().hex()}")[1] == 0x9000
    for fid, opens in (HELPER_ACCESS if app == "helper" else SURFACE_ACCESS).items():
        tx(card, f"00A4020C02{fid:04X}")
        data, sw = tx(card, "00B0000000")
        if opens is None or credential in opens:
            assert sw == 0x9000 and data, (app, fid, credential)
        else:
            assert (data, sw) == (b"", 0x6982), (app, fid, credential)
        # the short-EF form asks the same
        assert tx(card, f"00B0{0x80 | fid:02X}0001")[1] == sw


def test_the_sizes_and_headers_of_the_efs(store: CardStore) -> None:
    """The layouts the sources read off a J-LIS test card: tags and fixed sizes."""
    kenmen = store.state.kenmen
    assert kenmen is not None
    helper, surface = kenmen.efs["helper"], kenmen.efs["surface"]
    assert helper[0x0003][:5] == bytes.fromhex("FF3082014B") and len(helper[0x0003]) == 336
    assert helper[0x0004][:5] == bytes.fromhex("7F21820233") and len(helper[0x0004]) == 568
    assert helper[0x0005][:5] == bytes.fromhex("FF4082009F") and len(helper[0x0005]) == 164
    assert helper[0x0006][:4] == bytes.fromhex("A1820109") and len(helper[0x0006]) == 269
    assert helper[0x0007][:5] == bytes.fromhex("FF50820213") and len(helper[0x0007]) == 536
    assert surface[0x0001][:5] == bytes.fromhex("FF1082021E") and len(surface[0x0001]) == 547
    assert surface[0x0002][:2] == b"\xff\x20" and surface[0x0002][5:8] == b"\xdf\x21\x12"
    assert surface[0x0003][:5] == bytes.fromhex("FF3082013B") and len(surface[0x0003]) == 320
    assert surface[0x0004][:5] == bytes.fromhex("7F21820233")
    assert surface[0x0005][:2] == b"\xff\x40"
    card = powered(store)
    tx(card, "00A4040C0A" + HELPER)
    tx(card, "00A4020C020008")
    assert tx(card, "00B0000000") == (b"\xff" * 16, 0x9000)


# ---------------------------------------------------------------- counters


@pytest.mark.parametrize("key", list(jpki.CODE_EFS))
def test_a_wrong_code_costs_a_try_blocks_at_zero_and_reset_restores_it(
    store: CardStore, key: str
) -> None:
    aid, fid = jpki.CODE_EFS[key]
    right = store.state.pins[key].value
    assert right is not None
    wrong = "".join(str((int(c) + 1) % 10) for c in right)
    card = powered(store)
    tx(card, "00A4040C0A" + aid.hex())
    tx(card, f"00A4020C02{fid:04X}")
    assert tx(card, "00200080")[1] == 0x63C3
    apdu = f"00200080{len(wrong):02X}{wrong.encode().hex()}"
    assert [tx(card, apdu)[1] for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    assert tx(card, apdu)[1] == 0x6984  # blocked: no try spent
    assert tx(card, f"00200080{len(right):02X}{right.encode().hex()}")[1] == 0x6984
    assert tx(card, "00200080")[1] == 0x63C0
    assert load(store.path).pins[key].tries_left == 0  # type: ignore[arg-type]
    # the counter resets the code (the value stays: it is what the card face shows)
    code = next(c for c, keys_ in jpki.CODES.items() if key in keys_)
    with pytest.raises(Exception, match="takes no new value"):
        issuer.reset_pin(store, code, "1234")
    issuer.reset_pin(store, code, None)
    assert all(store.state.pins[k].tries_left == 3 for k in jpki.CODES[code])
    card = powered(store)
    tx(card, "00A4040C0A" + aid.hex())
    tx(card, f"00A4020C02{fid:04X}")
    assert tx(card, "00200080")[1] == 0x63C3
    assert tx(card, f"00200080{len(right):02X}{right.encode().hex()}")[1] == 0x9000


def test_the_codes_of_one_face_count_apart(store: CardStore) -> None:
    """照合番号A is two keys (helper 0014, surface 0013); each counts its own tries."""
    card = powered(store)
    tx(card, "00A4040C0A" + HELPER)
    tx(card, "00A4020C020014")
    assert tx(card, "002000800C" + b"999999999999".hex())[1] == 0x63C2
    tx(card, "00A4040C0A" + SURFACE)
    tx(card, "00A4020C020013")
    assert tx(card, "00200080")[1] == 0x63C3


def test_a_code_takes_no_new_value(store: CardStore) -> None:
    card = powered(store)
    value = store.state.pins["surface-b"].value
    assert value is not None
    tx(card, "00A4040C0A" + SURFACE)
    tx(card, "00A4020C020012")
    assert tx(card, f"00200080{len(value):02X}{value.encode().hex()}")[1] == 0x9000
    assert tx(card, "002401800E" + b"00000000000000".hex())[1] == 0x6A80
    assert store.state.pins["surface-b"].value == value


def test_helper_key_0012_is_issued_blocked(store: CardStore) -> None:
    card = powered(store)
    tx(card, "00A4040C0A" + HELPER)
    tx(card, "00A4020C020012")
    assert tx(card, "00200080")[1] == 0x63C0
    assert tx(card, "0020008004" + b"1234".hex())[1] == 0x6984
    assert tx(card, "00200092")[1] == 0x63C0  # by its short EF identifier too


# ---------------------------------------------------------------- the applications' own signature


@pytest.mark.parametrize("app,key_tag", [("helper", 0xDF51), ("surface", 0xDF24)])
def test_80_2A_00_00_signs_with_the_applications_key_and_no_pin(
    store: CardStore, app: str, key_tag: int
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from kenmen_reader import ber_objects, field_of, only, rsa_from

    kenmen = store.state.kenmen
    assert kenmen is not None
    record = kenmen.efs["helper"][0x0007] if app == "helper" else kenmen.efs["surface"][0x0002]
    key = rsa_from(field_of(ber_objects(only(record, record[0] << 8 | record[1]).value),
                            key_tag).value)
    card = powered(store)
    tx(card, "00A4040C0A" + (HELPER if app == "helper" else SURFACE))
    challenge, sw = tx(card, "0084000010")
    assert sw == 0x9000 and len(challenge) == 16
    info = bytes.fromhex("3031300D060960864801650304020105000420") + hashlib.sha256(
        challenge).digest()
    signature, sw = tx(card, f"802A000033{info.hex()}00")
    assert sw == 0x9000 and len(signature) == 256
    key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    # the key takes no INTERNAL AUTHENTICATE (MC: 6985 for the 券面 signing keys)
    fid = jpki.DEFAULT_SIGNING_KEYS[bytes.fromhex(HELPER if app == "helper" else SURFACE)]
    assert tx(card, f"008800{0x80 | fid:02X}08{'11' * 8}00")[1] == 0x6985


def test_80_2A_00_00_elsewhere_names_no_key(store: CardStore) -> None:
    card = powered(store)
    info = bytes.fromhex("3031300D060960864801650304020105000420") + bytes(32)
    assert tx(card, f"802A000033{info.hex()}00")[1] == 0x6A86  # the MF level
    tx(card, "00A4040C0A" + jpki.JPKI_AID.hex())
    assert tx(card, f"802A000033{info.hex()}00")[1] == 0x6A86


# ---------------------------------------------------------------- what the counter does


def test_a_change_of_address_rerenders_and_resigns(store: CardStore, roots: dict[bytes, Any],
                                                   ca: TestCA) -> None:
    before = read_card(store, roots)
    old = store.state.kenmen
    assert old is not None
    old_efs = {app: dict(efs) for app, efs in old.efs.items()}
    issuer.change_address(store, "東京都千代田区霞が関２丁目１番２号", ca=ca,
                          clock=FixedClock(date(2026, 4, 1)))
    after = read_card(store, roots)
    assert after.images["address"] != before.images["address"]
    assert after.images["name"] == before.images["name"]
    assert after.data["address"] == "東京都千代田区霞が関２丁目１番２号"
    assert any("EF 0003 DF32" in c for c in after.checks)
    new = load(store.path).kenmen  # type: ignore[arg-type]
    assert new is not None
    # every signed record was signed again; the certificates and the keys stayed
    for app, fid in (("helper", 3), ("surface", 2)):
        assert new.efs[app][fid] != old_efs[app][fid]
    for app, fid in (("helper", 4), ("surface", 4), ("helper", 5), ("surface", 3)):
        assert new.efs[app][fid] == old_efs[app][fid]
    assert new.keys == old.keys and new.photo == old.photo


def test_a_new_card_has_a_new_expiry_code_b_and_security_code(
    store: CardStore, roots: dict[bytes, Any], ca: TestCA, keys: issuer.KeyPool
) -> None:
    old_b = store.state.pins["surface-b"].value
    old_code = store.state.security_code
    old_photo = store.state.kenmen.photo  # type: ignore[union-attr]
    issuer.renew_card(store, ca=ca, clock=FixedClock(date(2035, 1, 15)), keys=keys)
    st_ = store.state
    assert st_.expires == date(2045, 3, 31)  # renewed inside the window: the 11th birthday
    assert st_.pins["surface-b"].value == f"{BIRTH_CODE}2045{st_.security_code}" != old_b
    assert st_.kenmen is not None and st_.kenmen.photo == old_photo  # the holder's photo stays
    reading = read_card(store, roots)
    assert reading.data["face_expiry"] == f"{st_.expires:%Y%m%d}"
    card = powered(store)
    tx(card, "00A4040C0A" + SURFACE)
    tx(card, "00A4020C020012")
    assert old_b is not None
    sw = tx(card, f"00200080{len(old_b):02X}{old_b.encode().hex()}")[1]
    assert sw == 0x63C2  # the old card's 照合番号B is a wrong one now
    assert old_code is not None  # (the security code is redrawn: it may repeat by chance)


def test_a_card_file_from_before_the_kenmen_applications_still_works() -> None:
    from jpki_sim.profiles.jpki.state import open_store

    old = Path(__file__).parent / "shell_scripts" / "card.json"
    store = new_store(open_store(old).state)
    assert store.state.kenmen is None
    card = powered(store)
    assert tx(card, "00A4040C0A" + SURFACE)[1] == 0x6A82
    tx(card, "00A4040C0A" + HELPER)
    tx(card, "00A4020C020011")
    assert tx(card, "0020008004" + b"1234".hex())[1] == 0x9000
    tx(card, "00A4020C020001")
    assert tx(card, "00B0000000")[1] == 0x9000
    assert tx(card, "00A4020C020003")[1] == 0x6A82
    assert tx(card, "00A4020C020014")[1] == 0x6A82
    assert issuer.status(store.state, ISSUED)["chip"]["kenmen"] is False


# ---------------------------------------------------------------- any life the card may have

OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("address"), jst.addresses()),
    st.tuples(st.just("name"), jst.names()),
    st.tuples(st.just("renew-card"), st.integers(0, 3)),
    st.tuples(st.just("renew"), st.integers(0, 3)),
    st.tuples(st.just("reset"), st.sampled_from(list(jpki.CODES))),
    st.tuples(st.just("sex"), st.sampled_from(["1", "2", "9", "0"])),
    st.tuples(st.just("birthdate"), st.dates(date(1989, 2, 1), date(1999, 12, 31))),
    st.tuples(st.just("wrong-code"), st.sampled_from(list(jpki.CODE_EFS))),
), min_size=1, max_size=5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_any_lifecycle_keeps_every_record_verifying(
    issued: CardState, ca: TestCA, keys: issuer.KeyPool, roots: dict[bytes, Any],
    operations: list[tuple[str, Any]]
) -> None:
    store = new_store(copy.deepcopy(issued))
    day = date(2026, 4, 1)
    for op, arg in operations:
        clock = FixedClock(day)
        if op == "address":
            issuer.change_address(store, arg, ca=ca, clock=clock)
        elif op == "name":
            issuer.change_name(store, arg, ca=ca, clock=clock)
        elif op == "renew-card":
            day = date(store.state.expires.year, 1, 1 + arg)  # the card's renewal window
            issuer.renew_card(store, ca=ca, clock=FixedClock(day), keys=keys)
        elif op == "renew":
            try:
                issuer.renew(store, pins={"auth": "1234", "sign": "ABC123"}, ca=ca,
                             clock=clock, keys=keys)
            except Exception as exc:  # nothing due today: the counter refuses, nothing changes
                assert "renewal opens" in str(exc) or "already run" in str(exc), exc
        elif op == "reset":
            issuer.reset_pin(store, arg, None)
        elif op == "sex":
            issuer.change_sex(store, arg, ca=ca, clock=clock)
        elif op == "birthdate":
            issuer.change_birthdate(store, arg, ca=ca, clock=clock)
        else:
            issuer.pin_counter(store, arg).verify(b"0" * len(store.state.pins[arg].value or ""))
            if store.state.pins[arg].tries_left == 0:
                issuer.reset_pin(store, next(c for c, k in jpki.CODES.items() if arg in k), None)
        reading = read_card(store, roots)
        ident = store.state.identity
        assert (reading.data["name"], reading.data["address"]) == (ident.name, ident.address)
        assert reading.data["face_expiry"] == f"{store.state.expires:%Y%m%d}"
        born = f"{ident.birthdate:%Y%m%d}"
        assert reading.data["face_birthdate"] == reading.data["age_birthdate"] == born
        assert (reading.data["birthdate"], reading.data["face_sex"]) == (born, ident.sex)
