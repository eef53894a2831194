"""The pytest plugin, used from throwaway test projects (pytester), as users would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# pytester's in-process runs drop the modules a run imported; cryptography's
# hash classes must not be imported twice (its Rust core knows the first ones),
# so everything the fixtures load is imported here, before any run
import jpki_sim.issuer.ca  # noqa: F401
import jpki_sim.issuer.counter  # noqa: F401
import jpki_sim.issuer.presets  # noqa: F401
import jpki_sim.profiles.jpki.build  # noqa: F401
import jpki_sim.profiles.jpki.client  # noqa: F401

pytest_plugins = ["pytester"]

#: the small reader program of the README's worked example ("Testing your own reader software")
READER_PROGRAM = '''
"""Print the token label and which certificates the My Number card in READER carries."""
import sys

from smartcard.System import readers


def main(name: str) -> None:
    connection = next(r for r in readers() if str(r) == name).createConnection()
    connection.connect()

    def send(hex_apdu: str) -> bytes:
        data, sw1, sw2 = connection.transmit(list(bytes.fromhex(hex_apdu)))
        assert (sw1, sw2) == (0x90, 0x00), f"{hex_apdu}: {sw1:02X}{sw2:02X}"
        return bytes(data)

    send("00A4040C0AD392F000260100000001")  # the JPKI application
    send("00A4020C020006")
    print(send("00B0000020").decode("ascii").strip())
    send("00A4020C020008")
    sign, auth, _ = send("00B0000003")
    print(f"auth certificate: {'yes' if auth else 'no'}")
    print(f"sign certificate: {'yes' if sign else 'no'}")


if __name__ == "__main__":
    main(sys.argv[1])
'''

#: the README's 10-line test of that program
READER_TEST = '''
import subprocess, sys

import pytest


@pytest.mark.jpki_profile("auth-only")
def test_read_label(jpki_reader):
    out = subprocess.run([sys.executable, "read_label.py", jpki_reader],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["JPKIAPICCTOKEN2", "auth certificate: yes", "sign certificate: no"]
'''


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.jpki_profile(name, **changes)*",
                                 "@pytest.mark.jpki_date(day)*"])


def test_jpki_card_default_and_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent('''
        import datetime
        import pytest
        from jpki_sim.pytest_plugin import JpkiCard


        def test_default(jpki_card: JpkiCard):
            assert jpki_card.profile == "default"
            assert jpki_card.transmit("00CA5F5100") == jpki_card.atr[1:] + b"\\x90\\x00"
            assert jpki_card.client.certificate_presence() == bytes.fromhex("8F8F00")
            assert jpki_card.client.token_label() == "JPKIAPICCTOKEN2"
            jpki_card.client.verify_pin("auth", jpki_card.pins["auth"])


        def test_fresh_per_test(jpki_card):
            # the previous test's VERIFY left nothing behind; counters are full
            assert jpki_card.client.pin_status("auth") == 3
            assert jpki_card.state.pins["auth"].tries_left == 3


        @pytest.mark.jpki_profile("minor")
        def test_minor(jpki_card):
            assert jpki_card.state.sign is None
            assert jpki_card.client.certificate_presence() == bytes.fromhex("008F00")


        @pytest.mark.jpki_profile("default", tries={"auth": 1})
        def test_tries(jpki_card):
            assert jpki_card.client.pin_status("auth") == 1


        @pytest.mark.jpki_profile("default", issued="2020-08-27")
        @pytest.mark.jpki_date("2025-05-01")
        def test_issued_and_date(jpki_card):
            # born 1993-03-31: the certificates expired on 2025-03-31, grace to 2025-06-30
            assert jpki_card.state.issued == datetime.date(2020, 8, 27)
            assert jpki_card.date == datetime.date(2025, 5, 1)
            assert jpki_card.clock.today() == datetime.date(2025, 5, 1)
            status = jpki_card.status()
            assert status["health_insurance"]["state"] == "eligibility_only"


        @pytest.mark.parametrize("jpki_card", ["auth-only", "no-certs", "pin-blocked"],
                                 indirect=True)
        def test_indirect(jpki_card):
            want = {"auth-only": "008F00", "no-certs": "000000", "pin-blocked": "8F8F00"}
            assert jpki_card.client.certificate_presence().hex().upper() == want[jpki_card.profile]


        @pytest.mark.parametrize("jpki_card", [{"profile": "expired", "date": "2031-01-01"}],
                                 indirect=True)
        def test_indirect_dict(jpki_card):
            assert jpki_card.profile == "expired"
            assert jpki_card.date == datetime.date(2031, 1, 1)
    '''))
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=9)


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent('''
        import pytest

        @pytest.mark.jpki_profile("teenager")
        def test_it(jpki_card):
            pass
    '''))
    result = pytester.runpytest("-q")
    result.stdout.fnmatch_lines(["*unknown jpki profile 'teenager'; profiles: default, *"])
    assert result.ret != 0


def test_jpki_ca_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(textwrap.dedent('''
        from jpki_sim import issuer


        def test_issue_from_own_ca(jpki_ca, tmp_path):
            assert (jpki_ca.directory / "ca.json").exists()
            state = issuer.issue_card(issuer.default_identity(), ca=jpki_ca)
            assert state.ca_dir == str(jpki_ca.directory)
            assert [r.serial for r in jpki_ca.records()] == [state.auth.serial, state.sign.serial]
    '''))
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_jpki_reader_skips_without_vpcd(pytester: pytest.Pytester,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from jpki_sim.transport import pcscd

    monkeypatch.setattr(pcscd, "vpcd_driver", lambda: None)
    monkeypatch.delenv("JPKI_SIM_REQUIRE_PCSC", raising=False)
    pytester.makepyfile("def test_it(jpki_reader):\n    pass\n")
    result = pytester.runpytest("-q", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*jpki_reader needs the vpcd driver (apt-get install "
                                 "vsmartcard-vpcd)*"])
    monkeypatch.setenv("JPKI_SIM_REQUIRE_PCSC", "1")
    result = pytester.runpytest("-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*JPKI_SIM_REQUIRE_PCSC is set, so this is a failure*"])


def test_plugin_import_is_cheap() -> None:
    code = ("import sys, jpki_sim.testing.plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cryptography', 'smartcard', 'rich', 'hypothesis', 'construct', 'asn1crypto') "
            "or m.startswith('jpki_sim.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "['jpki_sim.testing', 'jpki_sim.testing.plugin']"


@pytest.mark.pcsc
def test_readme_example_with_jpki_reader(pytester: pytest.Pytester, pcscd_session: object,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's worked example: a 10-line test of a small PC/SC program, and it runs."""
    from jpki_sim.transport.pcscd import READER_LOCK_HELD_ENV as LOCK_HELD_ENV

    monkeypatch.setenv(LOCK_HELD_ENV, "1")  # this session holds the PC/SC lock already
    pytester.makefile(".py", read_label=READER_PROGRAM)
    pytester.makepyfile(test_reader=READER_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_readme_shows_the_tested_example() -> None:
    """The README's testing section shows exactly the program and test run above."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    doc = readme.split("## Testing your own reader software", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    assert blocks[0].strip() == READER_PROGRAM.strip()
    assert blocks[1].strip() == READER_TEST.strip()
    assert len(READER_TEST.strip().splitlines()) <= 10


def test_sim_card_takes_any_registered_profile(pytester: pytest.Pytester) -> None:
    import generic_card

    pytester.syspathinsert(str(Path(generic_card.__file__).parent))
    pytester.makeconftest("import generic_card\nfrom jpki_sim.profiles import registry\n"
                          "registry.register(generic_card.PROFILE, replace=True)\n")
    pytester.makepyfile(textwrap.dedent('''
        import pytest


        def test_generic_by_option(sim_card):
            assert sim_card.profile.name == "generic"
            assert sim_card.transmit("00A4040C06F06A73696D01") == bytes.fromhex("9000")
            assert sim_card.client.pin_status("user") == 3


        @pytest.mark.sim_card(profile="generic", preset="blocked")
        def test_generic_blocked(sim_card):
            assert sim_card.client.pin_status("user") == 0


        @pytest.mark.sim_card(profile="jpki")
        def test_jpki_by_marker(sim_card):
            assert sim_card.client.token_label() == "JPKIAPICCTOKEN2"
    '''))
    result = pytester.runpytest("-q", "--jpki-sim-profile", "generic")
    result.assert_outcomes(passed=3)
    result = pytester.runpytest("-q", "--jpki-sim-profile", "nope")
    result.stdout.fnmatch_lines(["*sim_card: no card profile 'nope'*"])
    assert result.ret != 0
