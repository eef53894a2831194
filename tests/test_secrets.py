"""No PIN byte in any log, error, history, trace or vector file (issue 11, items 5-7).

Files that may hold PINs or the holder's data (history, traces, vector files,
card files) are created 0600, their data folders 0700.
"""

from __future__ import annotations

import copy
import logging
import os
import stat
from pathlib import Path

import pytest

from jpki_sim import trace
from jpki_sim.card.engine import Card
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import CardState, new_store
from jpki_sim.shell.repl import SecretFilteringHistory, carries_pin, history_path
from jpki_sim.trace.model import Trace, Xfer
from jpki_sim.trace.writer import TraceWriter
from jpki_sim.transport.vpcd import VpcdBridge, redact_pin
from jpki_sim.vectors import recorder

PIN = b"4711"
PIN_HEX = PIN.hex().upper()  # 34373131
SELECT_JPKI = bytes.fromhex("00A4040C0A") + jpki.JPKI_AID


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_pin(text: str) -> None:
    assert PIN_HEX not in text.upper().replace(" ", "")
    assert "4711" not in text


# ---------------------------------------------------------------- item 5: logs


def test_an_internal_error_logs_only_the_header_and_no_traceback(
    jpki_state: CardState, caplog: pytest.LogCaptureFixture
) -> None:
    card = build_card(new_store(copy.deepcopy(jpki_state)))

    def failing(card: Card, apdu: CommandApdu) -> bytes:
        raise OSError(28, f"No space left on device while saving {apdu.data!r}")

    card.instructions[0x20] = failing  # VERIFY fails inside, e.g. on a full disk
    card.power_on()
    caplog.set_level(logging.DEBUG)
    assert card.process(bytes.fromhex("0020008004") + PIN) == b"\x6f\x00"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "00200080" in text and "OSError" in text
    no_pin(text)
    assert all(r.exc_info is None for r in caplog.records)


def test_the_vpcd_bridge_logs_no_pin_when_a_card_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Raising:
        atr = bytes.fromhex("3BE000FF8131FE4514")

        def process(self, apdu: bytes) -> bytes:
            raise ValueError(f"cannot handle {apdu.hex()}")

        def power_on(self) -> bytes:
            return self.atr

        def power_off(self) -> None:
            pass

        def reset(self) -> bytes:
            return self.atr

    bridge = VpcdBridge(Raising(), log_apdus=True)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    reply = bridge._handle(bytes.fromhex("0020008004") + PIN)
    assert reply is not None and reply.endswith(b"\x6f\x00")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ValueError" in text
    no_pin(text)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback: it could quote it


@pytest.mark.parametrize("command", [
    "0020008004" + PIN_HEX,  # VERIFY
    "0C20008004" + PIN_HEX,  # under secure messaging bits
    "8020008004" + PIN_HEX,  # proprietary class (answered 6D00, still a PIN)
    "A020008004" + PIN_HEX,  # any class
    "002100800A" + "5F0407" + PIN_HEX + "000000",  # odd INS: BER-TLV data
    "0024018004" + PIN_HEX,  # CHANGE REFERENCE DATA
    "002C000004" + PIN_HEX,  # RESET RETRY COUNTER
    "0020008009" + PIN_HEX,  # Lc wrong: everything after the header
    "8032008004" + PIN_HEX,  # JICSAP CHANGE KEY
])
def test_every_pin_carrying_command_is_masked(command: str) -> None:
    raw = bytes.fromhex(command)
    no_pin(redact_pin(raw))
    masked, done = trace.redact_command(raw)
    assert done
    no_pin(masked.hex())


# ---------------------------------------------------------------- item 6: shell history


@pytest.mark.parametrize("line", [
    "verify auth 4711",
    "verify sign ABC123 --expect-sw 9000",
    "change-pin auth 1234 4711",
    "change-pin sign NEWPASS1",
    "reset-pin helper 4711",
    "renew 4711 ABC123",
    "apdu --raw 0020008004 34373131",
    "apdu 0020008004 34373131 --expect-sw 9000",
    "0020008004 34373131",
    "0020008004343731",
    "00 20 00 80 04 34 37 31 31",
    "00:20:00:80:04:34:37:31:31",
    '200080:"4711"',
    "0020 0080:34373131",
    "0C2000800434373131",
    "8020008004 34373131",
    "0024018004 34373131",
    "002C000004 34373131",
    "4711",
    "PASSWORD1",
])
def test_history_leaves_out_every_pin_carrying_line(line: str) -> None:
    assert carries_pin(line), line


@pytest.mark.parametrize("line", [
    "select jpki", "read-cert auth", "verify auth", "reset-pin auth", "pin-status all",
    "00A4040C0AD392F000260100000001", "00200080", "apdu 00200080 --expect-sw 63C?",
    "sign hello", "B0/04", "trace start s.jsonl",
])
def test_history_keeps_lines_without_a_pin(line: str) -> None:
    assert not carries_pin(line), line


def test_the_history_file_is_0600_in_a_0700_folder(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "data" / "jpki-sim").mkdir(parents=True, mode=0o755)
    (tmp_path / "data" / "jpki-sim").chmod(0o755)  # an older, looser folder is tightened
    path = history_path()
    assert mode(path.parent) == 0o700 and mode(path) == 0o600
    history = SecretFilteringHistory(str(path))
    history.store_string("select jpki")
    history.store_string("apdu --raw 0020008004 34373131")
    text = path.read_text()
    assert "select jpki" in text
    no_pin(text)
    assert mode(path) == 0o600


# ---------------------------------------------------------------- traces and vector files


def test_traces_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("old")
    path.chmod(0o644)  # an existing file is tightened before the PINs go in
    with TraceWriter(path, keep_pins=True) as w:
        w.xfer(bytes.fromhex("0020008004") + PIN, bytes.fromhex("9000"))
    assert mode(path) == 0o600
    out = tmp_path / "converted.gp"
    trace.write(trace.load(path), out, "gp")
    assert mode(out) == 0o600


def _pin_trace(*exchanges: tuple[str, str]) -> Trace:
    events = [Xfer(0.0, 0.0, SELECT_JPKI, bytes.fromhex("9000"))]
    events += [Xfer(0.0, 0.0, bytes.fromhex(c), bytes.fromhex(r)) for c, r in exchanges]
    return Trace(card="c", created="2026-01-01T00:00:00Z", pins="clear", events=events)


@pytest.mark.parametrize(("command", "response"), [
    ("0020008104" + PIN_HEX, "6A88"),  # VERIFY of an EF that is not a PIN: SW not attributed
    ("0020018004" + PIN_HEX, "6A86"),  # wrong P1
    ("002C000004" + PIN_HEX, "6982"),  # RESET RETRY COUNTER, refused
    ("0024018004" + PIN_HEX, "6982"),  # CHANGE REFERENCE DATA without VERIFY
    ("8020008004" + PIN_HEX, "6D00"),  # VERIFY under a proprietary class
    ("0020008009" + PIN_HEX, "6700"),  # malformed
])
def test_recorded_vectors_never_keep_a_pin_in_clear(command: str, response: str) -> None:
    rec = recorder.record(_pin_trace((command, response)))
    no_pin(rec.dumps())
    kept = recorder.record(_pin_trace((command, response)), keep_pins=True)
    assert PIN_HEX in kept.dumps()  # only when asked


def test_a_recorded_pin_change_is_not_kept_in_clear() -> None:
    rec = recorder.record(_pin_trace(("00A4020C020018", "9000"),
                                     ("0020008004" + b"1234".hex(), "9000"),
                                     ("0024018004" + PIN_HEX, "9000")))
    no_pin(rec.dumps())
    assert "{pin:auth}" in rec.dumps()


def test_recorded_vector_files_are_owner_only(tmp_path: Path) -> None:
    source = tmp_path / "t.jsonl"
    trace.write(_pin_trace(("0020008104" + PIN_HEX, "6A88")), source, "jsonl")
    out = tmp_path / "v.jsonl"
    recorder.record_file(source, out)
    assert mode(out) == 0o600
    no_pin(out.read_text())


def test_apdu_output_hides_pins_unless_asked(jpki_state: CardState, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from jpki_sim.cli import main
    from jpki_sim.profiles.jpki.state import save

    card = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), card)
    argv = ["apdu", "--card", str(card), SELECT_JPKI.hex(), "00A4020C020018",
            "0020008004" + PIN_HEX]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    no_pin(out + err)
    assert main([*argv, "--json"]) == 0
    no_pin(capsys.readouterr().out)
    assert main([*argv, "--show-pins"]) == 0
    assert "34 37 31 31" in capsys.readouterr().out


def test_card_files_are_created_owner_only(jpki_state: CardState, tmp_path: Path) -> None:
    from jpki_sim.card.store import lock_path
    from jpki_sim.profiles.jpki.state import save

    path = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), path)
    assert mode(path) == 0o600 and mode(lock_path(path)) == 0o600


def test_the_data_folder_is_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.default import data_dir, open_default_card

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    pool = issuer.KeyPool.generate(2)
    open_default_card(keys=pool)
    assert mode(data_dir()) == 0o700 and mode(data_dir() / "ca") == 0o700
    assert mode(data_dir() / "card.json") == 0o600
    assert os.stat(data_dir() / "ca" / "auth-ca.key").st_mode & 0o077 == 0
