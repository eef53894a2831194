"""``jpki-sim card ...`` and ``jpki-sim ca ...`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from jpki_sim.cli import main
from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer.ca import TestCA
from jpki_sim.profiles.jpki.state import load


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-ca") / "ca"
    TestCA.open(path)
    return path


@pytest.fixture(scope="module")
def key_pool() -> issuer.KeyPool:
    return issuer.KeyPool.generate(8)


@pytest.fixture(autouse=True)
def fast_keys(monkeypatch: pytest.MonkeyPatch, key_pool: issuer.KeyPool, tmp_path: Path) -> None:
    # pre-generated keys (8 in turn: the up to 6 one test draws are distinct)
    monkeypatch.setattr(issuer, "generate_key", key_pool)
    # never touch the real user data dir
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jpki-sim: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def card(tmp_path: Path, ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "card.json"
    code, _, err = run(
        capsys, "card", "issue", str(path), "--issued", "2020-08-27", "--ca", str(ca_dir)
    )
    assert code == 0, err
    return path


# ---------------------------------------------------------------- issue and status


def test_issue_defaults_and_status_keys(card: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (card.stat().st_mode & 0o777) == 0o600
    state = load(card)
    assert state.identity.name == "番号　花子" and state.identity.my_number == "012345678903"
    doc = run_json(capsys, "card", "status", str(card), "--at", "2021-01-01")
    assert doc["card"]["expires"] == "2030-03-31"
    assert doc["certificates"]["auth"]["expires"] == "2025-03-31"
    assert doc["certificates"]["sign"]["expires"] == "2025-03-31"
    assert doc["renewal"]["opens"] == "2025-01-01"
    assert doc["notice"]["from"] == "2025-01-01"
    assert doc["health_insurance"]["state"] == "valid"
    assert doc["health_insurance"]["grace_ends"] == "2025-06-30"
    assert doc["pins"]["auth"]["tries_left"] == 3 and doc["pins"]["sign"]["tries_left"] == 5
    assert doc["certificates"]["auth"]["revoked"] is False
    states = {
        "2025-01-01": "expiring_soon",
        "2025-04-01": "eligibility_only",
        "2025-07-01": "void",
    }
    for at, want in states.items():
        assert (
            run_json(capsys, "card", "status", str(card), "--at", at)["health_insurance"]["state"]
            == want
        )


def test_status_table_for_people(card: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "card", "status", str(card), "--at", "2025-02-01")
    assert code == 0
    for text in ("番号　花子", "2030-03-31", "2025-03-31", "expiring_soon", "2025-01-01", "3/3"):
        assert text in out


def test_issue_with_every_option(
    tmp_path: Path, ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taro.json"
    doc = run_json(
        capsys, "card", "issue", str(out), "--name", "番号　太郎", "--birthdate", "1980-02-29",
        "--sex", "male", "--address", "東京都千代田区霞が関２丁目１番２号",
        "--my-number", "1234 5678 9018", "--issued", "2021-06-01", "--auth-pin", "4321",
        "--sign-pin", "PASSWORD1", "--helper-pin", "8765", "--juki-pin", "2468",
        "--stay-until", "2024-12-31", "--municipality", "13104", "--atr", "contactless-07",
        "--token-label", "JPKIAPICCTOKEN", "--ca", str(ca_dir),
    )  # fmt: skip
    assert doc["card"]["expires"] == "2024-12-31"
    assert doc["certificates"]["auth"]["expires"] == "2024-12-31"
    assert doc["chip"]["municipality"] == {"code": "13104", "name": "新宿区"}
    assert doc["chip"]["expires"] == "2024-12-31"
    assert doc["chip"]["atr"] == "contactless-07"
    assert doc["chip"]["token_label"] == "JPKIAPICCTOKEN"
    state = load(out)
    assert state.identity.sex == "1" and state.identity.my_number == "123456789018"
    assert state.application_id.startswith("13104")
    assert doc["chip"]["serial"] == state.info.serial
    # the resident-registry PIN is one secret written to both of its keys
    assert {n: p.value for n, p in state.pins.items()} == {
        "auth": "4321",
        "sign": "PASSWORD1",
        "helper": "8765",
        "juki": "2468",
        "common": "2468",
        # the 照合番号 keys: what the card face shows (born 昭和55年2月29日, expiring 2024)
        "helper-a": "123456789018",
        "surface-a": "123456789018",
        "birthdate": "550229",
        "helper-b": "5502292024" + state.security_code,
        "surface-b": "5502292024" + state.security_code,
    }


def test_issue_without_certificates(
    tmp_path: Path, ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bare.json"
    doc = run_json(
        capsys, "card", "issue", str(out), "--no-sign-cert", "--ca", str(ca_dir), "--at",
        "2022-01-01",
    )  # fmt: skip
    assert doc["certificates"]["sign"]["expires"] is None
    assert doc["card"]["issued"] == "2022-01-01"
    assert load(out).pins["sign"].value is None
    out2 = tmp_path / "none.json"
    doc = run_json(
        capsys, "card", "issue", str(out2), "--no-sign-cert", "--no-auth-cert", "--ca", str(ca_dir)
    )
    assert doc["certificates"]["auth"]["expires"] is None
    assert doc["health_insurance"]["state"] == "void"


def test_issue_refuses_to_overwrite_without_force(
    card: Path, ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = card.read_bytes()
    code, _, err = run(capsys, "card", "issue", str(card), "--ca", str(ca_dir))
    assert "--force" in one_line_error(code, err)
    assert card.read_bytes() == before
    code, _, err = run(capsys, "card", "issue", str(card), "--ca", str(ca_dir), "--force")
    assert code == 0, err
    assert card.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--birthdate", "1993-02-30"], "not a date on the calendar"),
        (["--issued", "2020-13-01"], "not a date on the calendar"),
        (["--at", "yesterday"], "YYYY-MM-DD"),
        (["--my-number", "012345678901"], "check digit"),
        (["--my-number", "12345"], "12 digits"),
        (["--auth-pin", "12345"], "4 digits"),
        (["--sign-pin", "abc"], "6 to 16"),
        (["--helper-pin", "x"], "4 digits"),
        (["--sex", "q"], "--sex"),
        (["--issued", "1990-01-01"], "before the birth date"),
        (["--stay-until", "2019-01-01", "--issued", "2020-01-01"], "period of stay"),
    ],
)
def test_bad_issue_input_is_one_line_exit_2_and_no_file(
    tmp_path: Path,
    ca_dir: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "bad.json"
    code, _, err = run(capsys, "card", "issue", str(out), "--ca", str(ca_dir), *args)
    assert message in one_line_error(code, err)
    assert not out.exists()


def test_missing_and_corrupt_card_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "card", "status", str(tmp_path / "nope.json"))
    assert "no such card file" in one_line_error(code, err)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "jpki-sim-card", "version": 1, "identity": ')
    before = corrupt.read_bytes()
    for argv in (
        ["card", "status", str(corrupt)],
        ["card", "renew", str(corrupt), "--auth-pin", "1234", "--sign-pin", "ABC123"],
        ["card", "reset-pin", str(corrupt), "--pin", "auth", "--new-pin", "1111"],
        ["card", "change-address", str(corrupt), "東京都"],
    ):
        code, _, err = run(capsys, *argv)
        assert "not valid JSON" in one_line_error(code, err)
    assert corrupt.read_bytes() == before


# ---------------------------------------------------------------- renew


def test_renew_refused_outside_the_window_leaves_the_file(
    card: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = card.read_bytes()
    code, _, err = run(capsys, "card", "renew", str(card), "--at", "2024-12-31")
    assert "renewal opens on 2025-01-01" in one_line_error(code, err)
    assert card.read_bytes() == before


def test_renew_with_pin_of_wrong_form_leaves_the_file(
    card: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = card.read_bytes()
    code, _, err = run(
        capsys, "card", "renew", str(card), "--at", "2025-02-01", "--auth-pin", "12",
        "--sign-pin", "ABC123",
    )  # fmt: skip
    assert "4 digits" in one_line_error(code, err)
    assert card.read_bytes() == before


def test_renew_without_pins_and_no_terminal_asks_for_options(
    card: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    before = card.read_bytes()
    code, _, err = run(capsys, "card", "renew", str(card), "--at", "2025-02-01")
    assert "give it as an option" in one_line_error(code, err)
    assert card.read_bytes() == before


def test_renew_prompts_for_pins_on_a_terminal(
    card: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    answers = {
        "current user-authentication PIN: ": "1234",
        "current signature password: ": "ABC123",
    }
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: answers[prompt])
    doc = run_json(capsys, "card", "renew", str(card), "--at", "2025-02-01")
    assert set(doc["renewed"]) == {"auth", "sign"}


def test_wrong_pin_at_renewal_decrements_the_counter(
    card: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "card", "renew", str(card), "--at", "2025-02-01", "--auth-pin", "1234",
        "--sign-pin", "WRONG1",
    )  # fmt: skip
    assert "wrong signature password: 4 tries left" in one_line_error(code, err)
    state = load(card)
    assert state.pins["sign"].tries_left == 4
    assert state.auth is not None and state.auth.not_before == date(2020, 8, 27)
    doc = run_json(capsys, "card", "status", str(card), "--at", "2025-02-01")
    assert doc["pins"]["sign"]["tries_left"] == 4


def ocsp_request_der(cert_der: bytes, root: x509.Certificate) -> bytes:
    cert = x509.load_der_x509_certificate(cert_der)
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, root, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


def test_issue_status_renew_status_crl_ocsp_and_apdu(
    card: Path, ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = load(card)
    assert old.auth is not None and old.sign is not None
    doc = run_json(
        capsys, "card", "renew", str(card), "--at", "2025-02-01", "--auth-pin", "1234",
        "--sign-pin", "ABC123",
    )  # fmt: skip
    assert doc["renewed"]["auth"]["old_serial"] == format(old.auth.serial, "x")
    assert doc["renewed"]["auth"]["expires"] == "2030-03-31"
    assert sorted(doc["revoked"]) == sorted(format(s.serial, "x") for s in (old.auth, old.sign))
    new = load(card)
    assert new.auth is not None and new.auth.serial != old.auth.serial
    assert new.auth.key_pem != old.auth.key_pem
    status = run_json(capsys, "card", "status", str(card), "--at", "2025-02-02")
    assert status["certificates"]["auth"]["expires"] == "2030-03-31"
    assert status["certificates"]["auth"]["serial"] == format(new.auth.serial, "x")
    assert status["renewal"]["opens"] == "2030-01-01"  # the card's, now
    assert {h["serial"] for h in status["revoked"]} == set(doc["revoked"])

    # the CRL names the old serial
    crl_path = tmp_path / "auth.crl"
    crl_doc = run_json(
        capsys, "ca", "crl", "--which", "auth", "--out", str(crl_path), "--ca", str(ca_dir)
    )
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old.auth.serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(new.auth.serial) is None
    assert format(old.auth.serial, "x") in crl_doc["revoked"]
    ca = TestCA.open(ca_dir)
    assert crl.is_signature_valid(ca.auth.cert.public_key())  # type: ignore[arg-type]
    code, _, err = run(
        capsys, "ca", "crl", "--which", "sign", "--pem", "--out", str(tmp_path / "s.pem"),
        "--ca", str(ca_dir),
    )  # fmt: skip
    assert code == 0, err
    sign_crl = x509.load_pem_x509_crl((tmp_path / "s.pem").read_bytes())
    assert sign_crl.get_revoked_certificate_by_serial_number(old.sign.serial) is not None

    # OCSP over HTTP from `jpki-sim ca ocsp`
    proc = subprocess.Popen(
        [sys.executable, "-m", "jpki_sim", "ca", "ocsp", "--port", "0", "--ca", str(ca_dir),
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        answers = {}
        for name, der in (("old", old.auth.cert_der), ("new", new.auth.cert_der)):
            req = urllib.request.Request(
                ready["ocsp"],
                data=ocsp_request_der(der, ca.auth.cert),
                headers={"Content-Type": "application/ocsp-request"},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                answers[name] = ocsp.load_der_ocsp_response(r.read()).certificate_status
        assert answers == {"old": ocsp.OCSPCertStatus.REVOKED, "new": ocsp.OCSPCertStatus.GOOD}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0

    # the card answers READ BINARY of EF 000A with the new certificate
    data_out = tmp_path / "cert.der"
    apdus = ["00A4040C0AD392F000260100000001", "00A4020C02000A"]
    apdus += [f"00B0{off:04X}00" for off in range(0, len(new.auth.cert_der), 256)]
    code, _, err = run(capsys, "apdu", "--card", str(card), *apdus, "--data-out", str(data_out))
    assert code == 0, err
    assert data_out.read_bytes()[: len(new.auth.cert_der)] == new.auth.cert_der


def test_ocsp_server_stops_on_sigterm_and_refuses_a_bad_port(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jpki_sim", "ca", "ocsp", "--port", "0", "--ca", str(ca_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("OCSP responder ready on http://127.0.0.1:")
    proc.terminate()
    proc.wait(timeout=10)
    assert proc.returncode == 0
    code, _, err = run(capsys, "ca", "ocsp", "--port", "70000", "--ca", str(ca_dir))
    assert "not a TCP port" in one_line_error(code, err)


# ---------------------------------------------------------------- reset-pin, change-address/name


def test_reset_pin(card: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        run(
            capsys, "card", "renew", str(card), "--at", "2025-02-01", "--auth-pin", "0000",
            "--sign-pin", "ABC123",
        )  # fmt: skip
    assert load(card).pins["auth"].tries_left == 0
    code, _, err = run(
        capsys, "card", "renew", str(card), "--at", "2025-02-01", "--auth-pin", "1234",
        "--sign-pin", "ABC123",
    )  # fmt: skip
    assert "blocked" in one_line_error(code, err)
    before = card.read_bytes()
    code, _, err = run(capsys, "card", "reset-pin", str(card), "--pin", "auth", "--new-pin", "98")
    assert "4 digits" in one_line_error(code, err)
    assert card.read_bytes() == before
    doc = run_json(capsys, "card", "reset-pin", str(card), "--pin", "auth", "--new-pin", "9876")
    assert doc["tries_left"] == 3
    assert load(card).pins["auth"].value == "9876"


def test_change_address_and_name(
    card: Path, ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_sign = load(card).sign
    assert old_sign is not None
    doc = run_json(
        capsys, "card", "change-address", str(card), "東京都千代田区霞が関２丁目１番２号",
        "--at", "2022-04-01",
    )  # fmt: skip
    assert doc["revoked"] == format(old_sign.serial, "x")
    assert doc["status"]["certificates"]["sign"]["revoked"] is True
    assert doc["status"]["certificates"]["auth"]["revoked"] is False
    assert load(card).identity.address == "東京都千代田区霞が関２丁目１番２号"
    code, out, err = run(
        capsys, "card", "change-name", str(card), "番号　華子", "--at", "2022-04-02"
    )
    assert code == 0, err
    assert "番号　華子" in out
    assert load(card).identity.name == "番号　華子"
    # the counter can issue a new signature certificate at once
    doc = run_json(capsys, "card", "renew", str(card), "--at", "2022-04-02", "--sign-pin", "ABC123")
    assert list(doc["renewed"]) == ["sign"] and doc["renewed"]["sign"]["kind"] == "revoked"


def test_bare_group_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "card")
    assert code == 2 and "issue" in err and "renew" in err
    code, _, err = run(capsys, "ca")
    assert code == 2 and "ocsp" in err


def test_card_and_ca_modules_import_only_the_standard_library() -> None:
    code = (
        "import sys; import jpki_sim.cli.card, jpki_sim.cli.ca; "
        "heavy = [m for m in ('cryptography', 'rich', 'platformdirs') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ},
    )  # fmt: skip
    assert out.stdout.strip() == ""


def test_renew_new_card(card: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "card", "renew", str(card), "--new-card", "--at", "2029-12-31")
    assert "card renewal opens on 2030-01-01" in one_line_error(code, err)
    doc = run_json(
        capsys, "card", "renew", str(card), "--new-card", "--at", "2030-04-02", "--auth-pin", "5555"
    )
    assert doc["new_card"]["issued"] == "2030-04-02"
    assert doc["new_card"]["expires"] == "2040-03-31"
    assert doc["status"]["certificates"]["auth"]["expires"] == "2035-03-31"
    state = load(card)
    assert state.pins["auth"].value == "5555" and state.pins["sign"].value == "ABC123"
    code, _, err = run(capsys, "card", "renew", str(card), "--helper-pin", "1111")
    assert "goes with --new-card" in one_line_error(code, err)


def test_unwritable_places_are_one_line_errors(
    tmp_path: Path,
    ca_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, _, err = run(
        capsys, "card", "issue", str(tmp_path / "c.json"), "--ca", str(a_file / "ca")
    )
    assert "cannot create the test CA" in one_line_error(code, err)

    import jpki_sim.card.store

    def refuse(path: object, data: bytes, mode: int = 0o600) -> None:
        raise PermissionError(13, "Permission denied")

    # (tests run as root here, so a read-only directory would not refuse)
    monkeypatch.setattr(jpki_sim.card.store, "write_atomic", refuse)
    code, _, err = run(capsys, "card", "issue", str(tmp_path / "c.json"), "--ca", str(ca_dir))
    assert "cannot write" in one_line_error(code, err)
    assert not (tmp_path / "c.json").exists()
    code, _, err = run(capsys, "ca", "crl", "--out", str(tmp_path / "x.crl"), "--ca", str(ca_dir))
    assert "cannot write" in one_line_error(code, err)


def test_commands_without_a_card_file_act_on_the_default_card(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jpki-sim card status` (no file) shows the card `jpki-sim serve` serves."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from jpki_sim.issuer.default import default_card_path

    doc = run_json(capsys, "card", "status")
    assert doc["path"] == str(default_card_path())
    assert default_card_path().is_relative_to(tmp_path)
    assert default_card_path().exists()
    code, out, _ = run(capsys, "card", "reset-pin", "--pin", "auth", "--new-pin", "4321")
    assert code == 0
    from jpki_sim.profiles.jpki.state import load

    assert load(default_card_path()).pins["auth"].value == "4321"
