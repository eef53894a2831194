"""The shell's interpreter without a terminal: APDU forms, expectations, malformed input,
completion, help, admin verbs, auto mode and traces."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.shell import CardTarget, ExpectationFailed, QuitShell, Shell, ShellError
from jpki_sim.shell.apdu_text import ApduTextError, parse_apdu_text, sw_matches
from jpki_sim.trace.formats import load
from jpki_sim.trace.writer import TraceWriter

CARD = Path(__file__).parent / "shell_scripts" / "card.json"


@pytest.fixture
def card_path(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    shutil.copyfile(CARD, path)
    return path


@pytest.fixture
def shell(card_path: Path) -> Shell:
    return Shell(CardTarget.open_file(str(card_path)), io.StringIO())


def output(shell: Shell) -> str:
    out = shell.out
    assert isinstance(out, io.StringIO)
    text = out.getvalue()
    out.seek(0)
    out.truncate()
    return text


# ---------------------------------------------------------------- APDU text forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00A4040C0AD392F000260100000001", "00A4040C0AD392F000260100000001"),
        ("00 a4 04 0c 0a d3 92 f0 00 26 01 00 00 00 01", "00A4040C0AD392F000260100000001"),
        ("00:A4:02:0C:02:00:0A", "00A4020C02000A"),
        ("A4040C:D392F000260100000001", "00A4040C0AD392F000260100000001"),
        ("00A4040C:D392F000260100000001", "00A4040C0AD392F000260100000001"),
        ("B0/04", "00B0000004"),
        ("B0 0100/00", "00B0010000"),
        ("80 2A:0102/00", "802A0000020102" + "00"),
        ("802A0080:" + "00" * 51 + "/00", "802A008033" + "00" * 51 + "00"),
        ('200080:"1234"', "002000800431323334"),
        ("20 0080", "00200080"),
        ("B0", "00B00000"),
        ("B0/0000", "00B00000000000"),
        ("CA5F51/00", "00CA5F5100"),
        ("0xB0/04", "00B0000004"),
    ],
)
def test_apdu_forms(text: str, expected: str) -> None:
    assert parse_apdu_text(text).hex().upper() == expected


def test_short_form_with_long_data_goes_extended() -> None:
    raw = parse_apdu_text("D6:" + "AB" * 300)
    assert raw[:7] == bytes.fromhex("00D60000") + b"\x00\x01\x2c" and len(raw) == 307


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("00A4040", "odd number of hex digits"),
        ("00A4040C05D392", "does not fit"),
        ("ZZ", "not hex"),
        ("0102030405/04", "short form header of 5 bytes"),
        ("B0/010203", "Le after '/'"),
        ("A4:", "no data after"),
        ('20:"１２"', "ASCII"),
    ],
)
def test_apdu_text_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ApduTextError) as exc:
        parse_apdu_text(text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_raw_sends_malformed_bytes() -> None:
    assert parse_apdu_text("00A4040C05D392", raw=True) == bytes.fromhex("00A4040C05D392")


@pytest.mark.parametrize(
    ("pattern", "sw", "ok"),
    [
        ("9000", 0x9000, True),
        ("63C?", 0x63C2, True),
        ("63c?", 0x63C0, True),
        ("63C?", 0x6984, False),
        ("61??", 0x6110, True),
        ("9000|61??", 0x6100, True),
        ("9000,6982", 0x6982, True),
        ("6A8x", 0x6A82, True),
        ("6A8?", 0x6B00, False),
    ],
)
def test_sw_patterns(pattern: str, sw: int, ok: bool) -> None:
    assert sw_matches(pattern, sw) is ok


def test_bad_sw_pattern() -> None:
    with pytest.raises(ApduTextError, match="4 hex digits"):
        sw_matches("900", 0x9000)


# ---------------------------------------------------------------- malformed input at the prompt


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("00A4040", "odd number of hex digits"),
        ("00A4040C05D392", "does not fit"),
        ("frobnicate", "unknown command 'frobnicate'"),
        ("select", "the following arguments are required"),
        ("read-cert root", "invalid choice"),
        ("verify auth 1234 extra", "unrecognized arguments"),
        ("apdu", "no APDU given"),
        ("apdu 00B0000004 --expect-sw 90", "4 hex digits"),
        ("apdu 00B0000004 --bogus", "unknown option --bogus"),
        ("read-cert auth --expect-data (", "bad expectation"),
        ('echo "unclosed', "cannot read the line"),
        ("select 12345", "not an application"),
        ("read-binary 0 300", "length must be 1..256"),
        ("clock set 2026-13-01", "not a YYYY-MM-DD date"),
        ("change-pin auth 12", "exactly 4 digits"),
        ("sign --scheme 9 x", "invalid choice"),
    ],
)
def test_malformed_input_one_line_and_the_shell_goes_on(
    shell: Shell, line: str, message: str
) -> None:
    assert shell.run_line(line) is True
    text = output(shell)
    assert text.startswith("error: ") and message in text, text
    assert text.count("\n") == 1, text
    # and the shell still works
    assert shell.run_line("select jpki")
    assert "selected application jpki" in output(shell)


def test_unknown_verb_raises_shell_error_for_scripts(shell: Shell) -> None:
    with pytest.raises(ShellError):
        shell.execute("nope")


def test_comments_and_blank_lines_do_nothing(shell: Shell) -> None:
    assert shell.execute("# a comment") is None
    assert shell.execute("   ") is None
    assert output(shell) == ""


def test_exit_and_quit(shell: Shell) -> None:
    with pytest.raises(QuitShell):
        shell.execute("exit")
    assert shell.run_line("quit") is False


# ---------------------------------------------------------------- expectations


def test_expectations_on_apdu_and_verbs(shell: Shell) -> None:
    shell.execute("select jpki --expect-sw 9000")
    shell.execute("00A4020C02000A --expect-sw 9000")
    out = shell.execute("B0/04 --expect-data ^3082")
    assert out is not None and out.sw == 0x9000 and out.text.startswith("3082")
    with pytest.raises(ExpectationFailed, match="expected SW 6982, got 9000"):
        shell.execute("B0/04 --expect-sw 6982")
    with pytest.raises(ExpectationFailed, match="expected data matching"):
        shell.execute("read-cert auth --expect-data CN=NOBODY")
    # a verb that fails with a card error is checked against that status word
    shell.execute("read-cert sign --expect-sw 6982")
    with pytest.raises(ExpectationFailed, match="got 6982"):
        shell.execute("read-cert sign --expect-sw 9000")
    with pytest.raises(ExpectationFailed, match="no APDU was exchanged"):
        shell.execute("clock --expect-sw 9000")


def test_failed_expectation_interactive_prints_and_goes_on(shell: Shell) -> None:
    assert shell.run_line("select jpki --expect-sw 6A82")
    assert "FAILED: expected SW 6A82, got 9000" in output(shell)


def test_script_stops_at_first_failure(shell: Shell) -> None:
    code = shell.run_script(["select jpki", "pin-status auth --expect-sw 63C0", "echo later"],
                            source="t.txt")
    text = output(shell)
    assert code == 1
    assert "FAILED at t.txt:2: expected SW 63C0, got 63C3" in text and "later" not in text


# ---------------------------------------------------------------- verbs


def test_wrong_pin_shows_tries_left_then_blocked(shell: Shell) -> None:
    for left in (2, 1):
        shell.run_line("verify auth 0000")
        word = "try" if left == 1 else "tries"
        assert f"wrong PIN, 63C{left}: {left} {word} left" in output(shell)
    shell.run_line("verify auth 0000")
    assert "63C0: the PIN is blocked (tries left: 0)" in output(shell)
    shell.run_line("verify auth 1234")
    assert "6984: the PIN is blocked" in output(shell)
    shell.run_line("00200080")
    assert "63C0 verification failed, no tries left (blocked)  [tries left: 0]" in output(shell)


def test_prompt_shows_card_application_and_verified_pins(shell: Shell) -> None:
    assert shell.prompt() == "card.json:-> "
    shell.execute("verify auth 1234")
    assert shell.prompt() == "card.json:jpki[auth]> "
    shell.execute("verify sign ABC123")
    assert shell.prompt() == "card.json:jpki[auth,sign]> "
    shell.execute("reset")
    assert shell.prompt() == "card.json:-> "
    shell.execute("power off")
    assert shell.prompt() == "card.json:(off)> "


def test_powered_off_card_refuses_card_commands(shell: Shell) -> None:
    shell.execute("power off")
    with pytest.raises(ShellError, match="powered off"):
        shell.execute("select jpki")
    shell.execute("power on")
    shell.execute("select jpki --expect-sw 9000")


def test_sign_file_and_save(shell: Shell, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"a document")
    sig = tmp_path / "doc.sig"
    shell.execute("verify auth 1234")
    out = shell.execute(f"sign {doc} --out {sig}")
    text = output(shell)
    assert f"signing file {doc} (10 bytes)" in text
    assert "signature verifies with the auth certificate" in text
    assert out is not None and out.sw == 0x9000
    assert sig.read_bytes().hex().upper() == out.text and len(sig.read_bytes()) == 256


@pytest.mark.parametrize("scheme", [0, 1, 2, 3, 4, 5])
def test_sign_every_scheme_verifies(shell: Shell, scheme: int) -> None:
    shell.execute("verify auth 1234")
    shell.execute(f"sign --scheme {scheme} 'some text' --expect-sw 9000")
    assert "signature verifies with the auth certificate" in output(shell)


def test_read_cert_saves_pem(shell: Shell, tmp_path: Path) -> None:
    from cryptography import x509

    pem = tmp_path / "auth.pem"
    shell.execute(f"read-cert auth --out {pem} --pem")
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    assert cert.subject.rfc4514_string().startswith("CN=")


def test_read_cert_flags_against_the_card_clock(shell: Shell) -> None:
    shell.execute("clock set 2031-01-01")
    shell.execute("read-cert auth")
    assert "EXPIRED (card clock 2031-01-01)" in output(shell)
    shell.execute("clock now")
    assert "(machine clock)" in output(shell)


def test_select_forms(shell: Shell) -> None:
    shell.execute("select auth-cert")
    assert shell.client.view.application_name == "jpki" and shell.client.view.ef == 0x000A
    shell.execute("select my-number")
    assert shell.client.view.application_name == "helper" and shell.client.view.ef == 0x0001
    shell.execute("select D392F000260100000001")
    assert shell.client.view.application_name == "jpki"
    shell.execute("select 001B")
    assert shell.client.view.ef == 0x001B
    shell.execute("select A000000001 --expect-sw 6A82")
    assert shell.client.view.application_name == "jpki"  # a refused SELECT changes nothing


def test_change_pin_then_verify_with_new(shell: Shell) -> None:
    shell.execute("change-pin helper 1234 4321 --expect-sw 9000")
    shell.execute("reset")
    shell.execute("verify helper 4321 --expect-sw 9000")
    shell.execute("my-number --expect-data ^012345678903$")


def test_admin_pin_verbs_change_the_card_file(card_path: Path) -> None:
    from jpki_sim.profiles.jpki.state import load as load_state

    sh = Shell(CardTarget.open_file(str(card_path)), io.StringIO())
    sh.execute("block-pin sign")
    assert load_state(card_path).pins["sign"].tries_left == 0
    sh.execute("reset-pin sign NEWPASS1")
    state = load_state(card_path).pins["sign"]
    assert (state.value, state.tries_left) == ("NEWPASS1", 5)


def test_verify_without_pin_in_a_script_is_an_error(shell: Shell) -> None:
    with pytest.raises(ShellError, match="needed"):
        shell.execute("verify auth")


def test_verify_asks_for_a_hidden_pin_interactively(shell: Shell) -> None:
    asked: list[str] = []

    def ask(label: str) -> str:
        asked.append(label)
        return "1234"

    shell.ask_secret = ask
    shell.execute("verify auth --expect-sw 9000")
    assert asked == ["auth PIN: "]


def test_verbs_echo_pins_hidden(shell: Shell) -> None:
    shell.execute("verify sign ABC123")
    text = output(shell)
    assert "00200080062A2A2A2A2A2A -> 9000" in text and "414243" not in text


def test_apdus_off_hides_exchanges(shell: Shell) -> None:
    shell.execute("apdus off")
    output(shell)
    shell.execute("select jpki")
    assert output(shell) == "selected application jpki\n"


# ---------------------------------------------------------------- help and completion


def test_every_command_has_help(shell: Shell) -> None:
    shell.execute("help")
    listing = output(shell)
    for name, spec in shell.verbs.commands.items():
        assert f"  {name:<13} {spec.summary}" in listing
        shell.execute(f"help {name}")
        text = output(shell)
        assert text.startswith(f"usage: {name}")
        assert " ".join(str(spec.parser.description).split()) in " ".join(text.split())


def test_completion_of_commands_and_card_names(shell: Shell) -> None:
    assert shell.complete("rea") == ["read-binary", "read-cert", "read-face", "read-helper",
                                     "read-record"]
    assert shell.complete("read-cert ") == ["auth", "sign", "auth-ca", "sign-ca"]
    assert shell.complete("read-cert a") == ["auth", "auth-ca"]
    assert shell.complete("verify ") == ["auth", "sign", "helper", "juki", "common", "helper-a",
                                         "helper-b", "birthdate", "surface-b", "surface-a"]
    assert shell.complete("select jp") == ["jpki"]
    assert shell.complete("select ju") == ["juki", "juki-key-ref", "juki-pin"]
    assert "auth-pin" in shell.complete("select auth-")
    assert shell.complete("select my") == ["my-number", "my-number-image"]
    assert shell.complete("mode ") == ["transparent", "auto"]
    assert shell.complete("sign --k") == ["--key"]
    assert shell.complete("read-cert auth --exp") == ["--expect-sw", "--expect-data"]
    assert shell.complete("nonsense ") == []
    assert shell.complete("verify auth ") == []


def test_completion_of_efs_follows_the_current_application(shell: Shell) -> None:
    shell.execute("select helper")
    names = shell.complete("select ")
    assert names.index("my-number") < names.index("auth-cert")


# ---------------------------------------------------------------- auto mode, a card sending 61xx


class ChattyTransport:
    """A card that answers READ BINARY with 61xx and wrong Le with 6Cxx."""

    name = "chatty"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        if apdu == bytes.fromhex("00B0000000"):
            return bytes.fromhex("6104")
        if apdu == bytes.fromhex("00C0000004"):
            return bytes.fromhex("DEADBEEF9000")
        if apdu == bytes.fromhex("00B0000010"):
            return bytes.fromhex("6C02")
        if apdu == bytes.fromhex("00B0000002"):
            return bytes.fromhex("CAFE9000")
        return bytes.fromhex("6D00")

    def atr(self) -> bytes:
        return jpki.ATR

    def reset(self) -> bytes:
        return jpki.ATR

    def close(self) -> None:
        pass


def test_auto_mode_shows_the_extra_exchanges() -> None:
    t = ChattyTransport()
    sh = Shell(CardTarget(t, "chatty"), io.StringIO())
    out = sh.execute("00B0000000 --expect-data ^DEADBEEF$")
    text = output(sh)
    assert out is not None and out.sw == 0x9000
    assert "> 00 C0 00 00 04  (automatic, GET RESPONSE 04)" in text
    assert "< 61 04  (6104 4 more response bytes available (GET RESPONSE))" in text
    sh.execute("B0/10 --expect-data ^CAFE$")
    assert "> 00 B0 00 00 02  (automatic, READ BINARY offset 0000 Le 2)" in output(sh)


def test_transparent_mode_stops_at_61xx() -> None:
    t = ChattyTransport()
    sh = Shell(CardTarget(t, "chatty"), io.StringIO(), mode="transparent")
    sh.execute("00B0000000 --expect-sw 6104")
    assert t.sent == [bytes.fromhex("00B0000000")]


def test_admin_verbs_refused_on_a_reader() -> None:
    sh = Shell(CardTarget(ChattyTransport(), "chatty"), io.StringIO())
    for line in ("power off", "block-pin auth", "reset-pin auth", "renew"):
        with pytest.raises(ShellError, match="emulated cards only"):
            sh.execute(line)


# ---------------------------------------------------------------- traces


def test_shell_trace_records_resets_power_and_comments(card_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sh = Shell(CardTarget.open_file(str(card_path)), io.StringIO(),
               trace=TraceWriter(path, card="card.json"))
    sh.run_script(["# start", "select jpki", "verify auth 1234", "power off", "power on",
                   "reset", "pin-status auth"])
    sh.close()
    t = load(path)
    kinds = [type(e).__name__ for e in t.events]
    assert kinds[:3] == ["Reset", "Comment", "Xfer"]
    assert "PowerOff" in kinds and kinds.count("Reset") == 3
    verify = [x for x in t.xfers if x.command[1] == 0x20 and len(x.command) > 4][0]
    assert verify.redacted and verify.command.endswith(b"****")


def test_trace_keep_pins(card_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    sh = Shell(CardTarget.open_file(str(card_path)), io.StringIO(),
               trace=TraceWriter(path, keep_pins=True))
    sh.execute("verify auth 1234")
    sh.close()
    assert any(x.command.endswith(b"1234") for x in load(path).xfers)


def test_history_filter_keeps_pins_out(tmp_path: Path) -> None:
    from jpki_sim.shell.repl import SecretFilteringHistory

    hist = SecretFilteringHistory(str(tmp_path / "h"))
    for line in ("select jpki", "verify auth 1234", "change-pin auth 1234 5678",
                 '200080:"1234"', "0020008004313233", "00 20 00 80 04 31 32 33 34", "verify auth",
                 "pin-status"):
        hist.store_string(line)
    kept = (tmp_path / "h").read_text()
    assert "select jpki" in kept and "pin-status" in kept and "verify auth\n" in kept
    assert "1234" not in kept and "31323334" not in kept and "31 32 33 34" not in kept


def test_trace_start_and_stop_in_the_shell(shell: Shell, tmp_path: Path) -> None:
    from jpki_sim.cli import main

    path = tmp_path / "later.jsonl"
    shell.execute("verify auth 1234")
    shell.execute(f"trace start {path}")
    with pytest.raises(ShellError, match="already tracing"):
        shell.execute(f"trace start {path}")
    shell.execute("sign 'traced'")
    shell.execute("trace stop")
    assert "trace stopped: " in output(shell)
    shell.execute("pin-status auth")  # not traced any more
    t = load(path)
    assert t.events[0].__class__.__name__ == "Comment"
    assert "verified PINs auth" in t.events[0].text  # type: ignore[union-attr]
    assert any(x.command[:2] == bytes.fromhex("802A") for x in t.xfers)
    assert not any(x.command == bytes.fromhex("00200080") for x in t.xfers)
    assert main(["trace", "show", str(path)]) == 0
    with pytest.raises(ShellError, match="no trace"):
        shell.execute("trace stop")


def test_whole_ef_read_decodes_the_certificate_and_its_filler(shell: Shell) -> None:
    import hashlib

    from jpki_sim.profiles.jpki.state import load as load_state

    der = load_state(CARD).auth.cert_der  # type: ignore[union-attr]
    shell.execute("select auth-cert")
    output(shell)
    shell.execute("B0 0000/0000 --expect-sw 9000")  # extended Le: the whole EF at once
    text = output(shell)
    assert "(READ BINARY offset 0000 Le 65536)" in text
    assert f"sha256    {hashlib.sha256(der).hexdigest()}" in text
    assert f"+ {2048 - len(der)} bytes of FF filler" in text


def test_tlv_of_the_helper_application_is_decoded(shell: Shell) -> None:
    shell.execute("verify helper 1234")
    shell.execute("select basic-info")
    output(shell)
    shell.execute("B0/00")
    text = output(shell)
    assert "  TLV:" in text and "FF20 5F" in text
    assert 'DF24 08  3139393330333331  "19930331"' in text
    assert '"番号　花子"' in text


def test_completion_of_file_names(
    shell: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "letter.txt").write_text("x")
    (tmp_path / "data.bin").write_bytes(b"x")
    (tmp_path / ".hidden").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert shell.complete("sign d") == ["data.bin", "docs/"]
    assert shell.complete("sign docs/") == ["docs/letter.txt"]
    assert shell.complete("sign --key sign docs/l") == ["docs/letter.txt"]
    assert shell.complete("read-cert auth --out da") == ["data.bin"]
    assert shell.complete("trace start d") == ["data.bin", "docs/"]
    assert ".hidden" not in shell.complete("sign ")
    assert shell.complete("sign nothing-like-this") == []
