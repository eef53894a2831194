"""The remote form of ``jpki-sim serve --vpcd HOST:PORT``, over loopback, isolated.

A second pcscd runs in a network and mount namespace of its own (``unshare --mount
--net``): a tmpfs on /run/pcscd (its own socket, never the machine's pcscd), its own
loopback, and its own reader.conf.d with one vpcd reader on a port that is not vpcd's
default (``pcscd --config DIR``; the directory is also bound over /etc/reader.conf.d
inside the namespace, so that ``serve``'s local checks read what this pcscd reads, as
on a machine configured that way). ``serve`` attaches with ``--vpcd 127.0.0.1:PORT``
and PC/SC clients in the same namespace see the card. The machine's pcscd and vpcd
readers are never touched, so this test takes no reader lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from compat_harness import pem_certificates

from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.state import CardState, load, save
from jpki_sim.transport import pcscd
from pcsc_harness import unavailable

pytestmark = [pytest.mark.pcsc]

PORT = 0x9C40  # 40000: not vpcd's 35963/35964
FRIENDLY = "Remote PCD"

SCRIPT = r"""
set -eu
ip link set lo up
mount -t tmpfs -o mode=0755 tmpfs /run/pcscd 2>/dev/null || {
    mkdir -p /run/pcscd && mount -t tmpfs -o mode=0755 tmpfs /run/pcscd; }
mount --bind "$CONF" /etc/reader.conf.d
"$PCSCD" --foreground --config "$CONF" >"$OUT/pcscd.log" 2>&1 &
PCSCD_PID=$!
for _ in $(seq 100); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
"$PY" -m jpki_sim serve "$CARD" --vpcd "127.0.0.1:$PORT" --no-start-pcscd --json --no-control \
    >"$OUT/serve.out" 2>"$OUT/serve.err" &
SERVE_PID=$!
# a host name that is not this machine's: serve checks nothing here and names no reader
"$PY" -m jpki_sim serve "$CARD2" --vpcd "127.0.0.2:$((PORT + 1))" --json --no-control \
    >"$OUT/serve2.out" 2>"$OUT/serve2.err" &
SERVE2_PID=$!
for _ in $(seq 150); do
    grep -q '"ready"' "$OUT/serve.out" && grep -q '"ready"' "$OUT/serve2.out" && break
    sleep 0.1
done
# clients in the namespace: pcsc-tools, OpenSC, and the project's own PC/SC client
pcsc_scan -c >"$OUT/pcsc_scan.out" 2>&1 || true
pkcs15-tool --read-certificate 01 >"$OUT/cert.pem" 2>"$OUT/pkcs15.err" || true
"$PY" -m jpki_sim apdu --reader "$FRIENDLY 00 00" --json 00A4040C0AD392F000260100000001 \
    00A4020C020018 00200080 >"$OUT/apdu.out" 2>&1 || true
kill -TERM "$SERVE_PID"; wait "$SERVE_PID" || echo "serve exit $?" >>"$OUT/serve.err"
kill -TERM "$SERVE2_PID"; wait "$SERVE2_PID" || echo "serve exit $?" >>"$OUT/serve2.err"
kill -TERM "$PCSCD_PID"; wait "$PCSCD_PID" || true
"""


def _need_namespaces() -> None:
    if not pcscd.is_root():
        unavailable("the isolated pcscd needs root (unshare --mount --net)")
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2"),
                          ("pcsc_scan", "pcsc-tools"), ("pkcs15-tool", "opensc")):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (apt-get install {package})")
    if pcscd.find_binary() is None or pcscd.vpcd_driver() is None:
        unavailable("pcscd and the vpcd driver are needed (tools/setup.sh installs them)")


@pytest.mark.compat("remote", "`serve --vpcd 127.0.0.1:40000` (and `127.0.0.2:40001`, a "
                    "non-local name) to an isolated pcscd with its own reader.conf.d: "
                    "pcsc_scan, pkcs15-tool and `jpki-sim apdu` there see the cards")
def test_card_attached_to_another_pcscd_over_tcp(jpki_state: CardState, tmp_path: Path) -> None:
    _need_namespaces()
    conf = tmp_path / "reader.conf.d"
    conf.mkdir()
    (conf / "vpcd-remote").write_text(
        f'FRIENDLYNAME "{FRIENDLY}"\n'
        f"DEVICENAME   /dev/null:0x{PORT:04X}\n"
        f"LIBPATH      {pcscd.vpcd_driver()}\n"
        f"CHANNELID    0x{PORT:04X}\n")
    card, card2 = tmp_path / "card.json", tmp_path / "card2.json"
    save(jpki_state, card)
    save(jpki_state, card2)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, CONF=str(conf), OUT=str(out), CARD=str(card), CARD2=str(card2),
               PORT=str(PORT), PY=sys.executable, PCSCD=str(pcscd.find_binary()), FRIENDLY=FRIENDLY)
    env.pop("PCSCLITE_CSOCK_NAME", None)
    r = subprocess.run(["unshare", "--mount", "--net", "--fork", "bash", "-c", SCRIPT],
                       env=env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    logs = {p.name: p.read_text(errors="replace") for p in out.iterdir()}
    assert r.returncode == 0, f"{r.stderr}\n{logs}"

    ready = [json.loads(ln) for ln in logs["serve.out"].splitlines() if '"ready"' in ln]
    assert ready and ready[0]["reader"] == f"{FRIENDLY} 00 00", logs["serve.err"]
    assert ready[0]["vpcd"] == f"127.0.0.1:{PORT}"
    ready2 = [json.loads(ln) for ln in logs["serve2.out"].splitlines() if '"ready"' in ln]
    assert ready2 and ready2[0]["reader"] is None, logs["serve2.err"]
    assert ready2[0]["vpcd"] == f"127.0.0.2:{PORT + 1}"
    scan = logs["pcsc_scan.out"]
    atr = " ".join(f"{b:02X}" for b in jpki.ATR)
    for slot in ("00", "01"):
        block = scan.split(f": {FRIENDLY} 00 {slot}")[1].split(" Reader ")[0]
        assert "Card inserted" in block and f"ATR: {atr}" in block, scan
    assert "Virtual PCD" not in scan  # the machine's readers are not in this namespace
    assert pem_certificates(logs["cert.pem"]) == [load(card).slot("auth").cert_der], (
        logs["pkcs15.err"])
    answers = [json.loads(ln) for ln in logs["apdu.out"].splitlines() if ln.startswith("{")]
    assert [a.get("sw") for a in answers][-1:] == ["63C3"], logs["apdu.out"]
    assert "serve exit" not in logs["serve.err"] + logs["serve2.err"]
