"""The rules of the card's life decided in issue 11 (items 11-16), with their sources.

docs/protocol.md, "The card's life", states each rule, its source, and the
choices marked **Chosen**.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from jpki_sim.errors import UserError
from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer import lifecycle as lc
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.certprofile import read_holder_facts
from jpki_sim.issuer.lifecycle import FixedClock
from jpki_sim.issuer.lifecycle import HealthInsurance as HI
from jpki_sim.profiles.jpki import records
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import EARLIEST_BIRTHDATE, Identity, new_store

PINS = {"auth": "1234", "sign": "ABC123", "helper": "1234"}
HANAKO = date(1993, 3, 31)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(tmp_path_factory.mktemp("rules-ca"))


@pytest.fixture(scope="module")
def keys() -> issuer.KeyPool:
    return issuer.KeyPool.generate(8)


def person(born: date, name: str = "番号　太郎") -> Identity:
    return Identity(name, born, "1", issuer.DEFAULT_ADDRESS, "123456789018")


# ---------------------------------------------------------------- 13: renewal inside the window


def test_a_certificate_renewed_inside_the_window_runs_to_the_6th_birthday() -> None:
    """jpki.go.jp: 有効期間満了前に更新を行った場合は…発行の日から6回目の誕生日まで."""
    # expiry 2025-04-23 (seed 003); renewed on 2025-02-01, inside the window from 2025-01-24
    assert lc.in_renewal_window(date(2025, 4, 23), date(2025, 2, 1))
    born = date(1980, 4, 23)
    assert lc.certificate_expiry(born, date(2025, 2, 1), in_window=True) == date(2030, 4, 23)
    # the 5th would have been 2029-04-23: a year lost for renewing on time
    assert lc.certificate_expiry(born, date(2025, 2, 1)) == date(2029, 4, 23)
    # after expiry (re-issue) the plain rule: the 5th birthday after 2025-05-01 is 2030-04-23
    assert lc.certificate_expiry(born, date(2025, 5, 1)) == date(2030, 4, 23)


def test_the_window_is_from_the_day_renewal_opens_through_the_expiry_day() -> None:
    expiry = date(2025, 4, 23)
    assert not lc.in_renewal_window(expiry, date(2025, 1, 23))
    assert lc.in_renewal_window(expiry, date(2025, 1, 24))
    assert lc.in_renewal_window(expiry, expiry)
    assert not lc.in_renewal_window(expiry, date(2025, 4, 24))


def test_a_card_renewed_inside_its_window_runs_to_the_11th_birthday(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    """The card ordinance (個人番号カード等に関する命令 art. 26) counts the 11th (6th)."""
    born = date(1980, 4, 23)
    state = issuer.issue_card(person(born), date(2016, 1, 20), ca=ca, keys=keys)
    assert state.expires == date(2025, 4, 23)  # 10th birthday after 2016-01-20
    store = new_store(state, tmp_path / "c.json")
    store.commit()
    issuer.renew_card(store, pins=PINS, ca=ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    new = store.state
    assert new.expires == date(2035, 4, 23)  # the 11th birthday after 2025-02-01
    assert lc.card_expiry(born, date(2025, 2, 1)) == date(2034, 4, 23)  # the 10th: a year less
    # its certificates had expired in 2020 (never renewed): the new ones get the plain 5th
    assert new.auth is not None and new.auth.expires == date(2029, 4, 23)
    assert new.sign is not None and new.sign.expires == date(2029, 4, 23)


def test_certificates_ending_with_a_card_renewed_in_the_window_get_the_6th(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    """A minor's card and certificate end together; renewed on time, both get a year more."""
    child = issuer.issue_card(person(date(2012, 4, 23)), date(2020, 6, 1), ca=ca, keys=keys)
    assert child.auth is not None and child.auth.expires == child.expires == date(2025, 4, 23)
    store = new_store(child, tmp_path / "c.json")
    store.commit()
    issuer.renew_card(store, ca=ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    assert store.state.expires == date(2030, 4, 23)  # 12 at renewal: the 6th birthday
    assert store.state.auth is not None and store.state.auth.expires == date(2030, 4, 23)


def test_a_card_renewed_after_its_expiry_gets_the_plain_rule(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    born = date(1980, 4, 23)
    store = new_store(issuer.issue_card(person(born), date(2016, 1, 20), ca=ca, keys=keys),
                      tmp_path / "c.json")
    store.commit()
    issuer.renew_card(store, pins=PINS, ca=ca, clock=FixedClock(date(2025, 6, 1)), keys=keys)
    # the 10th after 2025-06-01: the same day the on-time renewer gets, never more
    assert store.state.expires == date(2035, 4, 23)
    assert store.state.auth is not None and store.state.auth.expires == date(2030, 4, 23)


def test_a_minor_card_renewed_in_the_window_runs_to_the_6th_birthday() -> None:
    born = date(2014, 6, 15)  # 9 at renewal
    assert lc.card_expiry(born, date(2024, 4, 1), in_window=True) == date(2029, 6, 15)
    assert lc.card_expiry(born, date(2024, 4, 1)) == date(2028, 6, 15)


def test_a_signature_certificate_never_outlives_the_authentication_one(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    """東村山市's FAQ, restating the 施行規則: a sign certificate ends by the auth one's end."""
    store = new_store(issuer.issue_card(issuer.default_identity(), date(2020, 8, 27), ca=ca,
                                        keys=keys), tmp_path / "c.json")
    store.commit()
    issuer.change_address(store, "東京都千代田区霞が関２丁目１番２号", ca=ca,
                          clock=FixedClock(date(2022, 5, 10)))
    result = issuer.renew(store, pins=PINS, ca=ca, clock=FixedClock(date(2022, 5, 10)), keys=keys)
    assert list(result.renewed) == ["sign"]
    assert result.renewed["sign"].expires == date(2025, 3, 31)  # the auth certificate's end


# ---------------------------------------------------------------- 14: age, notice, grace


def test_a_holder_turning_18_the_day_after_issue_is_a_minor_at_issue() -> None:
    """Age is attained at the end of the day before the birthday (年齢計算ニ関スル法律), yet
    "18 or over on the issue day" holds from the birthday itself, as 法務省 read the 2022
    change: born 2004-04-02 was not an adult on 2022-04-01."""
    born = date(2004, 4, 2)
    assert lc.age_on(born, date(2022, 4, 1)) == 17
    assert lc.age_on(born, date(2022, 4, 2)) == 18
    # issued on 2022-04-01, the day before the 18th birthday: a minor's 5-year card
    assert lc.card_expiry(born, date(2022, 4, 1)) == date(2026, 4, 2)
    # issued on the birthday: an adult's 10-year card
    assert lc.card_expiry(born, date(2022, 4, 2)) == date(2032, 4, 2)


def test_the_clinic_notice_starts_the_day_renewal_opens() -> None:
    """Seed 001: 有効期限の3カ月前時点から…通知; "within 3 months" first holds that day."""
    expiry = date(2025, 4, 23)
    assert lc.health_insurance(expiry, date(2025, 1, 23)).state is HI.VALID
    soon = lc.health_insurance(expiry, date(2025, 1, 24))
    assert soon.state is HI.EXPIRING_SOON and soon.expiring_soon_from == date(2025, 1, 24)
    assert lc.notice_from(expiry) == lc.renewal_opens(expiry) == date(2025, 1, 24)


def test_the_eligibility_grace_does_not_outlive_the_card() -> None:
    # a minor's card and certificate end together: expired card, no grace
    expiry = date(2029, 6, 15)
    after = lc.health_insurance(expiry, date(2029, 6, 16), card_expires=expiry)
    assert after.state is HI.VOID and after.grace_ends == expiry
    # the card lives on after the certificate: the grace holds (seed 001)
    lives = lc.health_insurance(expiry, date(2029, 6, 16), card_expires=date(2034, 6, 15))
    assert lives.state is HI.ELIGIBILITY_ONLY and lives.grace_ends == date(2029, 9, 30)
    # a card expiring inside the grace cuts it short
    short = lc.health_insurance(expiry, date(2029, 7, 2), card_expires=date(2029, 7, 1))
    assert short.state is HI.VOID and short.grace_ends == date(2029, 7, 1)


def test_status_of_a_minor_card_after_its_expiry_is_void(ca: TestCA,
                                                         keys: issuer.KeyPool) -> None:
    minor = issuer.issue_card(person(date(2014, 6, 15)), date(2020, 6, 1), ca=ca, keys=keys)
    assert minor.auth is not None and minor.auth.expires == minor.expires
    doc = issuer.status(minor, minor.expires.replace(day=minor.expires.day + 1))
    assert doc["card"]["expired"] is True
    assert doc["health_insurance"]["state"] == "void"


# ---------------------------------------------------------------- 12: before the issue date


def test_status_before_the_issue_date_is_not_yet_valid_for_every_field(
    ca: TestCA, keys: issuer.KeyPool
) -> None:
    state = issuer.issue_card(issuer.default_identity(), date(2020, 8, 27), ca=ca, keys=keys)
    doc = issuer.status(state, date(2019, 1, 1))
    assert doc["card"]["not_yet_valid"] is True and doc["card"]["expired"] is False
    for which in ("auth", "sign"):
        assert doc["certificates"][which]["not_yet_valid"] is True
        assert doc["certificates"][which]["expired"] is False
    assert doc["health_insurance"]["state"] == "not_yet_valid"
    assert doc["renewal"]["window"] == "not yet valid" and doc["renewal"]["due"] == []
    # on the issue day itself everything is valid
    on_day = issuer.status(state, date(2020, 8, 27))
    assert on_day["card"]["not_yet_valid"] is False
    assert on_day["health_insurance"]["state"] == "valid"


# ---------------------------------------------------------------- 11: era codes


def test_birth_dates_before_meiji_are_refused_and_the_era_codes() -> None:
    assert EARLIEST_BIRTHDATE == lc.FIRST_ERA_DAY == date(1868, 10, 23)
    with pytest.raises(UserError, match="before the Meiji era"):
        issuer.check_identity(person(date(1800, 1, 1)))
    assert lc.era_of(date(1868, 10, 22))[0] == 0  # no era: refused by the issuer
    codes = [(d, lc.era_of(d)[0]) for d in (date(1868, 10, 23), date(1912, 7, 30),
                                            date(1926, 12, 25), date(1989, 1, 8),
                                            date(2019, 5, 1))]
    assert codes == [(date(1868, 10, 23), 1), (date(1912, 7, 30), 2), (date(1926, 12, 25), 3),
                     (date(1989, 1, 8), 4), (date(2019, 5, 1), 5)]
    # the last day of each era still has the earlier code
    assert [lc.era_of(d)[0] for d in (date(1912, 7, 29), date(1926, 12, 24), date(1989, 1, 7),
                                      date(2019, 4, 30))] == [1, 2, 3, 4]


# ---------------------------------------------------------------- 15: any of the four facts


@pytest.mark.parametrize(("fact", "value"), [
    ("name", "番号　華子"),
    ("address", "東京都千代田区霞が関２丁目１番２号"),
    ("birthdate", date(1993, 4, 1)),
    ("sex", "9"),
])
def test_a_change_of_any_of_the_four_facts_revokes_the_signature_certificate(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path, fact: str, value: object
) -> None:
    state = issuer.issue_card(issuer.default_identity(), date(2020, 8, 27), ca=ca, keys=keys)
    store = new_store(state, tmp_path / "c.json")
    store.commit()
    sign, auth = state.sign, state.auth
    assert sign is not None and auth is not None
    at = FixedClock(date(2022, 5, 10))
    revoked = issuer.change_facts(store, **{fact: value}, ca=ca, clock=at)  # type: ignore[arg-type]
    assert revoked == sign.serial
    assert getattr(store.state.identity, fact) == value
    record = ca.record(sign.serial)
    assert record is not None and record.reason == "affiliationChanged"
    auth_record = ca.record(auth.serial)
    assert auth_record is not None and not auth_record.revoked
    # the helper application shows the new fact at once
    card = build_card(store)
    facts = records.decode_helper_basic_info(card.applications[
        bytes.fromhex("D3921000310001010408")].files[0x0002].content)
    key = {"name": "name", "address": "address", "birthdate": "birthdate", "sex": "sex"}[fact]
    assert facts[key] == value
    # a new signature certificate carries it
    issuer.renew(store, pins=PINS, ca=ca, clock=at, keys=keys)
    assert store.state.sign is not None
    from cryptography import x509

    carried = read_holder_facts(x509.load_der_x509_certificate(store.state.sign.cert_der))
    if fact == "birthdate":
        assert carried["1.2.392.200149.8.5.5.4"] == "419930401"
    elif fact == "sex":
        assert carried["1.2.392.200149.8.5.5.3"] == "3"


def test_a_birth_date_after_the_issue_day_is_refused(ca: TestCA, keys: issuer.KeyPool,
                                                    tmp_path: Path) -> None:
    state = issuer.issue_card(issuer.default_identity(), date(2020, 8, 27), ca=ca, keys=keys)
    store = new_store(state, tmp_path / "c.json")
    store.commit()
    before = (tmp_path / "c.json").read_bytes()
    with pytest.raises(UserError, match="after the card's issue date"):
        issuer.change_birthdate(store, date(2021, 1, 1), ca=ca,
                                clock=FixedClock(date(2022, 5, 10)))
    assert (tmp_path / "c.json").read_bytes() == before


# ---------------------------------------------------------------- 16: the default name


def test_the_default_holder_is_written_with_the_ideographic_space(
    ca: TestCA, keys: issuer.KeyPool
) -> None:
    ident = issuer.default_identity()
    assert ident.name == "番号\u3000花子"
    state = issuer.issue_card(ident, date(2020, 8, 27), ca=ca, keys=keys)
    card = build_card(new_store(state))
    helper = card.applications[bytes.fromhex("D3921000310001010408")]
    ef = helper.files[0x0002].content
    assert "番号\u3000花子".encode() in ef
    assert records.decode_helper_basic_info(ef)["name"] == "番号\u3000花子"
    from cryptography import x509

    assert state.sign is not None
    facts = read_holder_facts(x509.load_der_x509_certificate(state.sign.cert_der))
    assert facts["1.2.392.200149.8.5.5.1"] == "番号\u3000花子"
