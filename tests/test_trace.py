"""The JSON Lines trace format: writer, reader, redaction, GP and scriptor forms, CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from jpki_sim import trace
from jpki_sim.cli import main
from jpki_sim.trace import redact_command
from jpki_sim.trace.model import Comment, PowerOff, Reset, Trace, TraceError, Xfer
from jpki_sim.trace.writer import TraceWriter

ATR = bytes.fromhex("3BE000FF8131FE4514")
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY_1234 = bytes.fromhex("002000800431323334")
CERT_CHUNK = bytes(range(256))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample_trace() -> Trace:
    return Trace(
        card="card.json",
        created="2026-11-21T00:00:00Z",
        pins="redacted",
        events=[
            Reset(0.0, ATR, "cold"),
            Xfer(0.001, 0.0002, SELECT_JPKI, bytes.fromhex("9000")),
            Comment(0.002, "read the auth certificate"),
            Xfer(0.003, 0.004, bytes.fromhex("00B0000000"), CERT_CHUNK + b"\x90\x00"),
            Xfer(0.01, 0.001, bytes.fromhex("00200080042A2A2A2A"),
                 bytes.fromhex("63C2"), redacted=True),
            Xfer(0.02, 0.0, bytes.fromhex("00200080"), bytes.fromhex("63C2")),
            Xfer(0.03, 0.0, bytes.fromhex("802A00800300112200"), bytes.fromhex("6982")),
            PowerOff(0.04),
        ],
    )


# ---------------------------------------------------------------- writer and reader


def test_writer_header_and_events_are_json_lines() -> None:
    out = io.StringIO()
    clock = FakeClock()
    w = TraceWriter(out, card="test card", clock=clock, created="2026-11-21T00:00:00Z")
    w.reset(ATR, "cold")
    clock.now = 100.5
    w.xfer(SELECT_JPKI, bytes.fromhex("9000"), started=100.25, duration=0.0003)
    w.power_off()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0] == {"format": "jpki-sim-trace", "version": 1, "card": "test card",
                        "created": "2026-11-21T00:00:00Z", "pins": "redacted"}
    assert lines[1] == {"event": "reset", "t": 0.0, "atr": ATR.hex().upper(), "kind": "cold"}
    assert lines[2] == {"event": "xfer", "t": 0.25, "duration": 0.0003,
                        "command": SELECT_JPKI.hex().upper(), "response": "9000", "sw": "9000"}
    assert lines[3] == {"event": "power-off", "t": 0.5}


def test_writer_redacts_pins_by_default() -> None:
    out = io.StringIO()
    w = TraceWriter(out)
    w.xfer(VERIFY_1234, bytes.fromhex("9000"))
    w.xfer(bytes.fromhex("002401800435363738"), bytes.fromhex("9000"))
    text = out.getvalue()
    assert "31323334" not in text and "35363738" not in text
    events = trace.loads_jsonl(text).xfers
    assert events[0].command == bytes.fromhex("00200080042A2A2A2A")
    assert events[1].command == bytes.fromhex("00240180042A2A2A2A")
    assert all(e.redacted for e in events)


def test_writer_keeps_pins_only_when_asked_and_says_so() -> None:
    out = io.StringIO()
    w = TraceWriter(out, keep_pins=True)
    w.xfer(VERIFY_1234, bytes.fromhex("9000"))
    t = trace.loads_jsonl(out.getvalue())
    assert t.pins == "clear"
    assert t.xfers[0].command == VERIFY_1234 and not t.xfers[0].redacted


def test_writer_to_path_flushes_each_event(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    w = TraceWriter(path, card="x")
    w.xfer(SELECT_JPKI, bytes.fromhex("9000"))
    # readable before close: a crash mid-session keeps the trace
    assert len(trace.load(path).xfers) == 1
    w.close()


@pytest.mark.parametrize(
    ("command", "expected", "redacted"),
    [
        ("002000800431323334", "00200080042A2A2A2A", True),
        ("00200080", "00200080", False),  # a status query carries no PIN
        ("0020009804313233", "00200098042A2A2A", True),  # by SFI
        ("0024018006414243313233", "00240180062A2A2A2A2A2A", True),
        # Lc=4 but 6 bytes follow: malformed, so everything after Lc is masked
        ("002C000004313233343536", "002C000004" + "2A" * 6, True),
        ("8032008004313233", "8032008004" + "2A" * 3, True),  # JICSAP CHANGE KEY, short
        ("0020008000000431323334", "00200080000004" + "2A" * 4, True),  # extended Lc
        ("00200080000004313233", "0020008000" + "2A" * 5, True),  # extended, truncated
        ("00B0000004", "00B0000004", False),
    ],
)
def test_redact_command(command: str, expected: str, redacted: bool) -> None:
    out, done = redact_command(bytes.fromhex(command))
    assert (out.hex().upper(), done) == (expected.upper(), redacted)


def test_redact_trace_marks_events() -> None:
    t = Trace(pins="clear", events=[Xfer(0, 0, VERIFY_1234, bytes.fromhex("63C2"))])
    r = trace.redact(t)
    assert r.pins == "redacted" and r.xfers[0].redacted
    assert r.xfers[0].command.endswith(b"****")


def test_jsonl_round_trip() -> None:
    t = sample_trace()
    again = trace.loads_jsonl(trace.dumps_jsonl(t))
    assert again.events == t.events
    assert (again.card, again.created, again.pins) == (t.card, t.created, t.pins)


def test_reader_keeps_unknown_header_fields_and_skips_unknown_events() -> None:
    text = (
        '{"format": "jpki-sim-trace", "version": 1, "card": "c", "profile": "minor"}\n'
        '{"event": "xfer", "t": 0, "duration": 0, "command": "00B0000004", '
        '"response": "6982", "sw": "6982", "expect_sw": "6982"}\n'
        '{"event": "setup", "t": 0, "date": "2030-01-01"}\n'
    )
    t = trace.loads_jsonl(text)
    assert t.extra == {"profile": "minor"}
    assert len(t.events) == 1 and t.xfers[0].sw == 0x6982
    assert '"profile": "minor"' in trace.dumps_jsonl(t)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty trace"),
        ("not json\n", "line 1: not JSON"),
        ('{"format": "other"}\n', "not a jpki-sim trace"),
        ('{"format": "jpki-sim-trace", "version": 9}\n', "version 9"),
        ('{"format": "jpki-sim-trace", "version": 1}\n{"event": "xfer", "t": 0, '
         '"command": "00", "response": "90"}\n', "line 2: response has no status word"),
        ('{"format": "jpki-sim-trace", "version": 1}\n{"event": "xfer", "t": 0, '
         '"command": "0G", "response": "9000"}\n', "line 2: 'command' is not hex"),
        ('{"format": "jpki-sim-trace", "version": 1}\n{"event": "xfer", "t": -1, '
         '"command": "00", "response": "9000"}\n', "line 2: 't' must be"),
        ('{"format": "jpki-sim-trace", "version": 1}\n{"event": "xfer", "t": 0, '
         '"command": "00", "response": "9000", "sw": "6A82"}\n', "does not match"),
        ('{"format": "jpki-sim-trace", "version": 1}\n[1]\n', "line 2: an event must be"),
    ],
)
def test_reader_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(TraceError) as exc:
        trace.loads_jsonl(text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


# ---------------------------------------------------------------- GP and scriptor


def _exchanges(t: Trace) -> list[tuple[str, bytes, bytes]]:
    out = []
    for e in t.events:
        if isinstance(e, Xfer):
            out.append(("xfer", e.command, e.response))
        elif isinstance(e, Reset):
            out.append(("reset", e.atr, b""))
        elif isinstance(e, Comment):
            out.append(("comment", e.text.encode(), b""))
    return out


def test_gp_round_trip_keeps_exchanges_and_millisecond_durations() -> None:
    t = sample_trace()
    text = trace.dumps_gp(t)
    assert "A>> T=1 (4+0010) 00A4040C 0A D392F000260100000001" in text
    assert "A<< (0000+2) (0ms) 9000" in text
    assert "A<< (0256+2) (4ms) " in text
    back = trace.loads_gp(text)
    assert _exchanges(back) == _exchanges(t)
    assert back.card == "card.json"
    assert [round(x.duration, 3) for x in back.xfers] == [0.0, 0.004, 0.001, 0.0, 0.0]


def test_gp_reads_apdu4j_log_lines() -> None:
    text = (
        "# Using ACS ACR122U PICC Interface 0\n"
        'SCardConnect("ACS ACR122U PICC Interface 0", EXCLUSIVE;*) -> T=1, 3B8F8001\n'
        "A>> T=1 (4+0004) 30300000 04 AABBCCDD\n"
        "A<< (0004+2) (20ms) AABBCCDD 9000\n"
        "A>> T=1 (4+0000) 00B00000 04\n"
        "A<< (0000+2) (1ms) 6982\n"
        'SCardDisconnect("ACS ACR122U PICC Interface 0", true) tx:9/rx:6\n'
    )
    t = trace.loads(text)
    assert t.card == "ACS ACR122U PICC Interface 0"
    assert isinstance(t.events[0], Reset) and t.events[0].atr == bytes.fromhex("3B8F8001")
    assert t.xfers[0].command == bytes.fromhex("3030000004AABBCCDD")
    assert t.xfers[0].response == bytes.fromhex("AABBCCDD9000")
    assert t.xfers[0].duration == 0.02
    assert t.xfers[1].t == pytest.approx(0.02)
    assert isinstance(t.events[-1], PowerOff)


def test_gp_errors() -> None:
    with pytest.raises(TraceError, match="without its command"):
        trace.loads_gp("A<< (0000+2) (1ms) 9000\n")
    with pytest.raises(TraceError, match="command without a response"):
        trace.loads_gp("A>> T=1 (4+0000) 00A40400\n")


def test_scriptor_log_round_trip_with_multiline_responses() -> None:
    t = sample_trace()
    text = trace.dumps_scriptor(t)
    assert "> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01\n< 90 00 : success" in text
    assert "> RESET\n< OK: 3B E0 00 FF 81 31 FE 45 14" in text
    # 258 response bytes: 17 lines, the SW on the last one
    lines = text.splitlines()
    start = lines.index("> 00 B0 00 00 00")
    assert lines[start + 1].startswith("< 00 01 02")
    assert lines[start + 17] == "90 00 : success"
    back = trace.loads_scriptor(text)
    assert _exchanges(back) == _exchanges(t)


def test_scriptor_reads_what_scriptor_prints() -> None:
    # scriptor's own output: banner lines, and 16 bytes per response line
    text = (
        "Using given card reader: Virtual PCD 00 00\n"
        "Using T=1 protocol\n"
        "> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01\n"
        "< 90 00 : Normal processing.\n"
        "> 00 B0 00 00 12\n"
        "< 30 82 06 2B 30 82 05 13 A0 03 02 01 02 02 04 01 \n"
        "02 03 90 00 : Normal processing.\n"
    )
    t = trace.loads(text)
    assert len(t.xfers) == 2
    assert t.xfers[1].response == bytes.fromhex("3082062B30820513A00302010202040102039000")


def test_scriptor_input_form_is_replayable_commands() -> None:
    text = trace.dumps_scriptor_input(sample_trace())
    lines = [x for x in text.splitlines() if not x.startswith("#")]
    assert lines[0] == "reset"
    assert lines[1] == "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01"
    assert "<" not in text and ">" not in text


def test_every_form_round_trips_through_every_other() -> None:
    t = sample_trace()
    for a in ("jsonl", "gp", "scriptor"):
        for b in ("jsonl", "gp", "scriptor"):
            once = trace.loads(trace.dumps(t, a))
            twice = trace.loads(trace.dumps(once, b))
            assert _exchanges(twice) == _exchanges(t), (a, b)


def test_detect_format() -> None:
    assert trace.detect_format('\n{"format": "jpki-sim-trace"}') == "jsonl"
    assert trace.detect_format("# Using x\nA>> T=1 (4+0000) 00A40400\n") == "gp"
    assert trace.detect_format("# a comment\n> 00 A4 04 00\n") == "scriptor"
    with pytest.raises(TraceError, match="cannot tell"):
        trace.detect_format("hello\n")


def test_describe_command_names() -> None:
    assert trace.describe_command(SELECT_JPKI) == "SELECT jpki"
    assert trace.describe_command(bytes.fromhex("00A4020C02000A")) == "SELECT EF 000A"
    assert trace.describe_command(bytes.fromhex("00B0010000")) == "READ BINARY offset 0100 Le 256"
    assert trace.describe_command(bytes.fromhex("00200080")) == "VERIFY (status query)"
    assert trace.describe_command(bytes.fromhex("802A00800100")).startswith(
        "COMPUTE DIGITAL SIGNATURE")
    assert trace.describe_command(b"\x00") == "malformed (1 bytes)"


# ---------------------------------------------------------------- command line


def _write_sample(tmp_path: Path) -> Path:
    path = tmp_path / "s.jsonl"
    path.write_text(trace.dumps_jsonl(sample_trace()))
    return path


def test_cli_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", str(_write_sample(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "SELECT jpki" in out
    assert "63C2 verification failed or PIN status: 2 tries left [tries left: 2]" in out
    assert "6982 security status not satisfied" in out
    assert "(PIN redacted)" in out
    assert "5 exchanges, 3 not 9000" in out


def test_cli_show_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "show", "--json", str(_write_sample(tmp_path))]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "jpki-sim-trace" and len(doc["events"]) == 8


def test_cli_convert_round_trip(tmp_path: Path) -> None:
    src = _write_sample(tmp_path)
    for form in ("gp", "scriptor"):
        mid = tmp_path / f"mid.{form}"
        back = tmp_path / f"back.{form}.jsonl"
        assert main(["trace", "convert", str(src), str(mid), "--to", form]) == 0
        assert main(["trace", "convert", str(mid), str(back), "--to", "jsonl"]) == 0
        assert _exchanges(trace.load(back)) == _exchanges(sample_trace())


def test_cli_convert_redacts_clear_pins_unless_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "clear.gp"
    src.write_text("A>> T=1 (4+0004) 00200080 04 31323334\nA<< (0000+2) (1ms) 9000\n")
    out = tmp_path / "out.jsonl"
    assert main(["trace", "convert", str(src), str(out), "--to", "jsonl"]) == 0
    assert "31323334" not in out.read_text()
    assert trace.load(out).xfers[0].redacted
    assert main(["trace", "convert", str(src), str(out), "--to", "jsonl", "--keep-pins"]) == 0
    assert "WARNING" in capsys.readouterr().err
    assert trace.load(out).xfers[0].command.endswith(b"1234")


def test_cli_bad_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "jpki-sim-trace", "version": 1}\n{"event": "xfer"}\n')
    assert main(["trace", "show", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jpki-sim: error:") and "line 2" in err and "\n" not in err
    assert main(["trace", "show", str(tmp_path / "missing")]) == 2


def test_describe_command_names_malformed_reads_without_raising() -> None:
    from jpki_sim.trace.describe import describe_command

    assert "malformed" in describe_command(bytes.fromhex("00B000000000"))
    assert describe_command(bytes.fromhex("00B0000004")) == "READ BINARY offset 0000 Le 4"
