"""The benchmark's OCSP section: our responder against ``openssl ocsp -port``, same CA, same run.

Both answer the same valid request (an RFC 5019 request: one SHA-1 CertID, no
nonce) about a certificate of one test CA; ``openssl ocsp`` reads that CA's
records as an OpenSSL index file. Each server is started as a tester would
start it: ``openssl ocsp -port`` (one process) and ``jpki-sim ca ocsp`` (the
control service's OCSP and CRLs, the code ``serve`` runs).

**Load.** :data:`CLIENTS` connections at once from one load generator, the
same for both servers:

- ``wrk`` (default when installed; ``tools/setup.sh`` installs Debian's), one
  thread, a Lua script that POSTs the DER request as
  ``application/ocsp-request``. In C, so the clients cost little of the
  machine's two cores and neither server is capped by them;
- ``processes``: :data:`CLIENTS` Python client processes with raw sockets (the
  fallback without wrk; on two cores they take much of the CPU themselves).

Three figures: ours with kept-alive connections (what a relying party's HTTP
client does), ours with a new connection per request, and openssl's, whose
client asks for keep-alive like ours: ``openssl ocsp -port`` answers HTTP/1.0
and closes every connection, so the load generator reconnects (that is the
reference as it is). The ratio the goal is judged on is ours kept-alive over
openssl's; the one with a new connection each is reported beside it. With wrk
the three are measured in rounds, interleaved (openssl, ours kept-alive, ours
new connections, again), each round's ratio from figures taken back to back;
the ratio and the p99 are the medians of the rounds' (the worst round's p99 is
kept beside it: a neighbour's burst on this shared machine shows there).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timezone
from pathlib import Path
from typing import Any

#: concurrent clients (the issue's target is stated at 8)
CLIENTS = 8
TARGET_RATIO = 5.0
TARGET_P99_MS = 10.0
#: the load generators; "auto" is wrk when installed, else processes
LOADS = ("auto", "wrk", "processes")

# wrk's script: POST the request; print one JSON line of figures at the end.
# wrk normally opens and closes a probe connection before the run; `openssl ocsp
# -port` (3.0) then spins at 100 % CPU reading EOF from it, so the probe is left out.
WRK_SCRIPT = r"""
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup(host, service)
end
wrk.method = "POST"
local f = assert(io.open(os.getenv("JPKI_SIM_OCSP_REQUEST"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
if os.getenv("JPKI_SIM_OCSP_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JPKI_SIM {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# ---------------------------------------------------------------- wrk


def wrk_round(url: str, script: Path, request: Path, *, seconds: int,
              keep_alive: bool) -> dict[str, Any]:
    """One wrk run of ``seconds`` with :data:`CLIENTS` connections on one thread."""
    wrk = shutil.which("wrk")
    assert wrk is not None
    env = dict(os.environ, JPKI_SIM_OCSP_REQUEST=str(request),
               JPKI_SIM_OCSP_CLOSE="0" if keep_alive else "1")
    cmd = [wrk, "-t1", f"-c{CLIENTS}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script),
           url]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=seconds + 60, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JPKI_SIM ")), None)
    if proc.returncode != 0 or line is None:
        from jpki_sim.bench.core import BenchError

        raise BenchError(f"wrk failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    doc = json.loads(line[len("JPKI_SIM "):])
    wall = doc["duration_us"] / 1e6
    ok = doc["requests"] - doc["non_2xx"]
    return {
        "requests": ok,
        "errors": doc["errors"] + doc["non_2xx"],
        "wall_s": wall,
        "per_s": ok / wall if wall > 0 else None,
        "p50_ms": doc["p50_us"] / 1000,
        "p99_ms": doc["p99_us"] / 1000,
        "max_ms": doc["max_us"] / 1000,
    }


def combine(rounds: list[dict[str, Any]], keep_alive: bool) -> dict[str, Any]:
    """One figure from rounds: the median rate, p50 and p99; the worst round's p99 and max."""
    from jpki_sim.bench.core import percentile

    rates = [r["per_s"] for r in rounds if r["per_s"]]
    return {
        "clients": CLIENTS,
        "keep_alive": keep_alive,
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "wall_s": sum(r["wall_s"] for r in rounds),
        "per_s": percentile(rates, 50) if rates else None,
        "p50_ms": percentile([r["p50_ms"] for r in rounds], 50),
        "p99_ms": percentile([r["p99_ms"] for r in rounds], 50),
        "p99_worst_ms": max(r["p99_ms"] for r in rounds),
        "max_ms": max(r["max_ms"] for r in rounds),
        "rounds": rounds,
    }


# ---------------------------------------------------------------- client processes


def _request_bytes(host: str, port: int, der: bytes, keep_alive: bool) -> bytes:
    head = (f"POST /ocsp HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/ocsp-request\r\n"
            f"Content-Length: {len(der)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + der


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[bool, bool]:
    """Read one HTTP response (Content-Length framed, or to EOF): (a 200, kept open)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return False, False
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.") and head[9:12] == b"200"
    length = None
    open_ = head.startswith(b"HTTP/1.1")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            open_ = False
    if length is None:  # to EOF
        while sock.recv(65536):
            pass
        buf.clear()
        return ok, False
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False, False
        rest += chunk
    buf[:] = rest[length:]
    return ok, open_


def _client(host: str, port: int, payload: bytes, count: int, deadline: float,
            start: Any, out: Any) -> None:
    """One client process: ``count`` requests (or until ``deadline``), latencies to ``out``.

    A connection the server closes (or says it will) is opened again."""
    perf = time.perf_counter
    latencies: list[float] = []
    errors = 0
    start.wait()
    sock: socket.socket | None = None
    buf = bytearray()
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        t0 = perf()
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf.clear()
            sock.sendall(payload)
            ok, open_ = _read_response(sock, buf)
            if not open_:
                sock.close()
                sock = None
        except OSError:
            ok = False
            if sock is not None:
                sock.close()
            sock = None
        if ok:
            latencies.append(perf() - t0)
        else:
            errors += 1
    if sock is not None:
        sock.close()
    out.put((latencies, errors))


def load(host: str, port: int, der: bytes, *, clients: int, per_client: int,
         keep_alive: bool, max_seconds: float) -> dict[str, Any]:
    """Drive ``clients`` processes against host:port; rate, percentiles, errors."""
    import multiprocessing

    from jpki_sim.bench.core import percentile

    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    payload = _request_bytes(host, port, der, keep_alive)
    deadline = time.monotonic() + max_seconds
    procs = [ctx.Process(target=_client, args=(host, port, payload, per_client, deadline,
                                               start, out), daemon=True)
             for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=max_seconds + 60) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(10)
    lat = [x for lats, _ in results for x in lats]
    errors = sum(e for _, e in results)
    return {
        "clients": clients,
        "keep_alive": keep_alive,
        "requests": len(lat),
        "errors": errors,
        "wall_s": wall,
        "per_s": len(lat) / wall if wall > 0 else None,
        "p50_ms": percentile(lat, 50) * 1000 if lat else None,
        "p99_ms": percentile(lat, 99) * 1000 if lat else None,
        "max_ms": max(lat) * 1000 if lat else None,
    }


# ---------------------------------------------------------------- the servers


def _openssl_index(ca: Any, which: str) -> str:
    """The CA's records of ``which`` as an OpenSSL ``index.txt`` (openssl ca's database)."""
    from cryptography import x509

    lines = []
    for rec in ca.records(which):
        cert = x509.load_der_x509_certificate(rec.cert_der)
        expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        subject = "/" + "/".join(reversed(cert.subject.rfc4514_string().split(",")))
        if rec.revoked_at is not None:
            when = rec.revoked_at.astimezone(timezone.utc).strftime("%y%m%d%H%M%SZ")
            lines.append(f"R\t{expiry}\t{when},{rec.reason or 'unspecified'}\t"
                         f"{rec.serial:X}\tunknown\t{subject}")
        else:
            lines.append(f"V\t{expiry}\t\t{rec.serial:X}\tunknown\t{subject}")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> bool:
    """Wait until something listens on ``port`` (read from /proc: a probe connection
    would hold ``openssl ocsp``, which serves one connection at a time, and make it spin)."""
    deadline = time.monotonic() + timeout
    want = f":{port:04X}"
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            if any(f[1].endswith(want) and f[3] == "0A" for f in (x.split() for x in lines)):
                return True
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exchange(port: int, payload: bytes) -> tuple[bool, bool]:
    """One request on a new connection: (answered 200, the server kept the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        ok, open_ = _read_response(sock, bytearray())
        if open_:  # said so: see that it is (a closed socket reads EOF at once)
            sock.settimeout(0.2)
            try:
                open_ = sock.recv(1) != b""
            except TimeoutError:
                pass
        return ok, open_


class Ours:
    """``jpki-sim ca ocsp`` on a free port, as a tester starts it (this interpreter)."""

    def __init__(self, ca_dir: Path) -> None:
        import jpki_sim

        src = str(Path(jpki_sim.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [src, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
        self.command = "jpki-sim ca ocsp --port 0"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jpki_sim", "ca", "ocsp", "--ca", str(ca_dir), "--port", "0",
             "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        try:
            self.port = int(json.loads(line)["ocsp"].rsplit(":", 1)[1].split("/")[0])
        except (ValueError, KeyError, IndexError):
            _stop(self.proc)
            from jpki_sim.bench.core import BenchError

            raise BenchError(f"jpki-sim ca ocsp did not start: {line.strip()[:200]!r}") from None

    def stop(self) -> None:
        _stop(self.proc)


class OpenSSL:
    """``openssl ocsp -port`` serving the CA's index (one process, as a tester starts it)."""

    command = "openssl ocsp -port (one process, as a tester starts it)"

    def __init__(self, folder: Path) -> None:
        openssl = shutil.which("openssl")
        assert openssl is not None
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [openssl, "ocsp", "-port", str(self.port), "-index", str(folder / "index.txt"),
             "-CA", str(folder / "ca.pem"), "-rsigner", str(folder / "ca.pem"),
             "-rkey", str(folder / "ca.key"), "-nmin", "1440"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not _wait_listening(self.port):
            self.stop()
            from jpki_sim.bench.core import BenchError

            raise BenchError("openssl ocsp did not start listening")

    def stop(self) -> None:
        _stop(self.proc)


def _openssl_folder(ca: Any, work: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    folder = Path(tempfile.mkdtemp(prefix="ocsp-openssl-", dir=work))
    (folder / "index.txt").write_text(_openssl_index(ca, "auth"))
    (folder / "ca.pem").write_bytes(ca.auth.cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.key").write_bytes(ca.auth.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder


# ---------------------------------------------------------------- the section


def pick_load(wanted: str) -> str:
    """The load generator to use for ``--ocsp-load`` ``wanted``; UserError if it is missing."""
    if wanted == "processes":
        return wanted
    if shutil.which("wrk") is not None:
        return "wrk"
    if wanted == "wrk":
        from jpki_sim.errors import UserError

        raise UserError("--ocsp-load wrk: wrk is not installed (tools/setup.sh installs it)")
    return "processes"


def bench_ocsp(quick: bool, work: Path, progress: Any, load_kind: str = "auto"
               ) -> dict[str, Any]:
    """The section: openssl's and ours (kept-alive, new connections), one CA, one request."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import load_der_x509_certificate
    from cryptography.x509 import ocsp as x_ocsp

    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.issuer.counter import KeyPool, default_identity, issue_card

    kind = pick_load(load_kind)
    ca = TestCA.open(work / "ocsp-ca")
    state = issue_card(default_identity(), date(2025, 4, 1), ca=ca, keys=KeyPool.generate(2))
    assert state.auth is not None
    cert = load_der_x509_certificate(state.auth.cert_der)
    der = (x_ocsp.OCSPRequestBuilder().add_certificate(cert, ca.auth.cert, hashes.SHA1())
           .build().public_bytes(serialization.Encoding.DER))
    out: dict[str, Any] = {"request": "one SHA-1 CertID, no nonce (RFC 5019)",
                           "clients": CLIENTS, "load": kind, "judged_on": "ours_keep_alive"}
    if shutil.which("openssl") is None:
        out["openssl"] = {"skipped": "the openssl command is not installed"}
    folder = _openssl_folder(ca, work)
    ours = Ours(ca.directory)
    try:
        payload = _request_bytes("127.0.0.1", ours.port, der, keep_alive=True)
        # the first answer is signed, then cached: warm up before timing
        ok, out["ours_keeps_alive"] = _exchange(ours.port, payload)
        if not ok:
            from jpki_sim.bench.core import BenchError

            raise BenchError("jpki-sim ca ocsp did not answer the request with 200")
        if kind == "wrk":
            _run_wrk(out, ours, folder, der, work, quick, progress)
        else:
            _run_processes(out, ours, folder, der, quick, progress)
    finally:
        ours.stop()
    ref = out["openssl"]
    for key, mine in (("ratio", "ours_keep_alive"), ("ratio_new_connection", "ours")):
        rate = out[mine].get("per_s")
        out[key] = rate / ref["per_s"] if rate and ref.get("per_s") else None
    if kind == "wrk" and ref.get("rounds"):
        # the median of the rounds' ratios: each from figures taken back to back
        from jpki_sim.bench.core import percentile

        for key, mine in (("ratio", "ours_keep_alive"), ("ratio_new_connection", "ours")):
            pairs = [m["per_s"] / o["per_s"] for m, o in
                     zip(out[mine]["rounds"], ref["rounds"], strict=True)
                     if m["per_s"] and o["per_s"]]
            out[key] = percentile(pairs, 50) if pairs else None
    return out


def _run_wrk(out: dict[str, Any], ours: Ours, folder: Path, der: bytes, work: Path,
             quick: bool, progress: Any) -> None:
    rounds = 1 if quick else 3
    seconds = 2 if quick else 5
    script = work / "ocsp-wrk.lua"
    script.write_text(WRK_SCRIPT)
    request = work / "ocsp-request.der"
    request.write_bytes(der)
    out["load_command"] = f"wrk -t1 -c{CLIENTS} -d{seconds:g}s -s ocsp-wrk.lua URL/ocsp"
    out["rounds"] = rounds
    out["seconds"] = seconds
    task = progress.task("OCSP: ours and openssl ocsp", 3 * rounds)
    got: dict[str, list[dict[str, Any]]] = {"openssl": [], "ours_keep_alive": [], "ours": []}
    has_openssl = "openssl" not in out
    for _ in range(rounds):
        if has_openssl:
            # a new openssl each round: its connections left at a run's end make it spin
            ref = OpenSSL(folder)
            try:
                payload = _request_bytes("127.0.0.1", ref.port, der, keep_alive=True)
                ok, out["openssl_keeps_alive"] = _exchange(ref.port, payload)
                got["openssl"].append(wrk_round(f"http://127.0.0.1:{ref.port}/ocsp", script,
                                                request, seconds=seconds, keep_alive=True))
            finally:
                ref.stop()
        progress.advance(task)
        url = f"http://127.0.0.1:{ours.port}/ocsp"
        for key, keep in (("ours_keep_alive", True), ("ours", False)):
            got[key].append(wrk_round(url, script, request, seconds=seconds, keep_alive=keep))
            progress.advance(task)
    progress.done(task)
    for key, keep in (("ours_keep_alive", True), ("ours", False), ("openssl", True)):
        if got[key]:
            out[key] = combine(got[key], keep)
    if has_openssl:
        out["openssl"]["command"] = OpenSSL.command
    out["ours_keep_alive"]["command"] = out["ours"]["command"] = ours.command


def _run_processes(out: dict[str, Any], ours: Ours, folder: Path, der: bytes, quick: bool,
                   progress: Any) -> None:
    per_client = 150 if quick else 1500
    max_s = 20.0 if quick else 120.0
    out["load_command"] = f"{CLIENTS} Python client processes, {per_client} requests each"
    out["per_client"] = per_client
    task = progress.task("OCSP: ours and openssl ocsp", 3)
    for key, keep in (("ours_keep_alive", True), ("ours", False)):
        out[key] = load("127.0.0.1", ours.port, der, clients=CLIENTS, per_client=per_client,
                        keep_alive=keep, max_seconds=max_s)
        out[key]["command"] = ours.command
        progress.advance(task)
    if "openssl" not in out:
        ref = OpenSSL(folder)
        try:
            ok, out["openssl_keeps_alive"] = _exchange(
                ref.port, _request_bytes("127.0.0.1", ref.port, der, keep_alive=True))
            out["openssl"] = load("127.0.0.1", ref.port, der, clients=CLIENTS,
                                  per_client=per_client, keep_alive=True, max_seconds=max_s)
            out["openssl"]["command"] = OpenSSL.command
        finally:
            ref.stop()
    progress.advance(task)
    progress.done(task)


def targets(section: dict[str, Any]) -> list[tuple[str, str, float | None, bool | None]]:
    """(name, target, measured, met) rows for the benchmark's targets table."""
    rows: list[tuple[str, str, float | None, bool | None]] = []
    ratio = section.get("ratio")
    rows.append(("OCSP requests/s, kept-alive clients: ours / openssl ocsp",
                 f">= {TARGET_RATIO}", ratio, ratio >= TARGET_RATIO if ratio is not None else None))
    p99 = section["ours_keep_alive"].get("p99_ms")
    rows.append((f"OCSP p99 ms at {CLIENTS} clients", f"< {TARGET_P99_MS}", p99,
                 p99 < TARGET_P99_MS if p99 is not None else None))
    return rows


def report(section: dict[str, Any]) -> Any:
    """The section as a rich table."""
    from rich.table import Table

    load_text = (f"wrk, {section['clients']} connections, {section['rounds']} round(s) of "
                 f"{section['seconds']:g} s" if section["load"] == "wrk"
                 else f"{section['clients']} Python client processes")
    t = Table(title=f"OCSP responder ({load_text}; {section['request']})",
              title_justify="left")
    for col in ("server", "requests/s", "× openssl", "p50", "p99", "max", "requests", "errors"):
        t.add_column(col, justify="left" if col == "server" else "right")
    ref = section["openssl"]

    def row(label: str, f: dict[str, Any], ratio: float | None) -> None:
        if f.get("skipped"):
            t.add_row(label, "-", "-", "-", "-", "-", "-", f["skipped"])
            return
        p99 = f"{f['p99_ms']:.2f} ms"
        if f.get("p99_worst_ms") is not None and len(f.get("rounds", [])) > 1:
            p99 += f" (worst {f['p99_worst_ms']:.2f})"
        t.add_row(label, f"{f['per_s']:,.0f}", "-" if ratio is None else f"{ratio:.1f}",
                  f"{f['p50_ms']:.2f} ms", p99, f"{f['max_ms']:.2f} ms",
                  str(f["requests"]), str(f["errors"]))

    row("ours, kept-alive connections (judged)", section["ours_keep_alive"], section["ratio"])
    row("ours, new connection each", section["ours"], section["ratio_new_connection"])
    closes = "" if section.get("openssl_keeps_alive") else " (closes each)"
    row(f"openssl ocsp -port{closes}", ref, 1.0 if ref.get("per_s") else None)
    return t
