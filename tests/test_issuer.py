"""The municipal counter: issue, status, renew, re-issue, reset PIN, change of address."""

from __future__ import annotations

import copy
import hashlib
import shutil
import stat
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jpki_sim.card.store import CardStore
from jpki_sim.errors import UserError
from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer import default, lifecycle
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.certprofile import read_holder_facts
from jpki_sim.issuer.lifecycle import FixedClock
from jpki_sim.profiles.jpki.state import CardState, Identity, load, new_store, open_store, save

ISSUED = date(2020, 8, 27)
PINS = {"auth": "1234", "sign": "ABC123", "helper": "1234"}


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(tmp_path_factory.mktemp("issuer-ca"))


@pytest.fixture(scope="module")
def keys() -> issuer.KeyPool:
    return issuer.KeyPool.generate(8)


@pytest.fixture(scope="module")
def hanako(test_ca: TestCA, keys: issuer.KeyPool) -> CardState:
    """番号　花子's card issued 2020-08-27 (copy before changing)."""
    return issuer.issue_card(issuer.default_identity(), ISSUED, ca=test_ca, keys=keys)


@pytest.fixture()
def store(test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path) -> CardStore:
    """A card of its own per test (its serials are revoked by some tests), saved to a file.

    The pool cycles through 8 keys, so the up to 6 keys one test draws are all distinct.
    """
    state = issuer.issue_card(issuer.default_identity(), ISSUED, ca=test_ca, keys=keys)
    path = tmp_path / "card.json"
    save(state, path)
    return open_store(path)


def cert_of(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def public_numbers(key_pem: str) -> rsa.RSAPublicNumbers:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.public_key().public_numbers()


def ocsp_status(ca: TestCA, cert_der: bytes, which: str, at: datetime) -> ocsp.OCSPCertStatus:
    root = ca.auth.cert if which == "auth" else ca.sign.cert
    req = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert_of(cert_der), root, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    return ocsp.load_der_ocsp_response(ca.ocsp_response(req, at=at)).certificate_status


# ---------------------------------------------------------------- issue


def test_default_identity_is_the_seeds_holder_with_a_valid_my_number() -> None:
    ident = issuer.default_identity()
    assert (ident.name, ident.birthdate, ident.sex) == ("番号　花子", date(1993, 3, 31), "2")
    assert ident.my_number == "012345678903"
    assert any(c in ident.address for c in "０１２３４５６７８９")  # full-width digits
    # the seeds' sample number fails its check digit
    with pytest.raises(UserError, match="check digit"):
        issuer.check_identity(Identity("x", date(1990, 1, 1), "1", "y", "012345678901"))


def test_issued_card_carries_the_lifecycle_dates(hanako: CardState, test_ca: TestCA) -> None:
    assert hanako.issued == ISSUED
    assert hanako.expires == date(2030, 3, 31)
    for which in ("auth", "sign"):
        slot = hanako.slot(which)
        assert slot is not None
        assert (slot.not_before, slot.expires) == (ISSUED, date(2025, 3, 31))
        cert = cert_of(slot.cert_der)
        assert cert.serial_number == slot.serial
        assert cert.not_valid_after_utc == datetime(2025, 3, 31, 14, 59, 59, tzinfo=timezone.utc)
        assert cert.public_key().public_numbers() == public_numbers(slot.key_pem)  # type: ignore[union-attr]
    assert hanako.auth_ca_der == test_ca.auth.cert_der
    assert hanako.sign_ca_der == test_ca.sign.cert_der
    assert hanako.ca_dir == str(test_ca.directory)
    assert len(hanako.application_id) == 23 and hanako.application_id.isdigit()
    assert hanako.application_id.startswith("01203" + "20200827")
    assert len(hanako.security_code) == 4 and hanako.security_code.isdigit()
    # the 照合番号 keys hold what the card face shows: born 平成5年3月31日, expiring 2030
    code_b = "0503312030" + hanako.security_code
    assert {n: p.value for n, p in hanako.pins.items()} == {
        **PINS, "juki": "1234", "common": "1234", "helper-a": "012345678903",
        "surface-a": "012345678903", "birthdate": "050331", "helper-b": code_b,
        "surface-b": code_b}
    assert hanako.pins["sign"].tries_left == 5 and hanako.pins["auth"].tries_left == 3
    assert hanako.auth is not None and hanako.sign is not None
    assert hanako.auth.key_pem != hanako.sign.key_pem
    facts = read_holder_facts(cert_of(hanako.sign.cert_der))
    assert facts["1.2.392.200149.8.5.5.5"] == hanako.identity.address


def test_card_round_trips_through_its_file(hanako: CardState, tmp_path: Path) -> None:
    save(hanako, tmp_path / "c.json")
    again = load(tmp_path / "c.json")
    assert again.to_json() == hanako.to_json()
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600


def test_card_without_sign_certificate_never_sets_its_pin(
    test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    state = issuer.issue_card(
        issuer.default_identity(), ISSUED, with_sign=False, ca=test_ca, keys=keys
    )
    assert state.sign is None and state.pins["sign"].value is None
    assert state.pins["auth"].value == "1234"
    doc = issuer.status(state, date(2021, 1, 1))
    assert doc["certificates"]["sign"]["expires"] is None
    assert doc["certificates"]["sign"]["present"] is False
    assert doc["pins"]["sign"]["set"] is False
    none = issuer.issue_card(
        issuer.default_identity(), ISSUED, with_sign=False, with_auth=False, ca=test_ca, keys=keys
    )
    assert none.auth is None and none.pins["auth"].value is None
    assert issuer.status(none, date(2021, 1, 1))["health_insurance"]["state"] == "void"
    assert issuer.status(none, date(2021, 1, 1))["renewal"]["for"] == "card"


def test_minors_get_a_5_year_card_and_no_sign_certificate_under_15(
    test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    child = Identity("番号　太郎", date(2012, 4, 23), "1", issuer.DEFAULT_ADDRESS, "123456789018")
    state = issuer.issue_card(child, date(2020, 6, 1), ca=test_ca, keys=keys)
    assert state.expires == date(2025, 4, 23)
    assert state.sign is None and state.auth is not None
    assert state.auth.expires == state.expires
    teen = Identity("番号 次郎", date(2004, 4, 23), "1", issuer.DEFAULT_ADDRESS, "123456789018")
    state = issuer.issue_card(teen, date(2020, 6, 1), ca=test_ca, keys=keys)
    assert state.sign is not None  # 16 years old
    assert state.expires == date(2025, 4, 23)


def test_foreign_resident_card_ends_with_the_period_of_stay(
    test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    ident = issuer.default_identity()
    ident.stay_until = date(2023, 9, 30)
    state = issuer.issue_card(ident, ISSUED, ca=test_ca, keys=keys)
    assert state.expires == date(2023, 9, 30)
    assert state.auth is not None and state.auth.expires == date(2023, 9, 30)
    ident = issuer.default_identity()
    ident.stay_until = date(2020, 8, 1)
    with pytest.raises(UserError, match="period of stay"):
        issuer.issue_card(ident, ISSUED, ca=test_ca, keys=keys)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"my_number": "012345678901"}, "check digit"),
        ({"my_number": "12345"}, "12 digits"),
        ({"sex": "5"}, "sex"),
        ({"name": " "}, "name"),
        ({"birthdate": date(2021, 1, 1)}, "before the birth date"),
        ({"birthdate": date(1950, 1, 1), "issued": date(1999, 12, 31)}, "roots cover"),
        ({"issued": date(2090, 1, 1)}, "roots cover"),
    ],
)
def test_bad_identities_are_refused(
    test_ca: TestCA, keys: issuer.KeyPool, change: dict[str, object], message: str
) -> None:
    ident = issuer.default_identity()
    issued = change.pop("issued", ISSUED)
    assert isinstance(issued, date)
    for k, v in change.items():
        setattr(ident, k, v)
    with pytest.raises(UserError, match=message):
        issuer.issue_card(ident, issued, ca=test_ca, keys=keys)


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ({"auth": "12345"}, "4 digits"),
        ({"auth": "12a4"}, "4 digits"),
        ({"sign": "abc123"}, "uppercase"),
        ({"sign": "ABC12"}, "6 to 16"),
        ({"helper": ""}, "4 digits"),
    ],
)
def test_pins_of_the_wrong_form_are_refused(
    test_ca: TestCA, keys: issuer.KeyPool, pins: dict[str, str], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        issuer.issue_card(issuer.default_identity(), ISSUED, pins=pins, ca=test_ca, keys=keys)


# ---------------------------------------------------------------- status


def test_status_at_several_dates_follows_the_rules(hanako: CardState) -> None:
    at_issue = issuer.status(hanako, ISSUED)
    assert at_issue["card"]["expires"] == "2030-03-31"
    assert at_issue["certificates"]["auth"]["expires"] == "2025-03-31"
    assert at_issue["certificates"]["sign"]["expires"] == "2025-03-31"
    assert at_issue["renewal"]["opens"] == "2025-01-01"
    assert at_issue["renewal"]["for"] == "certificates"
    assert at_issue["notice"]["from"] == "2025-01-01"
    assert at_issue["health_insurance"]["grace_ends"] == "2025-06-30"
    expected = {
        date(2024, 12, 31): ("valid", "not yet", False),
        date(2025, 1, 1): ("expiring_soon", "open", False),
        date(2025, 3, 31): ("expiring_soon", "open", False),
        date(2025, 4, 1): ("eligibility_only", "open", True),
        date(2025, 6, 30): ("eligibility_only", "open", True),
        date(2025, 7, 1): ("void", "open", True),
        date(2030, 4, 1): ("void", "card expired", True),
    }
    for at, (hi, window, expired) in expected.items():
        doc = issuer.status(hanako, at)
        assert doc["health_insurance"]["state"] == hi, at
        assert doc["renewal"]["window"] == window, at
        assert doc["certificates"]["auth"]["expired"] is expired, at
    assert issuer.status(hanako, date(2030, 4, 1))["card"]["expired"] is True


# ---------------------------------------------------------------- renewal


def test_renewal_refused_before_the_window_with_the_opening_date(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    before = store.path.read_bytes()  # type: ignore[union-attr]
    with pytest.raises(UserError, match="renewal opens on 2025-01-01"):
        issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2024, 12, 31)), keys=keys)
    assert store.path.read_bytes() == before  # type: ignore[union-attr]


def test_renewal_inside_the_window(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    old_auth, old_sign = store.state.auth, store.state.sign
    assert old_auth is not None and old_sign is not None
    at = date(2025, 2, 1)
    result = issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(at), keys=keys)
    assert result.kinds == {"auth": "renewal", "sign": "renewal"}
    reloaded = load(store.path)  # type: ignore[arg-type]
    new_auth, new_sign = reloaded.auth, reloaded.sign
    assert new_auth is not None and new_sign is not None
    for old, new in ((old_auth, new_auth), (old_sign, new_sign)):
        assert new.serial != old.serial
        assert new.key_pem != old.key_pem
        assert public_numbers(new.key_pem) != public_numbers(old.key_pem)
        # renewed inside the window: the 6th birthday after 2025-02-01 (2025-03-31 is the
        # first), J-LIS's rule, which here is the card's own expiry
        assert (new.not_before, new.expires) == (at, date(2030, 3, 31))
        cert = cert_of(new.cert_der)
        assert cert.public_key().public_numbers() == public_numbers(new.key_pem)  # type: ignore[union-attr]
        assert cert.not_valid_before_utc == datetime(2025, 1, 31, 15, 0, tzinfo=timezone.utc)
        assert cert.not_valid_after_utc == datetime(2030, 3, 31, 14, 59, 59, tzinfo=timezone.utc)
    assert sorted(result.revoked) == sorted([old_auth.serial, old_sign.serial])
    # the CA: old serials on the CRL and revoked over OCSP, new ones good
    later = datetime(2025, 2, 2, tzinfo=timezone.utc)
    crl = x509.load_der_x509_crl(test_ca.crl("auth", at=later))
    assert crl.get_revoked_certificate_by_serial_number(old_auth.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(new_auth.serial) is None
    sign_crl = x509.load_der_x509_crl(test_ca.crl("sign", at=later))
    assert sign_crl.get_revoked_certificate_by_serial_number(old_sign.serial) is not None
    assert ocsp_status(test_ca, old_auth.cert_der, "auth", later) is ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(test_ca, new_auth.cert_der, "auth", later) is ocsp.OCSPCertStatus.GOOD
    assert ocsp_status(test_ca, old_sign.cert_der, "sign", later) is ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(test_ca, new_sign.cert_der, "sign", later) is ocsp.OCSPCertStatus.GOOD
    # the card's own record and status
    assert {h["serial"] for h in reloaded.history} == {
        format(old_auth.serial, "x"),
        format(old_sign.serial, "x"),
    }
    doc = issuer.status(reloaded, date(2025, 2, 2))
    assert doc["certificates"]["auth"]["expires"] == "2030-03-31"
    # the certificates now end with the card: what comes next is the card's renewal
    assert (doc["renewal"]["for"], doc["renewal"]["opens"]) == ("card", "2030-01-01")
    assert doc["certificates"]["auth"]["revoked"] is False
    assert doc["health_insurance"]["state"] == "valid"
    # the new certificate validates to its test root as a client certificate
    openssl = shutil.which("openssl")
    assert openssl
    (tmp_path / "root.pem").write_bytes(test_ca.auth.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(
        cert_of(new_auth.cert_der).public_bytes(serialization.Encoding.PEM)
    )
    run = subprocess.run(
        [openssl, "verify", "-x509_strict", "-purpose", "sslclient",
         "-policy", "1.2.392.200149.8.5.1.3.30", "-explicit_policy",
         "-attime", str(int(datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp())),
         "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "leaf.pem")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_renewing_again_right_after_is_refused(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    assert store.state.auth is not None and store.state.auth.expires == date(2030, 3, 31)
    # the certificates run to the card's expiry: only the card itself can be renewed
    with pytest.raises(UserError, match="renew the card itself from 2030-01-01"):
        issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2025, 2, 2)), keys=keys)
    with pytest.raises(UserError, match="renew the card itself from 2030-01-01"):
        issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2030, 2, 1)), keys=keys)


def test_renewing_on_time_never_costs_a_year(
    hanako: CardState, test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    """Item 13: the on-time renewer gets what the one who waits past expiry gets, or more."""
    born = date(1980, 6, 10)
    adult = issuer.issue_card(
        Identity("番号　太郎", born, "1", issuer.DEFAULT_ADDRESS, "123456789018"),
        date(2016, 7, 20), ca=test_ca, keys=keys,
    )
    # card to 2026-06-10 (10th birthday), certificates to 2021-06-10 (5th)
    assert (adult.expires, adult.auth.expires) == (date(2026, 6, 10), date(2021, 6, 10))  # type: ignore[union-attr]
    on_time = new_store(copy.deepcopy(adult), tmp_path / "on-time.json")
    late = new_store(copy.deepcopy(adult), tmp_path / "late.json")
    for one in (on_time, late):
        one.commit()
    # inside the window (from 2021-03-11): the 6th birthday after 2021-04-01 is 2026-06-10
    r1 = issuer.renew(on_time, pins=PINS, ca=test_ca, clock=FixedClock(date(2021, 4, 1)),
                      keys=keys)
    # after expiry (re-issue): the 5th birthday after 2021-07-01 is 2026-06-10 as well
    r2 = issuer.renew(late, pins=PINS, ca=test_ca, clock=FixedClock(date(2021, 7, 1)), keys=keys)
    assert (r1.kinds["auth"], r2.kinds["auth"]) == ("renewal", "re-issue")
    assert r1.renewed["auth"].expires == r2.renewed["auth"].expires == date(2026, 6, 10)
    # without the rule the on-time renewer would have had 2025-06-10, a year less
    assert lifecycle.certificate_expiry(born, date(2021, 4, 1)) == date(2025, 6, 10)
    assert lifecycle.certificate_expiry(born, date(2021, 4, 1), in_window=True) == date(
        2026, 6, 10)
    # the day before the window opens (2021-03-11) is not inside it: 5th birthday
    assert issuer.renewed_expiry(adult, "auth", date(2021, 3, 1), None) == date(2025, 6, 10)


def test_wrong_pin_at_renewal_costs_a_try_saved_before_the_comparison(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    at = FixedClock(date(2025, 2, 1))
    old_serial = store.state.auth.serial  # type: ignore[union-attr]
    with pytest.raises(issuer.PinRefused, match="wrong user-authentication PIN: 2 tries left") as e:
        issuer.renew(store, pins={**PINS, "auth": "9999"}, ca=test_ca, clock=at, keys=keys)
    assert (e.value.pin, e.value.tries_left, e.value.blocked) == ("auth", 2, False)
    on_disk = load(store.path)  # type: ignore[arg-type]
    assert on_disk.pins["auth"].tries_left == 2
    assert on_disk.auth is not None and on_disk.auth.serial == old_serial  # nothing renewed
    # a right PIN restores the counter and renews
    issuer.renew(store, pins=PINS, ca=test_ca, clock=at, keys=keys)
    assert load(store.path).pins["auth"].tries_left == 3  # type: ignore[arg-type]


def test_pin_try_is_on_disk_even_if_the_comparison_never_returns(
    store: CardStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(Exception):
        pass

    def crash(a: bytes, b: bytes) -> bool:
        raise Crash

    from jpki_sim.card import pins

    monkeypatch.setattr(pins.hmac, "compare_digest", crash)
    with pytest.raises(Crash):
        issuer.verify_pin(store, "sign", "ABC123")
    assert load(store.path).pins["sign"].tries_left == 4  # type: ignore[arg-type]


def test_blocked_pin_refuses_renewal_until_reset(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    at = FixedClock(date(2025, 2, 1))
    for left in (2, 1):
        with pytest.raises(UserError, match=f"{left} tr"):
            issuer.verify_pin(store, "auth", "0000")
    with pytest.raises(issuer.PinRefused, match="blocked now") as e:
        issuer.verify_pin(store, "auth", "0000")
    assert e.value.tries_left == 0 and e.value.blocked
    with pytest.raises(UserError, match="blocked: reset it first"):
        issuer.renew(store, pins=PINS, ca=test_ca, clock=at, keys=keys)
    assert load(store.path).pins["auth"].tries_left == 0  # type: ignore[arg-type]
    issuer.reset_pin(store, "auth", "4321")
    on_disk = load(store.path)  # type: ignore[arg-type]
    assert (on_disk.pins["auth"].value, on_disk.pins["auth"].tries_left) == ("4321", 3)
    issuer.renew(store, pins={**PINS, "auth": "4321"}, ca=test_ca, clock=at, keys=keys)


def test_reset_pin_checks_form_and_presence(
    test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    state = issuer.issue_card(
        issuer.default_identity(), ISSUED, with_sign=False, ca=test_ca, keys=keys
    )
    st = new_store(state, tmp_path / "c.json")
    with pytest.raises(UserError, match="no sign certificate"):
        issuer.reset_pin(st, "sign", "NEWPIN1")
    with pytest.raises(UserError, match="4 digits"):
        issuer.reset_pin(st, "helper", "12")
    with pytest.raises(UserError, match="no PIN called"):
        issuer.reset_pin(st, "other", "1234")
    issuer.reset_pin(st, "helper", "5678")
    assert load(tmp_path / "c.json").pins["helper"].value == "5678"


def test_after_expiry_renew_re_issues(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    old = store.state.auth
    assert old is not None
    at = date(2025, 5, 1)
    result = issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(at), keys=keys)
    assert result.kinds == {"auth": "re-issue", "sign": "re-issue"}
    assert result.revoked == []  # expired certificates are not put on the CRL
    new = store.state.auth
    assert new is not None and new.not_before == at and new.expires == date(2030, 3, 31)
    assert store.state.sign is not None and store.state.sign.expires == date(2030, 3, 31)
    assert issuer.status(store.state, at)["health_insurance"]["state"] == "valid"


def test_expired_card_cannot_be_renewed(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    with pytest.raises(UserError, match="card itself expired on 2030-03-31"):
        issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2030, 4, 1)), keys=keys)


def test_minor_certificates_are_not_renewed_separately(
    test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    child = Identity("番号　太郎", date(2012, 4, 23), "1", issuer.DEFAULT_ADDRESS, "123456789018")
    st = new_store(
        issuer.issue_card(child, date(2020, 6, 1), ca=test_ca, keys=keys), tmp_path / "c.json"
    )
    st.commit()
    with pytest.raises(UserError, match="renew the card itself from 2025-01-24"):
        issuer.renew(st, pins=PINS, ca=test_ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    assert issuer.status(st.state, date(2025, 2, 1))["renewal"]["for"] == "card"


# ---------------------------------------------------------------- change of address or name


def test_change_of_address_revokes_the_sign_certificate_only(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    auth, sign = store.state.auth, store.state.sign
    assert auth is not None and sign is not None
    at = FixedClock(date(2022, 5, 10))
    new_address = "東京都千代田区霞が関２丁目１番２号"
    revoked = issuer.change_address(store, new_address, ca=test_ca, clock=at)
    assert revoked == sign.serial
    on_disk = load(store.path)  # type: ignore[arg-type]
    assert on_disk.identity.address == new_address
    later = datetime(2022, 6, 1, tzinfo=timezone.utc)
    assert ocsp_status(test_ca, sign.cert_der, "sign", later) is ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(test_ca, auth.cert_der, "auth", later) is ocsp.OCSPCertStatus.GOOD
    doc = issuer.status(on_disk, date(2022, 6, 1))
    assert doc["certificates"]["sign"]["revoked"] is True
    assert doc["certificates"]["auth"]["revoked"] is False
    assert doc["health_insurance"]["state"] == "valid"
    assert doc["renewal"]["due"] == ["sign"]
    # a new signature certificate can be issued right away, with the new address
    result = issuer.renew(store, pins=PINS, ca=test_ca, clock=at, keys=keys)
    assert list(result.renewed) == ["sign"] and result.kinds["sign"] == "revoked"
    new_sign = store.state.sign
    assert new_sign is not None and new_sign.serial != sign.serial
    assert read_holder_facts(cert_of(new_sign.cert_der))["1.2.392.200149.8.5.5.5"] == new_address
    assert store.state.auth == auth  # untouched
    # the 5th birthday after 2022-05-10 would be 2027-03-31, but a signature certificate
    # never outlives the authentication certificate (施行規則, as municipal FAQs restate it)
    assert lifecycle.certificate_expiry(date(1993, 3, 31), date(2022, 5, 10)) == date(2027, 3, 31)
    assert new_sign.expires == auth.expires == date(2025, 3, 31)


def test_change_of_name_and_nothing_to_change(store: CardStore, test_ca: TestCA) -> None:
    at = FixedClock(date(2022, 5, 10))
    assert issuer.change_name(store, "番号　華子", ca=test_ca, clock=at) is not None
    assert load(store.path).identity.name == "番号　華子"  # type: ignore[arg-type]
    # the sign certificate is already revoked: a second change revokes nothing more
    assert issuer.change_address(store, "北海道小樽市色内１丁目", ca=test_ca, clock=at) is None
    with pytest.raises(UserError, match="nothing to change"):
        issuer.change_facts(store, ca=test_ca, clock=at)


# ---------------------------------------------------------------- the default card


def test_default_card_is_created_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: issuer.KeyPool
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = default.default_card_path()
    assert path == tmp_path / "data" / "jpki-sim" / "card.json"
    store = default.open_default_card(keys=keys, clock=FixedClock(date(2024, 1, 5)))
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.state.identity.name == "番号　花子"
    assert store.state.issued == date(2024, 1, 5)
    assert (tmp_path / "data" / "jpki-sim" / "ca" / "ca.json").exists()
    again = default.open_default_card(keys=keys)
    assert again.state.to_json() == store.state.to_json()


# ---------------------------------------------------------------- the chip after renewal


def test_after_renewal_the_card_reads_the_new_certificate_and_signs_with_the_new_key(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    from jpki_sim.profiles.jpki.build import build_card
    from jpki_sim.transport.inprocess import InProcessTransport

    issuer.renew(store, pins=PINS, ca=test_ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    new_der = store.state.auth.cert_der  # type: ignore[union-attr]
    card = InProcessTransport(build_card(open_store(store.path)))  # type: ignore[arg-type]

    def send(hex_apdu: str) -> bytes:
        resp = card.transmit(bytes.fromhex(hex_apdu.replace(" ", "")))
        assert resp[-2:] == b"\x90\x00", f"{hex_apdu} -> {resp[-2:].hex()}"
        return resp[:-2]

    send("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01")
    send("00 A4 02 0C 02 00 0A")
    data = b""
    while len(data) < len(new_der):
        data += send(f"00 B0 {len(data) >> 8:02X} {len(data) & 0xFF:02X} 00")
    assert data[: len(new_der)] == new_der
    # the key that signs is the new one
    send("00 A4 02 0C 02 00 18")
    send("00 20 00 80 04 31 32 33 34")
    send("00 A4 02 0C 02 00 17")
    digest_info = (
        bytes.fromhex("3031300d060960864801650304020105000420")
        + hashlib.sha256(b"renewed").digest()
    )
    sig = send(f"80 2A 00 80 {len(digest_info):02X} {digest_info.hex()} 00")
    public = cert_of(new_der).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(sig, b"renewed", padding.PKCS1v15(), hashes.SHA256())


# ---------------------------------------------------------------- renewing the card itself


def test_card_renewal_makes_a_new_card_and_revokes_the_old_certificates(
    test_ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    child = Identity("番号　太郎", date(2012, 4, 23), "1", issuer.DEFAULT_ADDRESS, "123456789018")
    st = new_store(
        issuer.issue_card(child, date(2020, 6, 1), ca=test_ca, keys=keys, pins={"auth": "2468"}),
        tmp_path / "c.json",
    )
    st.commit()
    old = st.state
    assert old.auth is not None and old.sign is None
    with pytest.raises(UserError, match="card renewal opens on 2025-01-24"):
        issuer.renew_card(st, ca=test_ca, clock=FixedClock(date(2025, 1, 23)), keys=keys)
    at = date(2025, 2, 1)
    revoked = issuer.renew_card(st, ca=test_ca, clock=FixedClock(at), keys=keys)
    assert revoked == [old.auth.serial]
    new = load(tmp_path / "c.json")
    assert new.issued == at
    # 12 at renewal, inside the window: a minor's card to the 6th birthday after 2025-02-01
    # (2025-04-23 is the 1st), the certificate likewise
    assert new.expires == date(2030, 4, 23)
    assert new.auth is not None and new.auth.expires == date(2030, 4, 23)
    assert new.auth.serial != old.auth.serial
    assert new.sign is None  # 12 years old: no signature certificate
    assert new.pins["auth"].value == "2468"  # the holder kept the old PIN
    assert new.application_id != old.application_id
    assert new.application_id.startswith("0120320250201")
    assert [h["reason"] for h in new.history] == ["cessationOfOperation"]
    later = datetime(2025, 2, 2, tzinfo=timezone.utc)
    assert ocsp_status(test_ca, old.auth.cert_der, "auth", later) is ocsp.OCSPCertStatus.REVOKED
    assert ocsp_status(test_ca, new.auth.cert_der, "auth", later) is ocsp.OCSPCertStatus.GOOD


def test_expired_card_can_be_replaced(
    store: CardStore, test_ca: TestCA, keys: issuer.KeyPool
) -> None:
    at = date(2031, 1, 10)
    assert issuer.renew_card(store, ca=test_ca, clock=FixedClock(at), keys=keys) == []
    assert store.state.issued == at and store.state.expires == date(2040, 3, 31)
    assert store.state.sign is not None and store.state.sign.expires == date(2035, 3, 31)


# ---------------------------------------------------------------- the card's own CA


def test_counter_operations_need_the_card_s_own_ca(
    store: CardStore, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    other = TestCA.open(tmp_path / "other-ca")
    before = store.path.read_bytes()  # type: ignore[union-attr]
    at = FixedClock(date(2025, 2, 1))
    with pytest.raises(UserError, match="not issued by the test CA"):
        issuer.renew(store, pins=PINS, ca=other, clock=at, keys=keys)
    with pytest.raises(UserError, match="not issued by the test CA"):
        issuer.change_address(store, "東京都", ca=other, clock=at)
    with pytest.raises(UserError, match="not issued by the test CA"):
        issuer.renew_card(store, ca=other, clock=FixedClock(date(2030, 2, 1)), keys=keys)
    assert store.path.read_bytes() == before  # type: ignore[union-attr]
    # a card whose CA directory has gone: an error, not a new empty CA
    store.state.ca_dir = str(tmp_path / "gone")
    with pytest.raises(UserError, match="no test CA"):
        issuer.renew(store, pins=PINS, clock=at, keys=keys)
    assert not (tmp_path / "gone").exists()
    assert load(store.path).pins["auth"].tries_left == 3  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties over random holders


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    issued=st.dates(min_value=issuer.FIRST_ISSUE_DAY, max_value=date(2060, 12, 31)),
    age_days=st.integers(min_value=0, max_value=95 * 365),
    stay=st.none() | st.integers(min_value=1, max_value=4000),
)
def test_issued_certificates_carry_exactly_the_rules_dates(
    test_ca: TestCA, keys: issuer.KeyPool, issued: date, age_days: int, stay: int | None
) -> None:
    from datetime import timedelta

    born = issued - timedelta(days=age_days)
    ident = issuer.default_identity()
    ident.birthdate = born
    ident.stay_until = issued + timedelta(days=stay) if stay is not None else None
    state = issuer.issue_card(ident, issued, ca=test_ca, keys=keys)
    card = lifecycle.card_expiry(born, issued, ident.stay_until)
    assert state.expires == card
    for slot in (state.auth, state.sign):
        if slot is None:
            continue
        cert = cert_of(slot.cert_der)
        assert slot.expires == lifecycle.certificate_expiry(born, issued, card) <= card
        assert cert.not_valid_after_utc == lifecycle.expires_at(slot.expires)
        assert cert.not_valid_before_utc == lifecycle.valid_from(issued)
    assert (state.sign is None) == (lifecycle.age_on(born, issued) < 15)
    doc = issuer.status(state, issued)
    assert date.fromisoformat(doc["renewal"]["opens"]) <= date.fromisoformat(
        doc["notice"]["expiry"]
    )
    assert doc["health_insurance"]["state"] in {"valid", "expiring_soon"}
