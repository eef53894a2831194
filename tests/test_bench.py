"""The benchmark's JSON document, and the hot path's promise not to touch the card file.

No timing is asserted here: speed is what ``tools/bench.py`` reports. These
tests check that the benchmark runs (quick mode, as CI does), that its JSON
has the documented shape with consistent statistics, and that read-only APDUs
neither write nor read the card file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jpki_sim.card.store import CardStore
from jpki_sim.iso7816 import apdu as apdu_module
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import MalformedApdu
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from pcsc_harness import PORTS, PcscSession

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "bench.py"

IN_PROCESS = {"select_fid", "select_aid", "read_binary_256", "cert_read", "empty_verify",
              "verify_memory", "verify_file"}
FIGURE_KEYS = {"label", "unit", "median", "p95", "min", "max", "samples", "ops_per_sample",
               "apdus_per_op", "per_s", "apdus_per_s"}


def run_bench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(TOOL), "--quick", "--json", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert isinstance(doc, dict)
    return doc


def assert_figure(fig: Any, samples: int | None = None) -> None:
    assert isinstance(fig, dict) and set(fig) == FIGURE_KEYS, fig
    assert fig["unit"] == "s"
    assert fig["samples"] >= 1 if samples is None else fig["samples"] == samples
    for key in ("median", "p95", "min", "max", "per_s", "apdus_per_s"):
        assert isinstance(fig[key], float) and math.isfinite(fig[key]) and fig[key] > 0, (key, fig)
    # medians and p95 are samples (nearest rank), so they lie within the spread
    assert fig["min"] <= fig["median"] <= fig["p95"] <= fig["max"]
    assert fig["per_s"] == pytest.approx(1 / fig["median"])
    assert fig["apdus_per_s"] == pytest.approx(fig["per_s"] * fig["apdus_per_op"])
    assert fig["ops_per_sample"] >= 1 and fig["apdus_per_op"] >= 1


def assert_common(doc: dict[str, Any], sections: list[str]) -> None:
    assert doc["format"] == "jpki-sim-bench" and doc["version"] == 1
    assert doc["quick"] is True and doc["sections"] == sections
    m = doc["machine"]
    assert m["nproc"] == os.cpu_count()
    assert m["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(m["cpu"], str) and m["cpu"] and isinstance(m["os"], str)
    assert set(m["versions"]) == {"cryptography", "pyscard", "jpki-sim"}
    for row in doc["targets"]:
        assert set(row) == {"name", "target", "measured", "met"}
        assert isinstance(row["met"], bool) and isinstance(row["measured"], float)
    assert doc["total_s"] > 0


def test_quick_json_without_pcsc_has_the_documented_shape() -> None:
    doc = run_bench("--no-pcsc", "--batch", "2", "--runs", "2")
    sections = ["inprocess", "signature", "issuance", "startup", "ocsp"]
    assert_common(doc, sections)
    assert_ocsp(doc["ocsp"], "wrk" if shutil.which("wrk") else "processes")

    inp = doc["inprocess"]
    assert set(inp["commands"]) == IN_PROCESS == set(inp["descriptions"])
    for fig in inp["commands"].values():
        assert_figure(fig, samples=2)
    # OpenSC's read of the auth certificate: SELECT, 4-byte header, then 256-byte chunks
    assert inp["commands"]["cert_read"]["apdus_per_op"] >= 4
    # a right VERIFY on a file-backed card writes twice (try spent, counter restored)
    assert inp["verify_file_writes"] >= 2 * inp["commands"]["verify_file"]["samples"]

    sig = doc["signature"]
    assert_figure(sig["card"])
    assert_figure(sig["bare"])
    assert sig["ratio"] == pytest.approx(sig["card"]["median"] / sig["bare"]["median"])

    iss = doc["issuance"]
    for key in ("issue", "issue_cold", "baseline", "renew"):
        assert_figure(iss[key])
    assert iss["keys_per_card"] == 7 and iss["key_stock_fill"] is not None
    assert iss["ratio"] == pytest.approx(iss["issue"]["median"] / iss["baseline"]["median"])
    assert doc["wholecard"] is None and doc["control"] is None  # --no-pcsc
    batch = iss["batch"]
    assert batch["cards"] == 2 and batch["workers"] == os.cpu_count()
    assert_figure(batch["per_card"], samples=2)
    assert batch["cards_per_s"] == pytest.approx(2 / batch["wall_s"])

    st = doc["startup"]
    for key in ("help", "help_no_bytecode_cache", "python"):
        assert_figure(st[key])
    assert st["serve"] is None and "PC/SC" in st["serve_skipped"]
    assert doc["pcsc"] == {"available": False, "skipped": "not requested (--no-pcsc or --only)"}

    names = [t["name"] for t in doc["targets"]]
    assert names == [
        "in-process SELECT-by-FID APDU/s",
        "in-process READ BINARY 256 APDU/s",
        "signature APDU / bare cryptography",
        "issue (every application) / issue before issue 12",
        "jpki-sim --help ms",
        "OCSP requests/s, kept-alive clients: ours / openssl ocsp",
        "OCSP p99 ms at 8 clients",
    ]


def assert_ocsp(oc: dict[str, Any], load: str) -> None:
    assert oc["load"] == load and oc["clients"] == 8 and oc["judged_on"] == "ours_keep_alive"
    for server in ("ours", "ours_keep_alive", "openssl"):
        fig = oc[server]
        assert fig["errors"] == 0 and fig["requests"] > 0, fig
        assert fig["max_ms"] >= fig["p99_ms"] >= fig["p50_ms"] > 0
        assert fig["keep_alive"] is (server != "ours") and isinstance(fig["command"], str)
    # what each server did with a kept-alive request (openssl 3.0 answers HTTP/1.0, closes)
    assert oc["ours_keeps_alive"] is True and isinstance(oc["openssl_keeps_alive"], bool)
    ref = oc["openssl"]["per_s"]
    if load == "wrk":
        assert oc["rounds"] == 1 and oc["seconds"] == 2 and oc["load_command"].startswith("wrk")
        for server in ("ours", "ours_keep_alive", "openssl"):
            (only,) = oc[server]["rounds"]
            assert only["per_s"] == oc[server]["per_s"] and only["p99_ms"] == oc[server]["p99_ms"]
            assert oc[server]["p99_worst_ms"] == only["p99_ms"]
    assert oc["ratio"] == pytest.approx(oc["ours_keep_alive"]["per_s"] / ref)
    assert oc["ratio_new_connection"] == pytest.approx(oc["ours"]["per_s"] / ref)


def test_quick_ocsp_with_client_processes() -> None:
    doc = run_bench("--only", "ocsp", "--ocsp-load", "processes")
    assert_common(doc, ["ocsp"])
    assert_ocsp(doc["ocsp"], "processes")
    assert doc["ocsp"]["per_client"] == 150


def test_cli_bench_runs_one_section_and_prints_a_table() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "bench", "--quick", "--only", "inprocess",
         "--runs", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "in-process" in out and "select_fid" in out and "targets (issues 7, 14)" in out
    assert "PC/SC part skipped" in out


def test_cli_bench_refuses_an_unknown_section_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "bench", "--only", "warp"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown section 'warp'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.pcsc
@pytest.mark.parametrize("bare", [False, True], ids=["under-control", "bare"])
def test_quick_json_through_pcscd_and_vpcd(pcscd_session: PcscSession, bare: bool) -> None:
    # this test holds the PC/SC lock through the fixture; the benchmark must not wait for it.
    # Slot 0 may carry the session's test card, so both cards take slot 1 in turn.
    env = dict(os.environ, JPKI_SIM_PCSC_LOCK_HELD="1")
    sections = ["pcsc"] if bare else ["pcsc", "startup"]
    doc = run_bench("--only", ",".join(sections), "--runs", "2", "--vpcd-port", str(PORTS[1]),
                    *(["--pcsc-bare"] if bare else []), env=env)
    assert_common(doc, sections)
    pcsc = doc["pcsc"]
    assert pcsc["available"] is True and pcsc["skipped"] is None
    # served as serve serves it (under control, the control service running), or bare
    assert pcsc["control"] is (not bare)
    assert ("bare" in pcsc["hosting"]) is bare
    assert pcsc["same_slot"] is True and "9000" in pcsc["ratio_method"]
    assert pcsc["card_cpu"] == expected_card_cpu()
    assert isinstance(pcsc["hosting"], str) and isinstance(pcsc["started_pcscd"], bool)
    reader = pcscd_session.reader_for_port(PORTS[1])
    assert pcsc["readers"] == {"card": reader, "null_card": reader}
    assert_figure(pcsc["null_card"], samples=2)
    commands = IN_PROCESS - {"verify_file"}
    assert set(pcsc["commands"]) == commands == set(pcsc["ratios"]) == set(pcsc["ratios_vs_9000"])
    for name, fig in pcsc["commands"].items():
        assert_figure(fig, samples=2)
        # one slot: no paired samples, so the ratio is that of the medians
        assert pcsc["ratios"][name] == pcsc["ratios_vs_9000"][name] == pytest.approx(
            fig["apdus_per_s"] / pcsc["null_card"]["per_s"]
        )
    if not bare:
        assert_figure(doc["startup"]["serve"], samples=1)
    names = [t["name"] for t in doc["targets"]]
    assert [n for n in names if n.startswith("PC/SC")] == [
        f"PC/SC {c} / null card"
        for c in ("select_fid", "select_aid", "read_binary_256", "empty_verify")
    ]


@pytest.mark.pcsc
def test_the_control_layers_cost_through_pcscd(pcscd_session: PcscSession) -> None:
    """The served card against the same card bare, blocks in turn on one slot."""
    from jpki_sim.bench.control_cost import CONTROL_COMMANDS

    env = dict(os.environ, JPKI_SIM_PCSC_LOCK_HELD="1")
    doc = run_bench("--only", "control", "--runs", "4", "--vpcd-port", str(PORTS[1]),
                    env=env)
    assert_common(doc, ["control"])
    ctl = doc["control"]
    assert ctl["available"] is True and ctl["skipped"] is None and ctl["same_slot"] is True
    assert ctl["card_cpu"] == expected_card_cpu() and "bare, served, served, bare" in ctl[
        "ratio_method"]
    assert ctl["rounds"] == 4 and ctl["readers"] == [pcscd_session.reader_for_port(PORTS[1])]
    assert tuple(ctl["commands"]) == CONTROL_COMMANDS
    for name, c in ctl["commands"].items():
        # two blocks of each card, one sample per command per block
        assert_figure(c["served"], samples=2)
        assert_figure(c["bare"], samples=2)
        assert c["ratio"] == pytest.approx(c["served"]["median"] / c["bare"]["median"])
        lo, hi = c["ci95"]
        assert lo <= c["ratio"] <= hi
        assert (name in ctl["measurable_cost"]) is (lo > 1.0)
    [row] = doc["targets"]
    assert row["name"].startswith("PC/SC served / bare card") and row["met"] is (
        not ctl["measurable_cost"])
    assert row["measured"] == max(c["ratio"] for c in ctl["commands"].values())


def test_the_control_cost_interval_tells_a_cost_from_noise() -> None:
    """The verdict's statistics: a steady 3 % cost is measurable, noise around 1 is not."""
    import random

    from jpki_sim.bench.control_cost import blocks_ratio, paired_ratio

    rnd = random.Random(7)
    noise = [1 + d for e in (rnd.gauss(0, 0.05) for _ in range(100)) for d in (e, -e)]
    steady = [1.03 + rnd.gauss(0, 0.01) for _ in range(200)]
    fig = paired_ratio(noise)
    assert fig["ci95"][0] <= 1.0 <= fig["ci95"][1]
    assert paired_ratio(steady)["ci95"][0] > 1.0
    assert paired_ratio(noise) == fig  # a fixed seed: the same samples, the same interval
    bare = [80e-6 * (1 + rnd.gauss(0, 0.02)) for _ in range(100)]
    served = [x * 1.04 for x in bare]
    rnd.shuffle(served)
    slow = blocks_ratio(served, bare)
    assert slow["ratio"] == pytest.approx(1.04, abs=1e-9) and slow["ci95"][0] > 1.0
    same = blocks_ratio(bare, rnd.sample(bare, len(bare)))  # the same times, shuffled
    assert same["ratio"] == 1.0 and same["ci95"][0] <= 1.0 <= same["ci95"][1]


def expected_card_cpu() -> int | None:
    """Both hosted cards on the last CPU the benchmark may use; not pinned on one."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) >= 2 else None


@pytest.mark.pcsc
def test_the_whole_card_read_through_pcscd(pcscd_session: PcscSession) -> None:
    """The whole-card read of a thorough client against the null card of the same lengths."""
    env = dict(os.environ, JPKI_SIM_PCSC_LOCK_HELD="1")
    doc = run_bench("--only", "wholecard", "--runs", "2", "--vpcd-port", str(PORTS[1]),
                    env=env)
    assert_common(doc, ["wholecard"])
    whole = doc["wholecard"]
    assert whole["available"] is True and whole["same_slot"] is True
    assert whole["card_cpu"] == expected_card_cpu()
    for part in (whole, whole["with_challenge"]):
        assert_figure(part["card"], samples=2)
        assert_figure(part["null_card"], samples=2)
        assert part["ratio"] == pytest.approx(part["null_card"]["median"]
                                              / part["card"]["median"])
    # every application, every EF the PIN and 照合番号A open: a hundred APDUs and more
    assert whole["apdus"] > 90 and whole["bytes_answered"] > 10_000
    assert whole["commands"]["VERIFY"] >= 4 and "COMPUTE DIGITAL SIGNATURE" not in whole[
        "commands"]
    assert whole["with_challenge"]["commands"]["COMPUTE DIGITAL SIGNATURE"] == 1
    names = [t["name"] for t in doc["targets"]]
    assert names == ["PC/SC whole-card read / null card"]


# ---------------------------------------------------------------- the hot path and the card file


def read_only_apdus() -> list[tuple[str, bytes, bytes]]:
    """(what, command, expected status word): nothing here may change the card's state."""
    sel_aid = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.JPKI_AID
    sel_helper = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.HELPER_AID
    sel_common = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.COMMON_AID
    sel_juki = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.JUKI_AID
    sel_manager = bytes((0x00, 0xA4, 0x04, 0x0C, 0x07)) + jpki.CARD_MANAGER_AID
    sel_surface = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.SURFACE_AID

    def sel_ef(fid: int) -> bytes:
        return bytes.fromhex("00A4020C02") + fid.to_bytes(2, "big")

    return [
        ("SELECT unknown AID", bytes.fromhex("00A4040C05A000000001"), b"\x6a\x82"),
        ("SELECT EF before any AP", sel_ef(jpki.EF_AUTH_CERT), b"\x6a\x82"),
        ("SELECT JPKI AP", sel_aid, b"\x90\x00"),
        ("SELECT unknown EF", sel_ef(0x0099), b"\x6a\x82"),
        ("SELECT auth cert", sel_ef(jpki.EF_AUTH_CERT), b"\x90\x00"),
        ("READ BINARY header", bytes.fromhex("00B0000004"), b"\x90\x00"),
        ("READ BINARY 256", bytes.fromhex("00B0010000"), b"\x90\x00"),
        ("READ BINARY past the end", bytes.fromhex("00B07F0001"), b"\x6b\x00"),
        ("READ BINARY short EF 0B", bytes.fromhex("00B08B0000"), b"\x90\x00"),
        ("SELECT sign cert", sel_ef(jpki.EF_SIGN_CERT), b"\x90\x00"),
        ("READ BINARY sign cert without PIN", bytes.fromhex("00B0000004"), b"\x69\x82"),
        ("SELECT auth PIN", sel_ef(jpki.EF_AUTH_PIN), b"\x90\x00"),
        ("empty VERIFY auth PIN", bytes.fromhex("00200080"), b"\x63\xc3"),
        ("SELECT sign PIN", sel_ef(jpki.EF_SIGN_PIN), b"\x90\x00"),
        ("empty VERIFY sign PIN", bytes.fromhex("00200080"), b"\x63\xc5"),
        ("SELECT sign key", sel_ef(jpki.EF_SIGN_KEY), b"\x90\x00"),
        ("sign without PIN", bytes.fromhex("802A008020") + bytes(32), b"\x69\x82"),
        ("unknown INS", bytes.fromhex("00EE0000"), b"\x6d\x00"),
        ("malformed APDU", bytes.fromhex("00B000"), b"\x67\x00"),
        ("SELECT helper AP", sel_helper, b"\x90\x00"),
        ("SELECT helper PIN", sel_ef(jpki.EF_HELPER_PIN), b"\x90\x00"),
        ("empty VERIFY helper PIN", bytes.fromhex("00200080"), b"\x63\xc3"),
        ("GET DATA of an MF object inside an AP", bytes.fromhex("00CA00F000"), b"\x6a\x88"),
        ("GET CHALLENGE", bytes.fromhex("0084000010"), b"\x90\x00"),
        ("SELECT common AP", sel_common, b"\x90\x00"),
        ("READ RECORD card info", bytes.fromhex("00B2010C00"), b"\x90\x00"),
        ("INTERNAL AUTHENTICATE 0019", bytes.fromhex("0088009910") + bytes(16) + b"\x00",
         b"\x90\x00"),
        ("SELECT juki AP", sel_juki, b"\x90\x00"),
        ("SELECT juki PIN", sel_ef(jpki.EF_JUKI_PIN), b"\x90\x00"),
        ("empty VERIFY juki PIN", bytes.fromhex("00200080"), b"\x63\xc3"),
        ("SELECT card manager", sel_manager, b"\x90\x00"),
        ("GET DATA F8 at the MF", bytes.fromhex("00CA00F8000000"), b"\x90\x00"),
        ("GET DATA contact ATR", bytes.fromhex("00CA5F5100"), b"\x90\x00"),
        ("SELECT surface AP", sel_surface, b"\x90\x00"),
        ("READ BINARY surface EF 0004 by SFI", bytes.fromhex("00B0840000"), b"\x90\x00"),
        ("READ BINARY age record unopened", bytes.fromhex("00B0810000"), b"\x69\x82"),
        ("SELECT 照合番号B", sel_ef(jpki.EF_SURFACE_PIN_B), b"\x90\x00"),
        ("empty VERIFY 照合番号B", bytes.fromhex("00200080"), b"\x63\xc3"),
        ("the surface key signs", bytes.fromhex("802A000033")
         + bytes.fromhex("3031300D060960864801650304020105000420") + bytes(32) + b"\x00",
         b"\x90\x00"),
    ]


def file_fingerprint(path: Path) -> tuple[int, int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size, path.read_bytes()


def test_read_only_apdus_never_write_the_card_file(fresh_store: CardStore) -> None:
    assert fresh_store.path is not None
    path = fresh_store.path
    card = build_card(fresh_store)
    card.power_on()
    before = file_fingerprint(path)
    writes = fresh_store.writes
    for _round in range(3):
        for what, apdu, sw in read_only_apdus():
            resp = card.process(apdu)
            assert resp[-2:] == sw, (what, resp.hex())
        card.power_off()
        card.power_on()
    assert fresh_store.writes == writes
    assert file_fingerprint(path) == before
    assert not fresh_store.changed_on_disk()
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_the_write_counter_sees_pin_changes(fresh_store: CardStore) -> None:
    """The control for the test above: an APDU that changes state does reach the file."""
    assert fresh_store.path is not None
    path = fresh_store.path
    card = build_card(fresh_store)
    card.power_on()
    sel_aid = bytes((0x00, 0xA4, 0x04, 0x0C, 0x0A)) + jpki.JPKI_AID
    assert card.process(sel_aid) == b"\x90\x00"
    assert card.process(bytes.fromhex("00A4020C020018")) == b"\x90\x00"
    before = file_fingerprint(path)
    assert card.process(bytes.fromhex("0020008004") + b"9999") == b"\x63\xc2"
    assert fresh_store.writes == 1  # the spent try, saved before the comparison
    assert file_fingerprint(path) != before
    assert b'"tries_left": 2' in path.read_bytes()


def test_read_only_apdus_do_not_read_the_card_file(fresh_store: CardStore) -> None:
    """The card serves from memory: with its file gone, reads still answer the same."""
    assert fresh_store.path is not None
    card = build_card(fresh_store)
    card.power_on()
    def answers() -> list[bytes]:
        out = []
        for what, apdu, _sw in read_only_apdus():
            resp = card.process(apdu)
            # a challenge is new each time: its length and status word stay
            out.append(len(resp).to_bytes(2, "big") + resp[-2:] if what == "GET CHALLENGE"
                       else resp)
        return out

    with_file = answers()
    fresh_store.path.unlink()
    card.power_off()
    card.power_on()
    without_file = answers()
    assert without_file == with_file
    assert not fresh_store.path.exists()


def test_parse_memo_gives_equal_immutable_apdus_and_keeps_no_pins() -> None:
    select = bytes.fromhex("00A4020C02000A")
    first = CommandApdu.parse(select)
    again = CommandApdu.parse(bytes(bytearray(select)))  # an equal, distinct bytes object
    assert first == again == CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a")
    assert hash(first) == hash(CommandApdu(0x00, 0xA4, 0x02, 0x0C, b"\x00\x0a"))
    with pytest.raises(AttributeError):
        first.p1 = 4  # type: ignore[misc]  # shared between callers, so it must stay frozen
    assert CommandApdu.parse(bytearray(select)) == first  # unhashable input still parses
    for pin_apdu in (
        bytes.fromhex("0020008004") + b"1234",  # VERIFY
        bytes.fromhex("0024018004") + b"4321",  # CHANGE REFERENCE DATA
        bytes.fromhex("002C008004") + b"1234",  # RESET RETRY COUNTER
    ):
        parsed = CommandApdu.parse(pin_apdu)
        assert parsed.data in (b"1234", b"4321")
        assert pin_apdu not in apdu_module._PARSED
    empty_verify = bytes.fromhex("00200080")
    CommandApdu.parse(empty_verify)
    assert empty_verify in apdu_module._PARSED  # no PIN in it: kept
    with pytest.raises(MalformedApdu, match="Lc=2"):
        CommandApdu.parse(bytes.fromhex("00A4020C02AA"))  # malformed: still refused


def test_parse_memo_is_bounded() -> None:
    for i in range(3 * apdu_module._PARSED_MAX):
        CommandApdu.parse(bytes((0x00, 0xB0, i >> 8 & 0x7F, i & 0xFF, 0x00)))
    assert 0 < len(apdu_module._PARSED) <= apdu_module._PARSED_MAX
