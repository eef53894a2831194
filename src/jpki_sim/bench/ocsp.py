"""The benchmark's OCSP section: our responder against ``openssl ocsp -port``, same CA, same run.

Both answer the same valid request (an RFC 5019 request: one SHA-1 CertID, no
nonce) about a certificate of one test CA; ``openssl ocsp`` reads that CA's
records as an OpenSSL index file. Load comes from client *processes* (raw
sockets, no HTTP library in the timed loop), :data:`CLIENTS` at once, each
opening a new connection per request, as ``openssl ocsp`` serves one request
per connection; ours is also measured with kept-alive connections. Figures:
requests/s over the whole run, and latency percentiles per request.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from datetime import date, timezone
from pathlib import Path
from typing import Any

#: concurrent clients (the issue's target is stated at 8)
CLIENTS = 8
TARGET_RATIO = 5.0
TARGET_P99_MS = 10.0


def _request_bytes(host: str, port: int, der: bytes, keep_alive: bool) -> bytes:
    head = (f"POST /ocsp HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/ocsp-request\r\n"
            f"Content-Length: {len(der)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    return head.encode() + der


def _read_response(sock: socket.socket, buf: bytearray) -> bool:
    """Read one HTTP response (Content-Length framed, or to EOF); True when it was a 200."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    ok = head.startswith(b"HTTP/1.") and head[9:12] == b"200"
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:  # to EOF
        while sock.recv(65536):
            pass
        buf.clear()
        return ok
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        rest += chunk
    buf[:] = rest[length:]
    return ok


def _client(host: str, port: int, payload: bytes, count: int, keep_alive: bool,
            deadline: float, start: Any, out: Any) -> None:
    """One client process: ``count`` requests (or until ``deadline``), latencies to ``out``."""
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
            ok = _read_response(sock, buf)
            if not keep_alive:
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
    procs = [ctx.Process(target=_client, args=(host, port, payload, per_client, keep_alive,
                                               deadline, start, out), daemon=True)
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
    would hold ``openssl ocsp``, which serves one connection at a time, forever)."""
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


def bench_ocsp(quick: bool, work: Path, progress: Any) -> dict[str, Any]:
    """The section: ours (new connections, kept-alive) and openssl's, one CA, one request."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import load_der_x509_certificate
    from cryptography.x509 import ocsp as x_ocsp

    from jpki_sim.control.runner import ControlRunner
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.issuer.counter import KeyPool, default_identity, issue_card

    ca = TestCA.open(work / "ocsp-ca")
    state = issue_card(default_identity(), date(2025, 4, 1), ca=ca, keys=KeyPool.generate(2))
    assert state.auth is not None
    auth_der = state.auth.cert_der
    cert = load_der_x509_certificate(auth_der)
    der = (x_ocsp.OCSPRequestBuilder().add_certificate(cert, ca.auth.cert, hashes.SHA1())
           .build().public_bytes(serialization.Encoding.DER))
    per_client = 150 if quick else 1500
    max_s = 20.0 if quick else 120.0
    task = progress.task("OCSP: ours and openssl ocsp", 3)
    out: dict[str, Any] = {"request": "one SHA-1 CertID, no nonce (RFC 5019)",
                           "clients": CLIENTS, "per_client": per_client}
    runner = ControlRunner.start([], "127.0.0.1:0", cas=[ca], control=False, presign=False)
    try:
        runner.service.ocsp.presign([auth_der])
        port = runner.server.sock.getsockname()[1]
        out["ours"] = load("127.0.0.1", port, der, clients=CLIENTS, per_client=per_client,
                           keep_alive=False, max_seconds=max_s)
        progress.advance(task)
        out["ours_keep_alive"] = load("127.0.0.1", port, der, clients=CLIENTS,
                                      per_client=per_client, keep_alive=True, max_seconds=max_s)
        progress.advance(task)
    finally:
        runner.stop()
    out["openssl"] = _bench_openssl(ca, der, work, per_client, max_s)
    progress.advance(task)
    progress.done(task)
    ours, ref = out["ours"], out["openssl"]
    out["ratio"] = (ours["per_s"] / ref["per_s"]
                    if ref.get("per_s") and ours.get("per_s") else None)
    return out


def _bench_openssl(ca: Any, der: bytes, work: Path, per_client: int,
                   max_s: float) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    openssl = shutil.which("openssl")
    if openssl is None:
        return {"skipped": "the openssl command is not installed"}
    folder = Path(tempfile.mkdtemp(prefix="ocsp-openssl-", dir=work))
    (folder / "index.txt").write_text(_openssl_index(ca, "auth"))
    (folder / "ca.pem").write_bytes(ca.auth.cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.key").write_bytes(ca.auth.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    port = _free_port()
    proc = subprocess.Popen(
        [openssl, "ocsp", "-port", str(port), "-index", str(folder / "index.txt"),
         "-CA", str(folder / "ca.pem"), "-rsigner", str(folder / "ca.pem"),
         "-rkey", str(folder / "ca.key"), "-nmin", "1440"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not _wait_listening(port):
            return {"skipped": "openssl ocsp did not start listening"}
        result = load("127.0.0.1", port, der, clients=CLIENTS, per_client=per_client,
                      keep_alive=False, max_seconds=max_s)
        result["command"] = "openssl ocsp -port (one process, as a tester would start it)"
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def targets(section: dict[str, Any]) -> list[tuple[str, str, float | None, bool | None]]:
    """(name, target, measured, met) rows for the benchmark's targets table."""
    rows: list[tuple[str, str, float | None, bool | None]] = []
    ratio = section.get("ratio")
    rows.append(("OCSP requests/s: ours / openssl ocsp", f">= {TARGET_RATIO}", ratio,
                 ratio >= TARGET_RATIO if ratio is not None else None))
    p99 = section["ours"].get("p99_ms")
    rows.append((f"OCSP p99 ms at {CLIENTS} clients", f"< {TARGET_P99_MS}", p99,
                 p99 < TARGET_P99_MS if p99 is not None else None))
    return rows


def report(section: dict[str, Any]) -> Any:
    """The section as a rich table."""
    from rich.table import Table

    t = Table(title=f"OCSP responder ({section['clients']} client processes, "
              f"{section['request']})", title_justify="left")
    for col in ("server", "requests/s", "p50", "p99", "max", "requests", "errors"):
        t.add_column(col, justify="left" if col == "server" else "right")

    def row(label: str, f: dict[str, Any]) -> None:
        if f.get("skipped"):
            t.add_row(label, "-", "-", "-", "-", "-", f["skipped"])
            return
        t.add_row(label, f"{f['per_s']:,.0f}", f"{f['p50_ms']:.2f} ms", f"{f['p99_ms']:.2f} ms",
                  f"{f['max_ms']:.2f} ms", str(f["requests"]), str(f["errors"]))

    row("ours, new connection each", section["ours"])
    row("ours, kept-alive connections", section["ours_keep_alive"])
    row("openssl ocsp -port", section["openssl"])
    return t
