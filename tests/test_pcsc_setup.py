"""Finding the PC/SC pieces: reader.conf.d parsing, reader names, clear errors without pcscd.

None of these needs a running pcscd: the "not running" cases point pcsc-lite's
client at a socket path where nothing listens (PCSCLITE_CSOCK_NAME).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jpki_sim.transport.pcscd import (
    VpcdReader,
    is_running,
    pcsc_reader_name,
    vpcd_reader_for_port,
    vpcd_readers,
)

DEBIAN_VPCD = """\
FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7B
"""

SERIAL_EXAMPLE = """\
# Gemalto reader with serial communication
#DEVICENAME        /dev/ttySn[:reader]
#FRIENDLYNAME      "GemPCTwin serial"
#LIBPATH           /usr/lib/pcsc/drivers/serial/libccidtwin.so
"""


def conf_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "reader.conf.d"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_debian_vpcd_entry(tmp_path: Path) -> None:
    d = conf_dir(tmp_path, {"vpcd": DEBIAN_VPCD, "libccidtwin": SERIAL_EXAMPLE})
    (reader,) = vpcd_readers(d)
    assert reader == VpcdReader("Virtual PCD", 35963, str(d / "vpcd"))
    assert list(reader.ports) == [35963, 35964]
    assert vpcd_reader_for_port(35964, [reader]) == (reader, 1)
    assert vpcd_reader_for_port(35965, [reader]) is None


def test_several_entries_and_decimal_ports(tmp_path: Path) -> None:
    more = DEBIAN_VPCD.replace("0x8C7B", "40000").replace("Virtual PCD", "More PCD")
    two_in_one = DEBIAN_VPCD + "\n" + DEBIAN_VPCD.replace("0x8C7B", "0x8C7D")
    d = conf_dir(tmp_path, {"a": two_in_one, "b": more})
    readers = vpcd_readers(d)
    assert [(r.friendly_name, r.port) for r in readers] == [
        ("Virtual PCD", 35963), ("Virtual PCD", 35965), ("More PCD", 40000)
    ]


def test_missing_conf_dir_gives_no_readers(tmp_path: Path) -> None:
    assert vpcd_readers(tmp_path / "nope") == []


def test_reader_names_from_live_list() -> None:
    conf = [VpcdReader("Virtual PCD", 35963, "vpcd")]
    live = ["Some USB Reader 00 00", "Virtual PCD 01 00", "Virtual PCD 01 01"]
    assert pcsc_reader_name(35963, live, conf) == "Virtual PCD 01 00"
    assert pcsc_reader_name(35964, live, conf) == "Virtual PCD 01 01"
    assert pcsc_reader_name(35965, live, conf) is None
    # without pcscd's list: the usual name
    assert pcsc_reader_name(35964, None, conf) == "Virtual PCD 00 01"


def test_two_entries_with_one_name_go_by_conf_order() -> None:
    conf = [VpcdReader("Virtual PCD", 35963, "a"), VpcdReader("Virtual PCD", 35965, "b")]
    live = ["Virtual PCD 00 00", "Virtual PCD 00 01", "Virtual PCD 01 00", "Virtual PCD 01 01"]
    assert pcsc_reader_name(35965, live, conf) == "Virtual PCD 01 00"
    assert pcsc_reader_name(35964, live, conf) == "Virtual PCD 00 01"


# ---------------------------------------------------------------- without pcscd


def no_pcscd_env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd.comm"))


def test_is_running_false_on_a_dead_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(tmp_path / "no-pcscd.comm"))
    assert is_running() is False


def test_pcsc_transport_without_pcscd_says_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("smartcard")
    code = (
        "from jpki_sim.transport.pcsc import PcscTransport, PcscError\n"
        "try:\n"
        "    PcscTransport()\n"
        "except PcscError as exc:\n"
        "    print(exc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=no_pcscd_env(tmp_path), timeout=60)
    assert r.stdout.startswith("pcscd is not running: start it with `sudo pcscd -f &`")


def test_apdu_to_a_reader_without_pcscd_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("smartcard")
    r = subprocess.run(
        [sys.executable, "-m", "jpki_sim", "apdu", "--reader", "0",
         "00A4040C0AD392F000260100000001"],
        capture_output=True, text=True, env=no_pcscd_env(tmp_path), timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "jpki-sim: pcscd is not running: start it with `sudo pcscd -f &` or let "
        "`sudo jpki-sim serve` start it (`jpki-sim doctor` checks the setup)"
    ]


def test_doctor_without_pcscd_fails_and_says_how_to_start_it(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "jpki_sim", "doctor", "--json"],
                       capture_output=True, text=True, env=no_pcscd_env(tmp_path), timeout=60)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["ok"] is False
    checks = {c["name"]: c for c in report["checks"]}
    running = checks["pcscd running"]
    assert running["status"] == "fail" and "pcscd -f" in running["fix"]
    assert not any(name.startswith("reader '") for name in checks)  # no readers asked for


def test_doctor_text_output(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "jpki_sim", "doctor"], capture_output=True,
                       text=True, env=no_pcscd_env(tmp_path), timeout=60)
    lines = r.stdout.splitlines()
    assert any(line.startswith("FAIL  pcscd running") for line in lines)
    assert any("-> start it: `sudo pcscd -f &`" in line for line in lines)
    assert lines[-1] == "some checks failed (see -> above)"
