"""The conformance vectors: the whole suite against the in-process card, and the runner itself.

The suite is parametrized per vector, so a failure names the vector and shows
the runner's diff. The rest checks the loader (strict), the named checks (each
can fail), the profiles, and the ``jpki-sim vectors`` command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.issuer import presets as profiles
from jpki_sim.vectors import checks, loader, runner
from jpki_sim.vectors import jpki as jpki_checks
from jpki_sim.vectors.model import Vector, Xfer
from jpki_sim.vectors.targets import InProcessTarget, wrong_pin

REPO = Path(__file__).resolve().parent.parent
SUITE = loader.all_vectors(loader.load_suite([REPO / "vectors"]))
JPKI = "D392F000260100000001"


@pytest.fixture(scope="module")
def target() -> InProcessTarget:
    return InProcessTarget()


@pytest.mark.parametrize("vector", SUITE, ids=[f"{v.feature}/{v.id}" for v in SUITE])
def test_vector_passes_in_process(vector: Vector, target: InProcessTarget) -> None:
    result = runner.play(vector, target)
    assert result.status == runner.PASSED, "\n".join(
        [f"{vector.id}: {vector.purpose} ({vector.where})", *result.diff]
    )


# ---------------------------------------------------------------- the suite's shape


def test_suite_covers_every_feature_and_profile() -> None:
    features = {v.feature for v in SUITE}
    assert {"select", "read_binary", "pin_auth", "pin_sign", "pin_helper", "sign", "helper",
            "foreign_aids", "malformed", "power", "profiles"} <= features
    assert {v.profile for v in SUITE} == set(profiles.PRESETS)


def _commands(v: Vector) -> list[str]:
    return [s.command for s in v.steps if isinstance(s, Xfer)]


def test_suite_covers_each_signing_scheme_with_each_key() -> None:
    signed = {
        (c[4:6], check.split(":")[1])
        for v in SUITE
        for s in v.steps
        if isinstance(s, Xfer)
        for c in [s.command]
        for check in s.checks
        if c.startswith("802A") and check.startswith("signature-verifies")
    }
    for scheme in ("00", "01", "02", "03", "04", "05"):
        assert (scheme, "auth") in signed and (scheme, "sign") in signed, scheme


def test_suite_reads_every_ef_with_and_without_pin() -> None:
    # a SELECT EF of each FID followed by a READ BINARY somewhere in the suite
    read: set[str] = set()
    for v in SUITE:
        ef = None
        for c in _commands(v):
            if c.startswith("00A4020C02"):
                ef = c[10:14]
            elif c.startswith("00B0") and ef:
                read.add(ef)
    for fid in ("0001", "0002", "0006", "0008", "000A", "000B", "0017", "0018", "001A",
                "001B", "0011"):
        assert fid in read, fid


class _WatchedTarget(InProcessTarget):
    """Notes every PIN try spent and every PIN value changed on the card it plays."""

    def start(self, vector: Vector) -> Any:
        facts = super().start(vector)
        store = self.store
        assert store is not None
        self.initial = {n: (p.value, p.tries_left) for n, p in store.state.pins.items()}
        self.harm: set[str] = set()
        return facts

    def transmit(self, apdu: bytes) -> bytes:
        response = super().transmit(apdu)
        # after the command: a right PIN spends a try and gives it back within it
        assert self.store is not None
        for name, (value, tries) in self.initial.items():
            pin = self.store.state.pins[name]
            if pin.value != value or pin.tries_left < tries:
                self.harm.add(name)
        return response


def test_vectors_that_spend_tries_are_destructive() -> None:
    """A vector that would cost a real card a PIN try, or change a PIN, must say so."""
    target = _WatchedTarget()
    for v in SUITE:
        if v.needs_setup:
            continue  # never played on a real card
        assert runner.play(v, target).status == runner.PASSED
        assert v.destructive == bool(target.harm), (v.id, target.harm)


def test_every_vector_has_id_purpose_and_steps() -> None:
    ids = [v.id for v in SUITE]
    assert len(ids) == len(set(ids))
    assert all(v.purpose and v.steps for v in SUITE)


# ---------------------------------------------------------------- the loader


def _load(text: str) -> list[Vector]:
    return loader.loads(textwrap.dedent(text).strip() + "\n").vectors


HEADER = '{"format": "jpki-sim-vectors", "version": 1, "feature": "t"}'


def test_loader_reads_steps_and_templates() -> None:
    setup = {"vector": "v1", "purpose": "p", "profile": "minor", "date": "2030-01-01",
             "tries": {"auth": 1}}
    (v,) = _load(f"""
        {HEADER}
        {json.dumps(setup)}
        {{"event": "xfer", "command": "00 20 00 98 {{pin:auth}}", "sw": ["9000", "63C?"]}}
        {{"event": "reset", "atr": "3BE000FF8131FE4514"}}
        {{"event": "admin", "action": "reset-pin", "pin": "auth"}}
    """)
    assert v.profile == "minor" and str(v.date) == "2030-01-01" and v.tries == {"auth": 1}
    xfer = v.steps[0]
    assert isinstance(xfer, Xfer)
    assert xfer.command == "00200098{pin:auth}"
    assert [p.matches(0x63C2) for p in xfer.sw] == [False, True]
    assert v.needs_setup and v.pins_used == {("pin", "auth")}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"event": "xfer", "command": "00A4", "sw": "90"}', "status word pattern"),
        ('{"event": "xfer", "command": "00ZZ", "sw": "9000"}', "not hex"),
        ('{"event": "xfer", "command": "00A4", "sw": "9000", "check": "der-cert"}',
         "unknown check"),
        ('{"event": "xfer", "command": "00A4", "sw": "9000", "check": "len:x"}', "needs a number"),
        ('{"event": "xfer", "command": "00A4", "sw": "9000", "check": "signature-verifies"}',
         "needs one of"),
        ('{"event": "xfer", "command": "00A4", "sw": "9000", "expect": "x"}', "unknown xfer"),
        ('{"event": "xfer", "command": "00A4", "sw": "9000", "match": "("}', "regular expr"),
        ('{"event": "xfer", "command": "00A4"}', "needs an expected"),
        ('{"event": "teleport"}', "unknown event"),
        ('{"event": "admin", "action": "explode", "pin": "auth"}', "admin action"),
        ('{"event": "power-on"}', "already powered"),
        ('{"event": "assert", "buffer": "x", "check": "any"}', "no step collects"),
    ],
)
def test_loader_refuses_bad_steps(line: str, message: str) -> None:
    text = f'{HEADER}\n{{"vector": "v", "purpose": "p"}}\n{line}\n'
    with pytest.raises(loader.VectorError, match=message):
        loader.loads(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ('{"format": "jpki-sim-trace", "version": 1}', "not a vector file"),
        ('{"format": "jpki-sim-vectors", "version": 9}', "version"),
        (HEADER + '\n{"event": "reset"}', "before the first vector"),
        (HEADER + '\n{"vector": "Bad Id", "purpose": "p"}', "vector id"),
        (HEADER + '\n{"vector": "v", "purpose": ""}', "purpose"),
        (HEADER + '\n{"vector": "v", "purpose": "p", "profile": "teen"}', "unknown profile"),
        (HEADER + '\n{"vector": "v", "purpose": "p", "tries": {"auth": 20}}', "tries"),
        (HEADER + '\n{"vector": "v", "purpose": "p"}', "no steps"),
        (HEADER + '\n{"vector": "v", "purpose": "p"}\n{"event": "power-off"}\n'
         '{"event": "xfer", "command": "00", "sw": "9000"}', "powered off"),
    ],
)
def test_loader_refuses_bad_files(text: str, message: str) -> None:
    with pytest.raises(loader.VectorError, match=message):
        loader.loads(text)


def test_loader_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f'{HEADER}\n{{"vector": "v", "purpose": "p"}}\n{{"event": "x"}}\n')
    with pytest.raises(loader.VectorError, match=r"^bad.jsonl:3: unknown event"):
        loader.load_file(bad)


def test_loader_refuses_duplicate_ids(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(
            f'{HEADER}\n{{"vector": "same", "purpose": "p"}}\n'
            '{"event": "xfer", "command": "00A4040C", "sw": "6700"}\n'
        )
    with pytest.raises(loader.VectorError, match="already used"):
        loader.load_suite([tmp_path])


def test_trace_form_response_is_an_exact_expectation() -> None:
    xfer = {"event": "xfer", "t": 0.1, "command": "00CA5F5100",
            "response": "E000FF8131FE45149000", "sw": "9000"}
    (v,) = _load(f"""
        {HEADER}
        {{"vector": "v", "purpose": "p"}}
        {json.dumps(xfer)}
    """)
    step = v.steps[0]
    assert isinstance(step, Xfer) and step.data == bytes.fromhex("E000FF8131FE4514")
    assert runner.play(v, InProcessTarget()).status == runner.PASSED


def test_default_paths_find_the_repository_suite() -> None:
    assert loader.default_paths() == [REPO / "vectors"]


# ---------------------------------------------------------------- the runner


def test_runner_diff_shows_expected_and_actual(target: InProcessTarget) -> None:
    (v,) = _load(f"""
        {HEADER}
        {{"vector": "v", "purpose": "a deliberately wrong expectation"}}
        {{"event": "xfer", "command": "00A4040C0A{JPKI}", "sw": "9000"}}
        {{"event": "xfer", "command": "00A4020C020001", "sw": "9000"}}
        {{"event": "xfer", "command": "00B0000004", "sw": "9000", "match": "3082.{{4}}"}}
    """)
    r = runner.play(v, target)
    assert r.status == runner.FAILED and r.steps == 3
    assert r.diff[0].startswith("step 3 (line 5): >> 00B0000004")
    assert "- sw   9000" in r.diff and "+ sw   6982 security status not satisfied" in r.diff
    assert "- data matching /3082.{4}/" in r.diff and "+ data (none)" in r.diff


def test_runner_exact_data_diff_names_first_difference(target: InProcessTarget) -> None:
    (v,) = _load(f"""
        {HEADER}
        {{"vector": "v", "purpose": "p"}}
        {{"event": "xfer", "command": "00A4040C0A{JPKI}", "sw": "9000"}}
        {{"event": "xfer", "command": "00A4020C020008", "sw": "9000"}}
        {{"event": "xfer", "command": "00B0000003", "sw": "9000", "data": "8F0000"}}
    """)
    r = runner.play(v, target)
    assert r.status == runner.FAILED
    assert r.diff[1:] == ["- data 8F0000", "+ data 8F8F00", "  first difference at byte 1"]


def test_runner_unexpected_data_fails(target: InProcessTarget) -> None:
    (v,) = _load(f"""
        {HEADER}
        {{"vector": "v", "purpose": "data nobody expected is a failure"}}
        {{"event": "xfer", "command": "00CA5F5100", "sw": "9000"}}
    """)
    r = runner.play(v, target)
    assert r.status == runner.FAILED and "- data (none)" in r.diff


def test_report_summary_and_junit(target: InProcessTarget) -> None:
    vs = _load(f"""
        {HEADER}
        {{"vector": "ok", "purpose": "passes"}}
        {{"event": "xfer", "command": "00A4040C0A{JPKI}", "sw": "9000"}}
        {{"vector": "bad", "purpose": "fails"}}
        {{"event": "xfer", "command": "00A4040C0A{JPKI}", "sw": "6A82"}}
    """)
    report = runner.run_suite(vs, target)
    assert report.summary() == "1 passed, 1 failed"
    report.results.append(runner.VectorResult(vs[0], runner.SKIPPED, "why"))
    assert report.summary() == "1 passed, 1 failed, 1 skipped"
    xml = runner.junit_xml(report)
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    assert root.get("tests") == "3" and root.get("failures") == "1"
    failure = root.find(".//testcase[@name='bad']/failure")
    assert failure is not None and "+ sw   9000" in (failure.text or "")
    assert root.find(".//testcase[@name='ok']/skipped") is not None


def test_select_by_pattern() -> None:
    picked = runner.select(SUITE, "pin_sign/ and countdown")
    assert [v.id for v in picked] == ["sign-pin-countdown-to-blocked"]
    assert all("sign" not in v.id for v in runner.select(SUITE, "not sign"))
    assert {v.feature for v in runner.select(SUITE, "power-* or helper-my*")} == {"power",
                                                                                  "helper"}


def test_wrong_pin_differs_and_keeps_the_form() -> None:
    from jpki_sim.profiles.jpki import ids as jpki

    for name, pin in (("auth", "1234"), ("sign", "ABC123"), ("sign", "Z9Z9Z9"),
                      ("helper", "9999")):
        other = wrong_pin(pin)
        assert other != pin
        jpki.PIN_POLICIES[name].check(other)


# ---------------------------------------------------------------- named checks


def _ctx(data: bytes, sw: int = 0x9000, command: bytes = b"") -> checks.CheckContext:
    st = profiles.state("default")
    from datetime import date

    return checks.CheckContext(data, sw, command, jpki_checks.CardFacts.from_state(st),
                               date(2026, 4, 1))


def test_checks_hold_and_fail() -> None:
    st = profiles.state("default")
    assert st.auth is not None
    cert = st.auth.cert_der
    assert checks.run("der-certificate:auth", _ctx(cert + b"\xff" * 10)) is None
    assert "not the card's sign" in (checks.run("der-certificate:sign", _ctx(cert)) or "")
    assert "not FF filler" in (checks.run("der-certificate", _ctx(cert + b"\x00")) or "")
    assert checks.run("der-certificate", _ctx(b"\x30\x82\x01")) is not None
    assert checks.run("len:3", _ctx(b"abc")) is None
    assert checks.run("len:4", _ctx(b"abc")) == "3 bytes of data, want 4"
    assert checks.run("tries-left:2", _ctx(b"", 0x63C2)) is None
    assert checks.run("tries-left:2", _ctx(b"", 0x63C1)) == "1 tries left, want 2"
    assert checks.run("filler", _ctx(b"\xff\xff")) is None
    assert checks.run("filler", _ctx(b"\xff\x00")) is not None
    assert checks.run("certificate-valid", _ctx(cert)) is None
    assert "not expired" in (checks.run("certificate-expired", _ctx(cert)) or "")
    assert checks.run("my-number", _ctx(bytes.fromhex("FF100C") + b"012345678903" + b"\xff\xff")) \
        is None
    assert "check digit" in (checks.run(
        "my-number", _ctx(bytes.fromhex("FF100C") + b"012345678901" + b"\xff\xff")) or "")


def test_signature_check_verifies_each_scheme_and_catches_forgeries() -> None:
    import hashlib

    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX, sign_scheme

    st = profiles.state("default")
    assert st.auth is not None and st.sign is not None
    key = load_pem_private_key(st.auth.key_pem.encode(), None)
    digest = hashlib.sha256(b"x").digest()
    inputs = {0: SHA256_DIGEST_INFO_PREFIX + digest, 1: b"x", 2: digest, 3: b"x", 4: digest,
              5: b"x"}
    for scheme, data in inputs.items():
        command = bytes((0x80, 0x2A, scheme, 0x80, len(data))) + data + b"\x00"
        sig = sign_scheme(key, scheme, data)  # type: ignore[arg-type]
        assert checks.run("signature-verifies:auth", _ctx(sig, command=command)) is None, scheme
        assert checks.run("signature-verifies:sign", _ctx(sig, command=command)) is not None
        forged = sig[:-1] + bytes((sig[-1] ^ 1,))
        assert checks.run("signature-verifies:auth", _ctx(forged, command=command)) is not None
    # scheme 00 signed over other data than the command sent
    command = bytes((0x80, 0x2A, 0x00, 0x80, 3)) + b"abc" + b"\x00"
    sig = sign_scheme(key, 0, b"abd")  # type: ignore[arg-type]
    assert checks.run("signature-verifies:auth", _ctx(sig, command=command)) is not None


# ---------------------------------------------------------------- profiles


def test_profiles_are_issued_once_and_copied() -> None:
    a, b = profiles.state("default"), profiles.state("default")
    assert a is not b and a.auth is not None and b.auth is not None
    assert a.auth.cert_der == b.auth.cert_der
    a.pins["auth"].tries_left = 0
    assert profiles.state("default").pins["auth"].tries_left == 3


def test_profiles_have_what_their_names_say() -> None:
    from jpki_sim.issuer import lifecycle

    s = {name: profiles.state(name) for name in profiles.PRESETS}
    assert s["default"].auth and s["default"].sign
    assert s["auth-only"].auth and s["auth-only"].sign is None
    assert s["no-certs"].auth is None and s["no-certs"].sign is None
    assert s["minor"].sign is None and lifecycle.age_on(s["minor"].identity.birthdate,
                                                        s["minor"].issued) < 15
    ref = profiles.PRESETS["expired"].reference_date
    assert lifecycle.is_expired(s["expired"].expires, ref)
    assert s["cert-expired"].auth is not None
    assert lifecycle.is_expired(s["cert-expired"].auth.expires, ref)
    assert not lifecycle.is_expired(s["cert-expired"].expires, ref)
    assert all(p.tries_left == 0 for p in s["pin-blocked"].pins.values())
    assert s["default"].auth and s["default"].sign
    kenmen = s["default"].kenmen
    assert kenmen is not None
    keys = {s["default"].auth.key_pem, s["default"].sign.key_pem,
            s["default"].info.internal_auth_key, *kenmen.keys.values()}
    # auth, sign, the 共通AP key 0019, helper 0013 and session, surface 001A, MF: all differ
    assert len(keys) == 7
    assert s["contactless"].info.atr == "contactless-06"
    assert s["old-label"].info.token_label == "JPKIAPICCTOKEN"
    # every card of one CA has its own serial
    assert len({st.info.serial for st in s.values()}) == len(s)


# ---------------------------------------------------------------- the command line


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jpki_sim", "vectors", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_cli_run_prints_summary_and_exits_zero() -> None:
    done = _cli("run", "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{len(SUITE)} passed, 0 failed"


def test_cli_run_failure_diff_junit_and_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        f'{HEADER}\n{{"vector": "wrong-sw", "purpose": "expects 9000 for an unknown AID"}}\n'
        '{"event": "xfer", "command": "00A4040C03A00000", "sw": "9000"}\n'
        '{"vector": "right", "purpose": "ok"}\n'
        '{"event": "xfer", "command": "00A4040C03A00000", "sw": "6A82"}\n'
    )
    junit = tmp_path / "out.xml"
    done = _cli("run", str(bad), "--junit", str(junit))
    assert done.returncode == 1
    out = done.stdout
    assert "FAIL t/wrong-sw" in out and "PASS t/right" in out
    assert "- sw   9000" in out and "+ sw   6A82 file or application not found" in out
    assert out.strip().splitlines()[-1] == "1 passed, 1 failed"
    assert 'failures="1"' in junit.read_text()
    done = _cli("run", str(bad), "--json")
    report = json.loads(done.stdout)
    assert report["summary"] == {"passed": 1, "failed": 1, "skipped": 0}
    assert report["results"][0]["diff"][1] == "- sw   9000"


def test_cli_run_k_and_no_match() -> None:
    done = _cli("run", "-k", "select-jpki-aid")
    assert done.returncode == 0 and "PASS select/select-jpki-aid" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "1 passed, 0 failed"
    done = _cli("run", "-k", "no-such-vector-anywhere")
    assert done.returncode == 5 and "no vectors selected" in done.stderr


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "jpki-sim-vectors", "version": 1}\n{"vector": "v"}\n')
    done = _cli("run", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip() == ("jpki-sim: error: bad.jsonl:2: vector 'v' needs a one-line "
                                   '"purpose"')
    done = _cli("run", str(tmp_path / "missing.jsonl"))
    assert done.returncode == 2 and "no such file" in done.stderr
    done = _cli("run", "--pin", "auth=1234")
    assert done.returncode == 2 and "--reader" in done.stderr


def test_cli_list() -> None:
    done = _cli("list", "--json", "-k", "pin_auth/")
    rows = json.loads(done.stdout)
    assert rows and all(r["feature"] == "pin_auth" for r in rows)
    assert any(r["destructive"] for r in rows) and any(r["setup"] for r in rows)


def test_vectors_ship_with_the_package() -> None:
    """The package's data folder holds the same files as the repository's vectors/."""
    bundled = loader.BUNDLED
    assert bundled.is_dir()
    repo_files = sorted(p.name for p in (REPO / "vectors").glob("*.jsonl"))
    assert sorted(p.name for p in bundled.glob("*.jsonl")) == repo_files
    for name in repo_files:
        assert (bundled / name).read_bytes() == (REPO / "vectors" / name).read_bytes()
