"""The chip beyond the JPKI AP, in-process: its state, the counter's part, the CLI, the shell.

The applications' APDUs are the vectors' business (vectors/mf.jsonl, common.jsonl,
juki.jsonl, challenge.jsonl); this file checks what vectors cannot: the card file,
the issuer, the command line and the shell.
"""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.cli import main
from jpki_sim.errors import CardFileError, UserError
from jpki_sim.issuer import chip
from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.lifecycle import FixedClock
from jpki_sim.profiles.jpki import chipdata
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.cv_verify import parse_cv, verify_cv
from jpki_sim.profiles.jpki.state import CardState, load, new_store, open_store, save

REPO = Path(__file__).resolve().parent.parent
LEGACY_CARD = REPO / "tests" / "shell_scripts" / "card.json"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.open(tmp_path_factory.mktemp("chip-ca") / "ca")


@pytest.fixture(scope="module")
def keys() -> issuer.KeyPool:
    return issuer.KeyPool.generate(9)


@pytest.fixture
def hanako(ca: TestCA, keys: issuer.KeyPool) -> CardState:
    return issuer.issue_card(issuer.default_identity(), date(2025, 4, 1), ca=ca, keys=keys)


def tx(card: Any, hexstr: str) -> tuple[bytes, int]:
    r = card.process(bytes.fromhex(hexstr))
    return r[:-2], r[-2] << 8 | r[-1]


# ---------------------------------------------------------------- the card's facts


def test_a_new_card_has_its_serial_municipality_key_and_chain(hanako: CardState) -> None:
    info = hanako.info
    assert len(info.serial) == 15 and info.serial.isdigit() and info.serial[0] != "0"
    assert (info.municipality.code, info.municipality.name) == ("01203", "小樽市")
    assert hanako.application_id.startswith("01203")
    assert info.atr == "contact" and info.token_label == "JPKIAPICCTOKEN2"
    assert info.internal_auth_key is not None and "PRIVATE KEY" in info.internal_auth_key
    upper, lower = (parse_cv(info.cv_certificates[t]) for t in chipdata.CV_TAGS)
    assert lower.issuer_key_id == upper.subject_key_id
    verify_cv(lower, upper.public_key)
    # what the card answers for it
    card = build_card(new_store(hanako))
    card.power_on()
    assert tx(card, "00CA00F700") == (lower.issuer_key_id, 0x9000)
    assert tx(card, "00CA004500") == (info.serial.encode(), 0x9000)
    tx(card, "00A4040C0A" + jpki.COMMON_AID.hex())
    record, sw = tx(card, "00B2010C00")
    assert sw == 0x9000
    assert chipdata.decode_card_info(record) == {
        "serial": info.serial, "municipality": "01203", "expires": hanako.expires.isoformat()}


def test_serials_are_unique_per_card_and_recorded_by_the_ca(
    ca: TestCA, keys: issuer.KeyPool
) -> None:
    serials = [issuer.issue_card(issuer.default_identity(), date(2025, 4, 1), ca=ca,
                                 keys=keys).info.serial for _ in range(12)]
    assert len(set(serials)) == len(serials)
    db = json.loads((ca.directory / "db.json").read_text())
    assert set(serials) <= set(db["cards"])


def test_the_card_file_round_trips_the_chip(hanako: CardState, tmp_path: Path) -> None:
    save(hanako, tmp_path / "c.json")
    doc = json.loads((tmp_path / "c.json").read_text())
    assert set(doc["chip"]) == {"serial", "municipality", "atr", "token_label",
                                "internal_auth_key", "cv_certificates"}
    assert set(doc["chip"]["cv_certificates"]) == {"00F8", "7F21"}
    assert set(doc["pins"]) == {"auth", "sign", "helper", "juki", "common", "helper-a",
                                "helper-b", "birthdate", "surface-b", "surface-a"}
    again = load(tmp_path / "c.json")
    assert again.to_json() == hanako.to_json()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("serial", "12345", "chip.serial: must be 15 digits"),
    ("municipality", {"code": "1203", "name": "x"}, "chip.municipality.code: must be 5 digits"),
    ("internal_auth_key", "not a key", "chip.internal_auth_key: not a PEM private key"),
    ("cv_certificates", {"F8": "!!"}, "'chip.cv_certificates.F8' is not base64"),
    ("cv_certificates", {"zz": ""}, "'zz' is not a hex tag"),
])
def test_a_damaged_chip_field_is_refused(
    hanako: CardState, tmp_path: Path, field: str, value: object, message: str
) -> None:
    path = tmp_path / "c.json"
    save(hanako, path)
    doc = json.loads(path.read_text())
    doc["chip"][field] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(CardFileError, match=message):
        load(path)


def test_a_card_file_from_before_the_chip_facts_still_loads(tmp_path: Path) -> None:
    """Additive schema: no "chip", no juki/common PINs (the shell scripts' card is such a file)."""
    doc = json.loads(LEGACY_CARD.read_text())
    assert "chip" not in doc and "juki" not in doc["pins"]
    path = tmp_path / "old.json"
    shutil.copy(LEGACY_CARD, path)
    state = load(path)
    again = load(path)
    assert state.info.serial == again.info.serial  # derived, stable for the file
    assert state.info.municipality.code == state.application_id[:5]
    assert state.pins["juki"].value is None and state.pins["common"].value is None
    card = build_card(open_store(path))
    card.power_on()
    assert tx(card, "00CA00F8000000")[1] == 0x6A88  # no CV certificates in the file
    tx(card, "00A4040C0A" + jpki.COMMON_AID.hex())
    assert tx(card, "0088009908" + "11" * 8 + "00")[1] == 0x6984  # key 0019 never written
    tx(card, "00A4020C02001C")
    assert tx(card, "00200080")[1] == 0x63C0  # never set
    # the counter sets the resident-registry PIN: both keys, full counters
    store = open_store(path)
    issuer.reset_pin(store, "juki", "2468")
    assert store.state.pins["juki"].value == store.state.pins["common"].value == "2468"
    assert store.state.pins["common"].tries_left == 3


# ---------------------------------------------------------------- the counter


def test_the_juki_secret_is_written_to_both_keys_and_reset_together(
    ca: TestCA, keys: issuer.KeyPool
) -> None:
    state = issuer.issue_card(issuer.default_identity(), date(2025, 4, 1), ca=ca, keys=keys,
                              pins={"juki": "9753"})
    assert state.pins["juki"].value == state.pins["common"].value == "9753"
    store = new_store(state)
    store.state.pins["juki"].tries_left = 0
    store.state.pins["common"].tries_left = 1
    issuer.reset_pin(store, "juki", "1357")
    assert [(store.state.pins[k].value, store.state.pins[k].tries_left)
            for k in ("juki", "common")] == [("1357", 3), ("1357", 3)]
    with pytest.raises(UserError, match="4 digits"):
        issuer.reset_pin(store, "juki", "12345")
    with pytest.raises(UserError, match="no PIN called 'pin'"):
        issuer.reset_pin(store, "pin", "1234")


def test_municipality_and_variant_are_checked(ca: TestCA, keys: issuer.KeyPool) -> None:
    ident = issuer.default_identity()
    for kwargs, message in (
        ({"municipality": "1203"}, "a municipality code has 5 digits"),
        ({"municipality": "99001"}, "the first two digits are a prefecture"),
        ({"municipality": "13201"}, "give its name too"),
        ({"municipality": "13201", "municipality_name": " "}, "name is empty"),
        ({"atr": "contact-99"}, "no ATR 'contact-99'"),
        ({"token_label": "JPKIAPIOSTOKEN"}, "token label must be one of"),
    ):
        with pytest.raises(UserError, match=message):
            issuer.issue_card(ident, date(2025, 4, 1), ca=ca, keys=keys, **kwargs)  # type: ignore[arg-type]
    named = issuer.issue_card(ident, date(2025, 4, 1), ca=ca, keys=keys, municipality="13201",
                              municipality_name="八王子市", atr="3B00")
    assert (named.info.municipality.code, named.info.municipality.name) == ("13201", "八王子市")
    assert named.info.atr == "3B00"
    assert build_card(new_store(named)).atr == b"\x3b\x00"


def test_renewing_the_card_gives_a_new_serial_and_keeps_the_rest(
    ca: TestCA, keys: issuer.KeyPool, tmp_path: Path
) -> None:
    state = issuer.issue_card(issuer.default_identity(), date(2015, 4, 1), ca=ca, keys=keys,
                              municipality="13104", atr="contactless-07",
                              token_label="JPKIAPICCTOKEN", pins={"juki": "2468"})
    state.pins["common"].value = "8642"  # changed apart with CHANGE KEY
    path = tmp_path / "c.json"
    save(state, path)
    store = open_store(path)
    old = copy.deepcopy(store.state.info)
    issuer.renew_card(store, ca=ca, clock=FixedClock(date(2025, 2, 1)), keys=keys)
    new = load(path)
    assert new.info.serial != old.serial
    assert new.info.municipality == old.municipality
    assert (new.info.atr, new.info.token_label) == ("contactless-07", "JPKIAPICCTOKEN")
    assert new.info.internal_auth_key != old.internal_auth_key
    assert new.pins["juki"].value == "2468" and new.pins["common"].value == "8642"
    card = build_card(open_store(path))
    card.power_on()
    assert tx(card, "00CA00F200") == (f"{new.expires:%Y%m%d}".encode(), 0x9000)
    tx(card, "00A4040C0A" + jpki.COMMON_AID.hex())
    record, _sw = tx(card, "00B2010C00")
    assert chipdata.decode_card_info(record)["expires"] == new.expires.isoformat()
    assert chip.status(new)["serial"] == new.info.serial


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, keys: issuer.KeyPool, tmp_path: Path) -> None:
    monkeypatch.setattr(issuer, "generate_key", keys)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("cli_env")
def test_card_issue_status_and_reset_pin_know_the_four_secrets(
    capsys: pytest.CaptureFixture[str], ca: TestCA, tmp_path: Path
) -> None:
    card = str(tmp_path / "card.json")
    code, out, err = run(capsys, "card", "issue", card, "--ca", str(ca.directory),
                         "--juki-pin", "1111", "--municipality", "40130", "--at", "2025-04-01")
    assert code == 0, err
    serial = load(card).info.serial
    assert f"card {serial} from 40130 福岡市" in out
    code, out, _ = run(capsys, "card", "status", card, "--at", "2025-05-01")
    for text in (serial, "40130 福岡市", "ATR contact, token JPKIAPICCTOKEN2", "juki PIN",
                 "common PIN"):
        assert text in out, text
    code, out, _ = run(capsys, "card", "status", card, "--json")
    doc = json.loads(out)
    assert doc["chip"]["serial"] == serial
    assert doc["pins"]["juki"] == doc["pins"]["common"] == {
        "set": True, "tries_left": 3, "max_tries": 3, "blocked": False}
    code, out, _ = run(capsys, "card", "reset-pin", card, "--pin", "juki", "--new-pin", "2222",
                       "--json")
    assert json.loads(out) == {"path": card, "pin": "juki", "keys": ["juki", "common"],
                               "tries_left": 3}
    state = load(card)
    assert state.pins["juki"].value == state.pins["common"].value == "2222"
    code, _out, err = run(capsys, "card", "issue", str(tmp_path / "b.json"), "--municipality",
                          "77777", "--ca", str(ca.directory))
    assert code == 2 and err.strip().splitlines() == [
        "jpki-sim: error: municipality code 77777: the first two digits are a prefecture, 01-47"]
    code, _out, err = run(capsys, "card", "issue", str(tmp_path / "b.json"), "--juki-pin",
                          "12", "--ca", str(ca.directory))
    assert code == 2 and "resident-registry PIN (住基AP) must be exactly 4 digits" in err
    assert not (tmp_path / "b.json").exists()


# ---------------------------------------------------------------- the shell


def test_shell_verbs_for_the_chip(hanako: CardState) -> None:
    import io

    from jpki_sim.shell.registry import ShellError
    from jpki_sim.shell.session import Shell
    from jpki_sim.shell.target import CardTarget

    buf = io.StringIO()
    store = new_store(copy.deepcopy(hanako))
    sh = Shell(CardTarget.emulated(store), out=buf)
    script = [
        "get-data 00F0 --expect-data ^3031323033$",
        "get-data 00F8 --expect-sw 9000",
        "challenge 16 --expect-sw 9000",
        "card-info --expect-data " + hanako.info.serial,
        "get-data 00F0 --expect-sw 6A88",
        "select common",
        "read-record 1 --sfi 1 --expect-data ^011C",
        "select card-info",
        "read-record 1 --expect-data ^011C",
        "read-record 2 --expect-sw 6A83",
        "common-auth --expect-sw 9000",
        "verify juki 1234",
        "change-pin juki 1234 5678",
        "verify common 1234",
        "pin-status juki common",
    ]
    for line in script:
        sh.execute(line)  # a failed expectation raises
    out = buf.getvalue()
    assert "municipality  01203 (小樽市)" in out
    assert "simple-TLV: tag 01, 28 bytes" in out
    assert "00F0 (municipality code): 5 bytes" in out
    assert "juki    resident-registry PIN (住基AP) 3 tries left" in out
    assert store.state.pins["juki"].value == "5678" and store.state.pins["common"].value == "1234"
    # the PINs went over the wire masked in what the shell shows (CHANGE KEY included)
    assert "80320080042A2A2A2A -> 9000  (CHANGE KEY, PIN hidden)" in out
    assert "35363738" not in out and "31323334" not in out
    for line, message in (("read-record 0", "record must be 1..255"),
                          ("get-data XYZ", "not a tag of 4 hex digits"),
                          ("challenge 257", "length must be 1..256")):
        with pytest.raises(ShellError, match=message):
            sh.execute(line)


def test_shell_completes_the_new_names(hanako: CardState) -> None:
    import io

    from jpki_sim.shell.session import Shell
    from jpki_sim.shell.target import CardTarget

    sh = Shell(CardTarget.emulated(new_store(copy.deepcopy(hanako))), io.StringIO())
    assert sh.complete("get-data 00F") == ["00F0", "00F2", "00F7", "00F8"]
    assert sh.complete("chal") == ["challenge"]
    assert sh.complete("card-") == ["card-info"]
    assert sh.complete("select com") == ["common", "common-key-ref", "common-key", "common-pin"]
    assert "juki" in sh.complete("pin-status ")


# ---------------------------------------------------------------- traces


def test_change_key_is_redacted_as_a_secret_of_the_profile() -> None:
    from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
    from jpki_sim.profiles import registry
    from jpki_sim.trace import redact_command
    from jpki_sim.transport.vpcd import redact_pin

    profile = registry.get("jpki")
    key = instruction_key(CLA_PROPRIETARY, jpki.INS_CHANGE_KEY)
    assert key in profile.secret_instructions
    masked, done = redact_command(bytes.fromhex("803200800435363738"))
    assert done and masked == bytes.fromhex("80320080042A2A2A2A")
    assert "35363738" not in redact_pin(bytes.fromhex("803200800435363738"))


def test_a_profiles_own_secret_instruction_is_redacted() -> None:
    from dataclasses import replace

    from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
    from jpki_sim.profiles import registry
    from jpki_sim.trace import redact_command

    other = replace(registry.get("jpki"), name="secretive",
                    secret_instructions=frozenset({instruction_key(CLA_PROPRIETARY, 0x5E)}))
    command = bytes.fromhex("805E000003414243")
    assert redact_command(command) == (command, False)
    with registry.registered(other):
        assert redact_command(command) == (bytes.fromhex("805E0000032A2A2A"), True)
