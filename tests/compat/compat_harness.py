"""The real-client compatibility suite's harness.

- Clients: where each one is, and what to do when it is missing (skip locally with
  the reason, fail when ``JPKI_SIM_REQUIRE_PCSC=1``, as every PC/SC test does).
- Served cards: ``jpki-sim serve`` as a child process, its card in a vpcd reader of
  the machine's pcscd (under the machine-wide reader lock the session holds).
- Rows: every test is one row of docs/compatibility.md (``@pytest.mark.compat``);
  the outcome of a complete run of the suite is written to
  ``.ci/out/compat-results.json``, from which ``tools/compat_table.py`` writes the
  document. Nothing in a row may vary between two runs on one machine: no times,
  no key material, no temporary paths.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from pcsc_harness import ServeProcess, pcsc_required, unavailable

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".ci" / "out" / "compat-results.json"
COMPAT_DIR = Path(__file__).resolve().parent

AUTH_TOKEN = "JPKI (User Authentication PIN)"
SIGN_TOKEN = "JPKI (Digital Signature PIN)"
AUTH_PIN = "1234"
SIGN_PIN = "ABC123"


# ---------------------------------------------------------------- clients


def pkcs11_module() -> str:
    """OpenSC's PKCS#11 module on this architecture (Debian's multiarch path)."""
    found = sorted(glob.glob("/usr/lib/*/opensc-pkcs11.so")) + sorted(
        glob.glob("/usr/lib*/opensc-pkcs11.so"))
    if not found:
        unavailable("OpenSC's PKCS#11 module is not installed (apt-get install opensc-pkcs11)")
    return found[0]


def need_tools(*tools: str, package: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (apt-get install {package}; "
                    "tools/setup.sh installs it)")


def need_python(module: str, pip_name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        unavailable(f"{pip_name} is not installed (pip install {pip_name}; "
                    "tools/setup.sh installs it)")


def need_file(pattern: str, package: str) -> str:
    found = sorted(glob.glob(pattern))
    if not found:
        unavailable(f"{pattern} not found (apt-get install {package}; tools/setup.sh installs it)")
    return found[0]


def deb_version(package: str) -> str | None:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}|${Version}", package],
                       capture_output=True, text=True)
    status, _, version = r.stdout.partition("|")
    return version if r.returncode == 0 and status.endswith("installed") else None


def deb_candidate(package: str) -> str | None:
    """The version apt would install, or None when this platform has no such package."""
    if shutil.which("apt-cache") is None:
        return None
    r = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", r.stdout)
    return m.group(1) if m and m.group(1) != "(none)" else None


def pypi_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _debs(*names: str) -> Callable[[], str]:
    def version() -> str:
        return ", ".join(f"{n} {deb_version(n) or 'not installed'}" for n in names)
    return version


def _pips(*names: str) -> Callable[[], str]:
    def version() -> str:
        return ", ".join(f"{n} {pypi_version(n) or 'not installed'}" for n in names)
    return version


#: client key -> (name in the table, its versions); every PKCS#11 client goes through
#: OpenSC's module, whose version is the OpenSC row's
CLIENTS: dict[str, tuple[str, Callable[[], str]]] = {
    "opensc": ("OpenSC tools (pkcs11-tool, pkcs15-tool)", _debs("opensc", "opensc-pkcs11")),
    "pykcs11": ("PyKCS11", _pips("PyKCS11")),
    "python-pkcs11": ("python-pkcs11", _pips("python-pkcs11")),
    "pyhanko": ("pyHanko", _pips("pyHanko", "pyhanko-certvalidator")),
    "openssl-engine": ("OpenSSL + libengine-pkcs11",
                       _debs("openssl", "libengine-pkcs11-openssl")),
    "openssl-provider": ("OpenSSL + pkcs11-provider", _debs("openssl", "pkcs11-provider")),
    "curl": ("curl (OpenSSL, pkcs11 engine)", _debs("curl", "libengine-pkcs11-openssl")),
    "nss": ("NSS tools (modutil, certutil, tstclnt, vfychain)", _debs("libnss3-tools")),
    "gnutls": ("GnuTLS p11tool", _debs("gnutls-bin")),
    "pcsc-tools": ("pcsc-tools (pcsc_scan, scriptor)", _debs("pcsc-tools")),
    "remote": ("pcscd + vpcd, card attached over TCP", _debs("pcscd", "vsmartcard-vpcd")),
}


# ---------------------------------------------------------------- running clients

#: environment variables of the calling shell that would change what a client does
_CLEARED = ("OPENSC_CONF", "OPENSC_DRIVER", "OPENSSL_CONF", "OPENSSL_ENGINES",
            "OPENSSL_MODULES", "PCSCLITE_CSOCK_NAME", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(extra or {})
    return env


def run(args: list[str], *, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client as a user would (no terminal); the caller asserts on the result."""
    return subprocess.run(args, env=client_env(env), input=input, capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          stdin=None if input is not None else subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Fail with the client's own words (first error lines) when it exited non-zero."""
    if result.returncode != 0:
        pytest.fail(f"{Path(result.args[0]).name} exited {result.returncode}: "
                    f"{first_error(result.stdout + result.stderr)}", pytrace=False)
    return result


def first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"error|fail|invalid|refused|unable|cannot", ln, re.I):
            return ln
    return lines[-1] if lines else "(no output)"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pem_certificates(text: str) -> list[bytes]:
    """The DER of every PEM certificate in ``text``, in order."""
    import base64

    return [base64.b64decode("".join(m.split())) for m in re.findall(
        r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)]


# ---------------------------------------------------------------- served cards


@dataclass
class Served:
    """A card served by ``jpki-sim serve`` into a vpcd reader."""

    card_file: Path
    reader: str
    process: ServeProcess

    def state(self) -> Any:
        from jpki_sim.profiles.jpki.state import load

        return load(self.card_file)

    def cert_der(self, which: str) -> bytes:
        slot = self.state().slot(which)
        assert slot is not None, f"the card has no {which} certificate"
        return bytes(slot.cert_der)

    def cert(self, which: str) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.cert_der(which))

    def ca_der(self, which: str) -> bytes:
        st = self.state()
        return bytes(st.auth_ca_der if which == "auth" else st.sign_ca_der)

    def write_pem(self, which: str, path: Path, ca: bool = False) -> Path:
        from cryptography.hazmat.primitives.serialization import Encoding

        der = self.ca_der(which) if ca else self.cert_der(which)
        path.write_bytes(x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM))
        return path


def serve(card_file: Path, port: int) -> Served:
    """``jpki-sim serve CARD --vpcd localhost:PORT --json``, waited for until ready."""
    # no control service: port 3280 may be taken by another run; tests/test_control.py has it
    proc = ServeProcess([str(card_file), "--vpcd", f"localhost:{port}", "--json", "--no-control"])
    (line,) = proc.wait_ready(timeout=30)
    event = json.loads(line)
    return Served(card_file, event["reader"], proc)


def stop(served: Served) -> None:
    from jpki_sim.transport.pcsc import wait_for_card

    try:
        code = served.process.terminate()
        assert code == 0, f"serve exited {code}: {served.process.stderr_text()}"
    finally:
        served.process.kill()
    assert wait_for_card(served.reader, present=False, timeout=5), f"{served.reader} kept the card"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(0.05)


# ---------------------------------------------------------------- rows and results


@dataclass
class Row:
    """What one test says about its row (set while it runs)."""

    limitation: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)

    def client_limitation(self, evidence: str, reference: str) -> None:
        """The operation fails, and the test has proven it fails in the documented way."""
        self.limitation = {"owner": "client", "evidence": evidence, "reference": reference}

    def note(self, text: str) -> None:
        self.notes.append(text)


ROW_KEY = pytest.StashKey[Row]()
RESULT_KEY = pytest.StashKey[dict[str, Any]]()


def row_info(item: pytest.Item) -> tuple[str, str, dict[str, Any]] | None:
    marker = item.get_closest_marker("compat")
    if marker is None:
        return None
    client, operation = marker.args
    params = getattr(getattr(item, "callspec", None), "params", {})
    return client, operation.format(**params), dict(marker.kwargs)


_TMP = re.compile(r"/tmp/[^\s'\"]+|/root/[^\s'\"]+")


def _scrub(text: str) -> str:
    """One deterministic line: no temporary paths, no addresses in memory."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _TMP.sub("<tmp>", line)
    line = re.sub(r"0x[0-9a-f]{8,}", "0x…", line)
    return line[:300]


def record(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    info = row_info(item)
    if info is None:
        return
    client, operation, kwargs = info
    if report.when == "call" or (report.when == "setup" and not report.passed):
        row = item.stash.get(ROW_KEY, Row())
        result: dict[str, Any] = {"client": client, "operation": operation,
                                  "test": item.nodeid.split("tests/compat/", 1)[-1]}
        if report.skipped:
            reason = call.excinfo.value.msg if call.excinfo is not None else "skipped"
            result.update(result="not run", evidence=_scrub(str(reason)))
        elif report.passed:
            if row.limitation is not None:
                result.update(result="fails", **row.limitation)
            else:
                result.update(result="works")
        else:
            message = str(call.excinfo.value) if call.excinfo is not None else report.longreprtext
            known = kwargs.get("known")
            result.update(result="fails", evidence=_scrub(message))
            if known:
                result.update(owner=known[0], reference=known[1])
            else:
                result.update(owner="not yet known", reference="")
        if row.notes:
            result["notes"] = list(row.notes)
        item.stash[RESULT_KEY] = result


def complete(session: pytest.Session, deselected: int) -> bool:
    """Did this run cover the whole compat suite (every file, nothing deselected, no row
    left out by -x or an interruption)?"""
    files = {p.name for p in COMPAT_DIR.glob("test_*.py")}
    ours = [i for i in session.items if COMPAT_DIR in Path(str(i.path)).parents]
    ran = {Path(str(i.path)).name for i in ours}
    every_row_ran = all(RESULT_KEY in i.stash for i in ours if row_info(i) is not None)
    return bool(files) and files <= ran and deselected == 0 and every_row_ran


def platform_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "unknown"
    m = re.search(r'^PRETTY_NAME="?(.*?)"?$', text, re.M)
    return m.group(1) if m else "unknown"


def write_results(session: pytest.Session) -> Path:
    rows = [i.stash[RESULT_KEY] for i in session.items if RESULT_KEY in i.stash]
    order = list(CLIENTS)
    rows.sort(key=lambda r: order.index(r["client"]))  # stable: test order within a client
    clients = sorted({r["client"] for r in rows})
    doc = {
        "format": "jpki-sim compat results",
        "version": 1,
        "require_pcsc": pcsc_required(),
        "platform": platform_name(),
        "clients": {c: {"name": CLIENTS[c][0], "version": CLIENTS[c][1]()} for c in clients},
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
    tmp.replace(RESULTS)
    return RESULTS


def run_python(code: str, *args: str, timeout: float = 120) -> Any:
    """Run client code in a fresh interpreter, as a user's program would be, and return
    the JSON it prints last. In-process PKCS#11 libraries share one loaded module per
    process (a C_Finalize by one finalizes it for all), so each client gets its own."""
    import sys
    import textwrap

    r = run([sys.executable, "-c", textwrap.dedent(code), *args], timeout=timeout)
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1:] or ["(no output)"]
        pytest.fail(f"client program exited {r.returncode}: {tail[0]}", pytrace=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON from the client program: {r.stdout[-300:]}"
    return json.loads(lines[-1])
