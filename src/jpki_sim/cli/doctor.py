"""``jpki-sim doctor``: check the PC/SC setup a card needs and say how to fix each problem."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"
PKCS11_MODULE_PATHS = (
    "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
    "/usr/lib64/opensc-pkcs11.so",
    "/usr/lib/opensc-pkcs11.so",
    "/usr/local/lib/opensc-pkcs11.so",
)


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check pcscd, the vpcd driver, pyscard, readers and OpenSC",
        description=(
            "Check what serving a card to PC/SC programs needs: pcscd installed and running, "
            "vsmartcard's vpcd driver and its ports, pyscard, the readers pcscd sees, and "
            "OpenSC with its JPKI driver. Each problem comes with what to do. Exit status 1 "
            "when something required is missing."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    p.set_defaults(func=run)


def _listening_ports() -> set[int]:
    """TCP ports in LISTEN state, from /proc (no ss/netstat needed)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def collect() -> list[Check]:
    from jpki_sim.profiles.jpki import ids as jpki
    from jpki_sim.transport import pcscd

    checks: list[Check] = []
    setup = pcscd.SETUP_HINT

    binary = pcscd.find_binary()
    checks.append(
        Check("pcscd installed", OK, binary)
        if binary
        else Check("pcscd installed", FAIL, "no pcscd program",
                   f"{setup}, or apt-get install pcscd")
    )

    running = pcscd.is_running()
    pid = pcscd.running_pid()
    if running:
        args = _cmdline(pid) if pid else []
        detail = f"socket {pcscd.socket_path()} answers" + (f" (pid {pid})" if pid else "")
        checks.append(Check("pcscd running", OK, detail))
        if "-x" in args or "--auto-exit" in args:
            checks.append(Check(
                "pcscd mode", WARN, f"started as {' '.join(args)}: exits 60 s after its last "
                "client, taking the virtual cards with it",
                "stop it and start `pcscd -f &` (no --auto-exit)",
            ))
    else:
        stale = os.path.exists(pcscd.socket_path())
        checks.append(Check(
            "pcscd running", FAIL,
            "socket file left behind by a dead pcscd" if stale else "no pcscd answers",
            "start it: `sudo pcscd -f &`, or run `sudo jpki-sim serve`, which starts it",
        ))

    driver = pcscd.vpcd_driver()
    checks.append(
        Check("vpcd driver installed", OK, driver)
        if driver
        else Check("vpcd driver installed", FAIL, "libifdvpcd.so not found",
                   f"{setup}, or apt-get install vsmartcard-vpcd")
    )

    conf = pcscd.vpcd_readers()
    if conf:
        listening = _listening_ports() if running else set()
        for reader in conf:
            ports = list(reader.ports)
            detail = (f"{reader.conf_file}: '{reader.friendly_name}' slots on ports "
                      f"{', '.join(map(str, ports))}")
            if running and not all(p in listening for p in ports):
                checks.append(Check(
                    "vpcd ports", FAIL, detail + " - not all listening",
                    "another program holds these ports, or pcscd did not load the driver: "
                    "stop it and restart pcscd (`pcscd -f -d` shows why)",
                ))
            else:
                checks.append(Check("vpcd ports", OK, detail + (" - listening" if running else "")))
    elif driver:
        checks.append(Check(
            "vpcd ports", FAIL, f"no vpcd entry in {pcscd.READER_CONF_DIR}",
            "reinstall vsmartcard-vpcd (it writes /etc/reader.conf.d/vpcd) and restart pcscd",
        ))

    try:
        from importlib.metadata import version

        import smartcard  # noqa: F401

        checks.append(Check("pyscard importable", OK, f"pyscard {version('pyscard')}"))
        have_pyscard = True
    except ImportError:
        checks.append(Check(
            "pyscard importable", FAIL, "import smartcard failed",
            "pip install 'jpki-sim[pcsc]' (needs gcc and libpcsclite-dev; tools/setup.sh does it)",
        ))
        have_pyscard = False

    if have_pyscard and running:
        from jpki_sim.transport.pcsc import PcscError, reader_status

        try:
            status = reader_status()
        except PcscError as exc:
            checks.append(Check("readers", FAIL, str(exc), "restart pcscd"))
        else:
            if not status:
                checks.append(Check("readers", FAIL, "pcscd sees no reader",
                                    "install vsmartcard-vpcd and restart pcscd"))
            for name, present, atr in status:
                if not present:
                    checks.append(Check(f"reader '{name}'", INFO, "empty",
                                        "`jpki-sim serve` puts a card in it"))
                else:
                    what = "JPKI card" if atr == jpki.ATR else "card"
                    checks.append(Check(f"reader '{name}'", OK, f"{what}, ATR {atr.hex().upper()}"))

    tool = shutil.which("opensc-tool")
    if tool is None:
        checks.append(Check("OpenSC", WARN, "opensc-tool not found (optional)",
                            "apt-get install opensc (for pkcs15-tool / pkcs11-tool)"))
    else:
        try:
            out = subprocess.run([tool, "--list-drivers"], capture_output=True, text=True,
                                 timeout=10, stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        has_jpki = any(line.split()[:1] == ["jpki"] for line in out.splitlines())
        module = next((p for p in PKCS11_MODULE_PATHS if os.path.exists(p)), None)
        detail = f"{tool}, jpki driver {'present' if has_jpki else 'MISSING'}"
        if module:
            detail += f", PKCS#11 module {module}"
        checks.append(
            Check("OpenSC", OK, detail)
            if has_jpki
            else Check("OpenSC", WARN, detail, "install OpenSC 0.20 or later (jpki driver)")
        )
    return checks


def run(args: argparse.Namespace) -> int:
    checks = collect()
    healthy = not any(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": healthy, "checks": [asdict(c) for c in checks]},
                         ensure_ascii=False, indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status.upper():4}  {c.name:<{width}}  {c.detail}")
            if c.fix and c.status != OK:
                print(f"{'':4}  {'':<{width}}  -> {c.fix}")
        print("all required pieces are in place" if healthy
              else "some checks failed (see -> above)")
    return 0 if healthy else 1
