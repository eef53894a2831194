"""The benchmark behind ``jpki-sim bench`` and ``tools/bench.py``.

What is measured, and against what (every ratio is taken within one run, since
the machines this runs on are shared and noisy):

- in-process: time per APDU of the card's :meth:`~jpki_sim.engine.Card.process`
  for the commands clients send most, in batches;
- the signature APDU against a bare ``cryptography`` RSA-2048 PKCS#1 v1.5
  signature of the same DigestInfo with the same key, interleaved sample by
  sample so both see the same machine load;
- through pcscd + vpcd: the same commands from a pyscard client, against a
  *null card* (:class:`NullCard`) that answers every APDU with 9000 at once
  over the same kind of socket as our bridge: the transport's own limit;
- issuance (two RSA-2048 key pairs, two certificates), renewal, and batch
  issuance on all cores;
- start-up of ``jpki-sim --help`` and of ``jpki-sim serve`` until pcscd shows
  the card.

Each figure keeps its samples (seconds per operation) and reports median, p95
(nearest rank), min and max. Only the standard library is imported at module
level (and jpki_sim.errors); cryptography, pyscard and rich are imported where used.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from jpki_sim.errors import JpkiSimError

FORMAT = "jpki-sim-bench"
VERSION = 1

#: the lock file the PC/SC tests take, so benchmarks and test runs take turns with the readers

# targets of issue 7 (ratios in one run, on one machine)
TARGET_SELECT_FID_PER_S = 50_000
TARGET_READ_BINARY_PER_S = 20_000
TARGET_SIGNATURE_RATIO = 1.2
TARGET_PCSC_RATIO = 0.8
TARGET_HELP_MS = 300

#: single-APDU commands whose PC/SC rate is held to TARGET_PCSC_RATIO of the null card
PCSC_SIMPLE = ("select_fid", "select_aid", "read_binary_256", "empty_verify")

#: the dates the issuer tests use: a card issued here is inside its renewal window at RENEW_AT
ISSUED = date(2020, 8, 27)
RENEW_AT = date(2025, 2, 1)


# ---------------------------------------------------------------- statistics


class BenchError(JpkiSimError):
    """The card under test misbehaved or a step failed: one line, exit status 1."""



@dataclass
class Figure:
    """Samples of one measurement, in seconds per operation."""

    label: str
    samples: list[float] = field(default_factory=list)
    #: operations timed together in one sample (the sample is their mean)
    ops_per_sample: int = 1
    #: APDUs per operation (a whole-certificate read is several)
    apdus_per_op: int = 1

    def add(self, seconds: float, ops: int = 1) -> None:
        self.samples.append(seconds / ops)

    @property
    def median(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def rate(self) -> float:
        """Operations per second at the median."""
        m = self.median
        return 1.0 / m if m > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        s = self.samples
        return {
            "label": self.label,
            "unit": "s",
            "median": self.median,
            "p95": self.p95,
            "min": min(s) if s else None,
            "max": max(s) if s else None,
            "samples": len(s),
            "ops_per_sample": self.ops_per_sample,
            "apdus_per_op": self.apdus_per_op,
            "per_s": self.rate if s else None,
            "apdus_per_s": self.rate * self.apdus_per_op if s else None,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def timed(fn: Callable[[], Any], n: int) -> float:
    """Seconds for ``n`` calls of ``fn``."""
    perf = time.perf_counter
    t0 = perf()
    for _ in range(n):
        fn()
    return perf() - t0


# ---------------------------------------------------------------- settings


@dataclass
class Settings:
    quick: bool
    runs: int
    #: APDUs per in-process sample
    batch_apdus: int
    #: APDUs per PC/SC sample
    pcsc_apdus: int
    signatures: int
    issues: int
    renewals: int
    batch_cards: int
    help_runs: int
    serve_runs: int
    sections: list[str]
    ports: list[int]
    pcsc_wait: float
    #: PC/SC samples per command
    pcsc_runs: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        from jpki_sim.bench import SECTIONS

        quick = bool(args.quick)
        runs = args.runs if args.runs is not None else (5 if quick else 25)
        if runs < 1:
            from jpki_sim.errors import UserError

            raise UserError("--runs must be at least 1")
        cores = os.cpu_count() or 1
        batch = args.batch if args.batch is not None else (2 if quick else 4 * cores)
        if batch < 0:
            from jpki_sim.errors import UserError

            raise UserError("--batch must be 0 or more")
        sections = list(args.only or SECTIONS)
        if args.no_pcsc and "pcsc" in sections:
            sections.remove("pcsc")
        return cls(
            quick=quick,
            runs=runs,
            batch_apdus=200 if quick else 5000,
            pcsc_apdus=50 if quick else 400,
            signatures=10 if quick else 500,
            issues=2 if quick else 10,
            renewals=1 if quick else 5,
            batch_cards=batch,
            help_runs=3 if quick else 10,
            serve_runs=1 if quick else 5,
            sections=sections,
            ports=list(args.vpcd_port),
            pcsc_runs=runs if quick else 2 * runs,
            pcsc_wait=args.pcsc_wait if args.pcsc_wait is not None else (60.0 if quick else 600.0),
        )


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    versions: dict[str, str | None] = {}
    from importlib import metadata

    for dist in ("cryptography", "pyscard", "jpki-sim"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "loadavg_at_start": load,
        "versions": versions,
    }


# ---------------------------------------------------------------- the card under test

#: the commands measured, as (name, what it is)
COMMANDS = {
    "select_fid": "SELECT EF by FID (00 A4 02 0C 02 000A)",
    "select_aid": "SELECT JPKI AP by AID (00 A4 04 0C 0A ...)",
    "read_binary_256": "READ BINARY 256 bytes (00 B0 01 00 00)",
    "cert_read": "auth certificate, OpenSC style: SELECT, 4-byte header, 256-byte chunks",
    "empty_verify": "empty VERIFY, retry counter query (00 20 00 80)",
    "verify_memory": "VERIFY auth PIN, in-memory card store",
    "verify_file": "VERIFY auth PIN, file-backed card store (2 atomic writes)",
}


class Apdus:
    """The APDUs of the benchmark, built once."""

    def __init__(self) -> None:
        from jpki_sim.profiles.jpki import ids as jpki

        self.select_aid = bytes((0x00, 0xA4, 0x04, 0x0C, len(jpki.JPKI_AID))) + jpki.JPKI_AID
        self.select_auth_cert = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_CERT.to_bytes(2, "big")
        self.select_auth_pin = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_PIN.to_bytes(2, "big")
        self.select_auth_key = bytes.fromhex("00A4020C02") + jpki.EF_AUTH_KEY.to_bytes(2, "big")
        self.read_256 = bytes.fromhex("00B0010000")  # offset 256, Le 00 = 256 bytes
        self.read_header = bytes.fromhex("00B0000004")
        self.empty_verify = bytes.fromhex("00200080")
        pin = jpki.DEFAULT_PINS["auth"].encode()
        self.verify = bytes((0x00, 0x20, 0x00, 0x80, len(pin))) + pin


def cert_read_apdus(header: bytes) -> list[bytes]:
    """The READ BINARY chunks OpenSC sends after the 4-byte header ``30 82 HH LL``."""
    total = ((header[2] << 8) | header[3]) + 4
    out = []
    for offset in range(0, total, 256):
        le = min(256, total - offset) & 0xFF  # Le 00 means 256
        out.append(bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, le)))
    return out


def check(resp: bytes, want_sw: bytes, what: str) -> bytes:
    if resp[-2:] != want_sw:
        raise BenchError(f"{what}: card answered {resp[-2:].hex().upper()}, not {want_sw.hex()}")
    return resp


def make_state(work: Path) -> tuple[Any, Any]:
    """A card state issued by a fresh test CA in ``work`` (and the CA)."""
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.ca import TestCA

    ca = TestCA.open(work / "ca")
    state = issuer.issue_card(issuer.default_identity(), ISSUED, ca=ca)
    return state, ca


# ---------------------------------------------------------------- in-process


def bench_inprocess(cfg: Settings, state: Any, work: Path, progress: Progress) -> dict[str, Any]:
    from jpki_sim.profiles.jpki.build import build_card
    from jpki_sim.profiles.jpki.state import new_store, open_store, save

    a = Apdus()
    ok = b"\x90\x00"
    card = build_card(new_store(copy.deepcopy(state)))
    card.power_on()
    process = card.process
    n = cfg.batch_apdus
    figures = {name: Figure(name, ops_per_sample=n) for name in COMMANDS}

    check(process(a.select_aid), ok, "SELECT AID")
    check(process(a.select_auth_cert), ok, "SELECT EF 000A")
    header = check(process(a.read_header), ok, "READ BINARY header")[:4]
    chunks = cert_read_apdus(header)
    figures["cert_read"].apdus_per_op = 2 + len(chunks)
    figures["cert_read"].ops_per_sample = cert_n = max(1, n // figures["cert_read"].apdus_per_op)

    def read_cert() -> None:
        process(a.select_auth_cert)
        process(a.read_header)
        for chunk in chunks:
            process(chunk)

    file_store = open_store(_saved(save, state, work / "verify-file.json"))
    file_card = build_card(file_store)
    file_card.power_on()
    for c in (card, file_card):
        check(c.process(a.select_aid), ok, "SELECT AID")
        check(c.process(a.select_auth_pin), ok, "SELECT EF 0018")
        check(c.process(a.verify), ok, "VERIFY")  # the PIN is right: counters stay full
    file_n = max(2, n // 200)  # each costs two fsynced writes of the card file
    figures["verify_file"].ops_per_sample = file_n

    def setup_ef() -> None:
        process(a.select_aid)
        process(a.select_auth_cert)

    def setup_pin() -> None:
        process(a.select_aid)
        process(a.select_auth_pin)

    plan: list[tuple[str, Callable[[], None], Callable[[], Any], int]] = [
        ("select_fid", setup_ef, lambda: process(a.select_auth_cert), n),
        ("select_aid", setup_ef, lambda: process(a.select_aid), n),
        ("read_binary_256", setup_ef, lambda: process(a.read_256), n),
        ("cert_read", setup_ef, read_cert, cert_n),
        ("empty_verify", setup_pin, lambda: process(a.empty_verify), n),
        ("verify_memory", setup_pin, lambda: process(a.verify), n),
        ("verify_file", lambda: None, lambda: file_card.process(a.verify), file_n),
    ]
    # the answers are checked once before timing, so a broken card cannot look fast
    setup_ef()
    if len(check(process(a.read_256), ok, "READ BINARY")) != 258:
        raise BenchError("READ BINARY of 256 bytes returned another length")
    setup_pin()
    check(process(a.empty_verify), b"\x63\xc3", "empty VERIFY")
    task = progress.task("in-process APDUs", cfg.runs * len(plan))
    for _run in range(cfg.runs):
        # interleaved: every command sees the same slice of the machine's load
        for name, setup, op, count in plan:
            setup()
            timed(op, max(1, count // 10))  # warm-up
            figures[name].add(timed(op, count), count)
            progress.advance(task)
    progress.done(task)
    writes = file_store.writes
    return {
        "commands": {name: figures[name].to_json() for name in COMMANDS},
        "descriptions": COMMANDS,
        "verify_file_writes": writes,
    }


def _saved(save: Callable[..., None], state: Any, path: Path) -> Path:
    save(copy.deepcopy(state), path)
    return path


def bench_signature(cfg: Settings, state: Any, progress: Progress) -> dict[str, Any]:
    """The signature APDU vs a bare cryptography signature of the same DigestInfo."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from jpki_sim.profiles.jpki.build import build_card
    from jpki_sim.profiles.jpki.signing import SHA256_DIGEST_INFO_PREFIX
    from jpki_sim.profiles.jpki.state import new_store

    a = Apdus()
    ok = b"\x90\x00"
    digest = hashlib.sha256(b"jpki-sim benchmark").digest()
    info = SHA256_DIGEST_INFO_PREFIX + digest
    sign_apdu = bytes((0x80, 0x2A, 0x00, 0x80, len(info))) + info + b"\x00"

    card = build_card(new_store(copy.deepcopy(state)))
    card.power_on()
    process = card.process
    for apdu in (a.select_aid, a.select_auth_pin, a.verify, a.select_auth_key):
        check(process(apdu), ok, f"APDU {apdu.hex()}")
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = load_pem_private_key(state.auth.key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    pad, prehashed = padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())

    def bare() -> bytes:
        return key.sign(digest, pad, prehashed)

    first = check(process(sign_apdu), ok, "COMPUTE DIGITAL SIGNATURE")
    if first[:-2] != bare():
        raise BenchError("the card's signature differs from cryptography's")
    card_fig = Figure("signature_apdu")
    bare_fig = Figure("bare_cryptography")
    perf = time.perf_counter
    total = cfg.signatures
    task = progress.task("signatures", total)
    for i in range(total):
        # alternate which goes first, so neither always follows the other's cache effects
        for fig, fn in ((card_fig, lambda: process(sign_apdu)), (bare_fig, bare))[:: 1 if i % 2
                                                                                     else -1]:
            t0 = perf()
            fn()
            fig.add(perf() - t0)
        progress.advance(task)
    progress.done(task)
    return {
        "card": card_fig.to_json(),
        "bare": bare_fig.to_json(),
        "ratio": card_fig.median / bare_fig.median,
        "scheme": "80 2A 00 80, SHA-256 DigestInfo, PKCS#1 v1.5, RSA-2048",
    }


# ---------------------------------------------------------------- issuance


def _issue_one(ca_dir: str, out: str) -> float:
    """Worker of the batch: issue one card from the CA in ``ca_dir`` and save it."""
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.profiles.jpki.state import save

    t0 = time.perf_counter()
    state = issuer.issue_card(issuer.default_identity(), ISSUED, ca=TestCA.open(ca_dir))
    save(state, out)
    return time.perf_counter() - t0


def bench_issuance(cfg: Settings, state: Any, ca: Any, work: Path,
                   progress: Progress) -> dict[str, Any]:
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.lifecycle import FixedClock
    from jpki_sim.profiles.jpki import ids as jpki
    from jpki_sim.profiles.jpki.state import new_store

    issue_fig = Figure("issue_card")
    renew_fig = Figure("renew")
    task = progress.task("issue and renew", cfg.issues + cfg.renewals)
    perf = time.perf_counter
    for _ in range(cfg.issues):
        t0 = perf()
        issuer.issue_card(issuer.default_identity(), ISSUED, ca=ca)
        issue_fig.add(perf() - t0)
        progress.advance(task)
    pins = {k: jpki.DEFAULT_PINS[k] for k in ("auth", "sign")}
    for _ in range(cfg.renewals):
        store = new_store(copy.deepcopy(state))  # in memory: the counter writes the chip
        t0 = perf()
        issuer.renew(store, pins=pins, ca=ca, clock=FixedClock(RENEW_AT))
        renew_fig.add(perf() - t0)
        progress.advance(task)
    progress.done(task)
    result: dict[str, Any] = {
        "issue": issue_fig.to_json(),
        "renew": renew_fig.to_json(),
        "batch": None,
    }
    if cfg.batch_cards > 0:
        result["batch"] = bench_batch(cfg.batch_cards, ca.directory, work, progress)
    return result


def bench_batch(n: int, ca_dir: Path, work: Path, progress: Progress) -> dict[str, Any]:
    """Issue ``n`` cards on all cores (one process per core)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = os.cpu_count() or 1
    out = work / "batch"
    out.mkdir(exist_ok=True)
    per_card = Figure("batch_card")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # submitted (workers forked) before the progress display starts its thread
        futures = [pool.submit(_issue_one, str(ca_dir), str(out / f"card-{i:04d}.json"))
                   for i in range(n)]
        task = progress.task(f"batch issuance on {workers} cores", n)
        for fut in as_completed(futures):
            per_card.add(fut.result())
            progress.advance(task)
        progress.done(task)
    wall = time.perf_counter() - t0
    saved = len(list(out.glob("card-*.json")))
    if saved != n:
        raise BenchError(f"batch issuance saved {saved} of {n} cards")
    return {
        "cards": n,
        "workers": workers,
        "wall_s": wall,
        "cards_per_s": n / wall,
        "per_card": per_card.to_json(),
    }


# ---------------------------------------------------------------- start-up


def jpki_sim_command() -> list[str]:
    """The CLI run with this interpreter (no PATH or shim in the figure)."""
    return [sys.executable, "-m", "jpki_sim"]


def cached_bytecode_env(work: Path) -> dict[str, str]:
    """Environment for timed subprocesses: bytecode cached, as after a normal install.

    With PYTHONDONTWRITEBYTECODE set (as on some CI images) every start
    compiles the package's sources again; the cache goes to a folder of
    ours (PYTHONPYCACHEPREFIX), so the checkout is not touched.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def bench_help(cfg: Settings, work: Path, progress: Progress) -> dict[str, Any]:
    help_fig = Figure("jpki_sim_help")
    python_fig = Figure("python_pass")
    nocache_fig = Figure("jpki_sim_help_no_bytecode_cache")
    cached = cached_bytecode_env(work)
    uncached = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    uncached.pop("PYTHONPYCACHEPREFIX", None)
    help_cmd = [*jpki_sim_command(), "--help"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
    subprocess.run(help_cmd, env=cached, **quiet)  # type: ignore[call-overload]  # fills the cache
    task = progress.task("start-up of jpki-sim --help", cfg.help_runs)
    for _ in range(cfg.help_runs):
        for fig, cmd, env in ((python_fig, [sys.executable, "-c", "pass"], cached),
                              (help_fig, help_cmd, cached),
                              (nocache_fig, help_cmd, uncached)):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, **quiet)  # type: ignore[call-overload]
            fig.add(time.perf_counter() - t0)
        progress.advance(task)
    progress.done(task)
    return {
        "help": help_fig.to_json(),
        "help_no_bytecode_cache": nocache_fig.to_json(),
        "python": python_fig.to_json(),
        "own_share_s": help_fig.median - python_fig.median,
        "command": " ".join([Path(sys.executable).name, "-m", "jpki_sim", "--help"]),
    }


def bench_serve(cfg: Settings, state: Any, work: Path, port: int, reader: str,
                progress: Progress) -> dict[str, Any]:
    """``jpki-sim serve CARD`` from exec until its ready line (the card seen in pcscd)."""
    import selectors

    from jpki_sim.profiles.jpki.state import save
    from jpki_sim.transport.pcsc import wait_for_card

    path = _saved(save, state, work / "serve-card.json")
    env = cached_bytecode_env(work)
    fig = Figure("serve_ready")
    task = progress.task("start-up of jpki-sim serve", cfg.serve_runs)
    for _ in range(cfg.serve_runs):
        if not wait_for_card(reader, present=False, timeout=5.0):
            raise BenchError(f"reader {reader!r} did not empty before serve")
        cmd = [*jpki_sim_command(), "serve", str(path), "--json", "--no-start-pcscd",
               "--vpcd", f"localhost:{port}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert proc.stdout is not None
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = t0 + 20.0
            while True:
                if not sel.select(max(0.0, deadline - time.perf_counter())):
                    raise BenchError("jpki-sim serve was not ready within 20 s")
                line = proc.stdout.readline()
                if not line:
                    raise BenchError(f"jpki-sim serve exited: {proc.communicate()[1][-500:]}")
                if '"event": "ready"' in line:
                    fig.add(time.perf_counter() - t0)
                    break
        finally:
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        progress.advance(task)
    progress.done(task)
    wait_for_card(reader, present=False, timeout=5.0)
    return fig.to_json()


# ---------------------------------------------------------------- PC/SC


class NullCard:
    """A vpcd card that answers every APDU at once: the transport's limit.

    The answer is 9000, except for a short READ BINARY (``00 B0 P1 P2 Le``),
    answered with Ne zero bytes and 9000, as long as the card's own answer.

    Same socket handling as :class:`jpki_sim.vpcd.VpcdBridge`: TCP_NODELAY,
    TCP_QUICKACK re-armed before and after every ``recv`` (Debian 12's vpcd
    sends length and payload in two writes, and without it every message
    waits for our delayed ACK, ~40 ms), one write per reply, and a byte-wise
    frame parser so split or merged messages are handled.
    """

    def __init__(self, port: int, atr: bytes, host: str = "localhost") -> None:
        self.port = port
        self.host = host
        self.atr_frame = len(atr).to_bytes(2, "big") + atr
        self.attached = threading.Event()
        self.apdus = 0
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"null-card-{port}", daemon=True)

    def start(self) -> NullCard:
        self._sock = socket.create_connection((self.host, self.port), timeout=5.0)
        self._sock.settimeout(None)
        self._thread.start()
        return self

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        tcp = socket.IPPROTO_TCP
        quickack = getattr(socket, "TCP_QUICKACK", None)
        sock.setsockopt(tcp, socket.TCP_NODELAY, 1)
        recv, sendall, setopt = sock.recv, sock.sendall, sock.setsockopt
        ok = b"\x00\x02\x90\x00"
        buf = bytearray()
        try:
            while True:
                if quickack is not None:
                    setopt(tcp, quickack, 1)
                data = recv(65537)
                if quickack is not None:
                    setopt(tcp, quickack, 1)
                if not data:
                    return
                buf += data
                while len(buf) >= 2:
                    n = (buf[0] << 8) | buf[1]
                    if len(buf) < n + 2:
                        break
                    if n == 1:
                        if buf[2] == 0x04:  # get ATR: the only control code with a reply
                            self.attached.set()
                            sendall(self.atr_frame)
                    elif n > 1:
                        self.apdus += 1
                        if n == 5 and buf[3] == 0xB0:
                            # READ BINARY: Ne zero bytes, so data-returning commands can
                            # be compared with a floor that carries as many bytes
                            ne = buf[6] or 256
                            sendall((ne + 2).to_bytes(2, "big") + bytes(ne) + b"\x90\x00")
                        else:
                            sendall(ok)
                    del buf[: n + 2]
        except OSError:
            return

    def stop(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._thread.join(5.0)
            sock.close()
            self._sock = None


class PcscUnavailable(Exception):
    """The PC/SC part cannot run here; the message says why."""


@contextmanager
def pcsc_lock(timeout: float) -> Iterator[None]:
    """Take the PC/SC tests' lock so a benchmark and a test run never share the readers."""
    from jpki_sim.transport import pcscd

    try:
        lock = pcscd.take_reader_lock(timeout)
    except pcscd.ReadersBusy as exc:
        raise PcscUnavailable(str(exc)) from None
    try:
        yield
    finally:
        if lock is not None:
            lock.close()


@contextmanager
def pcsc_stack(log_dir: Path) -> Iterator[dict[str, Any]]:
    """pcscd with vpcd readers: the running one, or (as root) one we start and stop."""
    from jpki_sim.transport import pcscd

    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        raise PcscUnavailable("pyscard is not installed (pip install 'jpki-sim[pcsc]')") from None
    if pcscd.vpcd_driver() is None:
        raise PcscUnavailable("the vpcd driver is not installed (apt-get install vsmartcard-vpcd)")
    started = None
    if not pcscd.is_running():
        if pcscd.find_binary() is None:
            raise PcscUnavailable("pcscd is not installed (tools/setup.sh installs it)")
        if not pcscd.is_root():
            raise PcscUnavailable("pcscd is not running and only root can start it")
        try:
            started = pcscd.Pcscd(log_path=log_dir / "pcscd.log").start()
        except pcscd.PcscdError as exc:
            raise PcscUnavailable(str(exc)) from None
    try:
        try:
            readers = pcscd.wait_for_readers(timeout=10.0)
        except pcscd.PcscdError as exc:
            raise PcscUnavailable(str(exc)) from None
        yield {"readers": readers, "started_pcscd": started is not None,
               "pcscd_pid": started.pid if started else pcscd.running_pid()}
    finally:
        if started is not None:
            started.stop()


class Client:
    """A bare pyscard client: APDUs converted to lists once, no checks in the timed loop."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.s = scard
        code, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if code != scard.SCARD_S_SUCCESS:
            raise BenchError(f"SCardEstablishContext: {scard.SCardGetErrorMessage(code)}")
        code, self.card, self.proto = scard.SCardConnect(
            self.ctx, reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if code != scard.SCARD_S_SUCCESS:
            scard.SCardReleaseContext(self.ctx)
            raise BenchError(f"SCardConnect {reader!r}: {scard.SCardGetErrorMessage(code)}")

    def op(self, apdu: bytes) -> Callable[[], Any]:
        transmit, card, proto, raw = self.s.SCardTransmit, self.card, self.proto, list(apdu)
        return lambda: transmit(card, proto, raw)

    def transmit(self, apdu: bytes) -> bytes:
        code, resp = self.s.SCardTransmit(self.card, self.proto, list(apdu))
        if code != self.s.SCARD_S_SUCCESS:
            raise BenchError(f"SCardTransmit: {self.s.SCardGetErrorMessage(code)}")
        return bytes(resp)

    def close(self) -> None:
        s = self.s
        s.SCardDisconnect(self.card, s.SCARD_LEAVE_CARD)
        s.SCardReleaseContext(self.ctx)


def _reader(port: int, readers: list[str]) -> str:
    from jpki_sim.transport import pcscd

    name = pcscd.pcsc_reader_name(port, readers)
    if name is None:
        raise PcscUnavailable(f"no vpcd reader listens on port {port} ({readers})")
    return name


def _attach(start: Callable[[], Any], attached: Any, reader: str) -> None:
    from jpki_sim.transport.pcsc import wait_for_card

    if not wait_for_card(reader, present=False, timeout=3.0):
        raise PcscUnavailable(f"reader {reader!r} already holds a card (another server?)")
    start()
    if not (attached.wait(5.0) and wait_for_card(reader, present=True, timeout=5.0)):
        raise BenchError(f"the card did not appear in {reader!r} within 5 s")


def _host(kind: str, port: int, state: Any, attached: Any, stop: Any) -> None:
    """Child process: serve one card on ``port`` until ``stop`` is set."""
    import gc

    from jpki_sim.profiles.jpki import ids as jpki

    # the child inherits the benchmark's whole heap; a fresh `jpki-sim serve` has
    # a small one. Frozen objects are left out of garbage collections, so the card
    # does not pay for scanning what the benchmark allocated.
    gc.freeze()

    server: Any
    if kind == "null":
        server = NullCard(port, jpki.ATR).start()
    else:
        from jpki_sim.profiles.jpki.build import build_card
        from jpki_sim.profiles.jpki.state import new_store
        from jpki_sim.transport.vpcd import VpcdBridge

        server = VpcdBridge(build_card(new_store(copy.deepcopy(state))), port=port,
                            label="bench card")
        server.start()
    try:
        if server.attached.wait(10.0):
            attached.set()
        stop.wait()
    finally:
        server.stop()


class HostedCard:
    """A card served from a child process, as ``jpki-sim serve`` serves it.

    The PC/SC client (this process) and the card then share no interpreter
    lock, as with any real client; the null card is hosted the same way.
    """

    def __init__(self, kind: str, port: int, state: Any) -> None:
        import multiprocessing

        # fork: the child inherits the card state, and `python -m jpki_sim` has no
        # __main__ guard for spawn to re-import
        ctx = multiprocessing.get_context("fork")
        self.attached = ctx.Event()
        self._stop = ctx.Event()
        self.process = ctx.Process(target=_host, args=(kind, port, state, self.attached,
                                                        self._stop),
                                   name=f"bench-{kind}-{port}", daemon=True)

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        if self.process.pid is None:
            return
        self._stop.set()
        self.process.join(10.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)


def bench_pcsc(cfg: Settings, state: Any, work: Path, progress: Progress) -> dict[str, Any]:
    from jpki_sim.transport.pcsc import wait_for_card

    with pcsc_lock(cfg.pcsc_wait), pcsc_stack(work) as stack:
        ports = cfg.ports
        card_port, null_port = ports[0], ports[-1]
        card_reader = _reader(card_port, stack["readers"])
        null_reader = _reader(null_port, stack["readers"])
        a = Apdus()
        ok = b"\x90\x00"
        n = cfg.pcsc_apdus
        null_fig = Figure("null_card", ops_per_sample=n)
        figures = {name: Figure(name, ops_per_sample=n) for name in COMMANDS
                   if name != "verify_file"}

        card = HostedCard("card", card_port, state)
        null = HostedCard("null", null_port, state)
        same_slot = card_port == null_port
        clients: dict[str, Client] = {}

        pairs: dict[str, list[float]] = {name: [] for name in figures}

        def command(name: str, fig: Figure) -> list[bytes]:
            """Put the card in the state ``name`` needs; the APDUs of one operation."""
            c = clients["card"]
            c.transmit(a.select_aid)
            if name in ("select_fid", "select_aid", "read_binary_256", "cert_read"):
                c.transmit(a.select_auth_cert)
            else:
                c.transmit(a.select_auth_pin)
            if name == "cert_read":
                header = c.transmit(a.read_header)[:4]
                apdus = [a.select_auth_cert, a.read_header, *cert_read_apdus(header)]
            else:
                apdus = [{"select_fid": a.select_auth_cert, "select_aid": a.select_aid,
                          "read_binary_256": a.read_256, "empty_verify": a.empty_verify,
                          "verify_memory": a.verify}[name]]
            fig.apdus_per_op = len(apdus)
            fig.ops_per_sample = max(1, n // len(apdus))
            return apdus

        def sample(client: Client, apdus: list[bytes], count: int) -> float:
            """Seconds per APDU of ``count`` operations of ``apdus``."""
            ops = [client.op(x) for x in apdus]
            if len(ops) == 1:
                op = ops[0]
            else:
                def op() -> None:
                    for o in ops:
                        o()
            timed(op, max(1, count // 10))  # warm-up
            return timed(op, count) / (count * len(apdus))

        def run_null(count: int) -> None:
            """The transport's floor: the null card's 9000 to SELECT."""
            null_fig.add(sample(clients["null"], [a.select_auth_cert], count))

        def check_card() -> None:
            c = clients["card"]
            check(c.transmit(a.select_aid), ok, "SELECT AID over PC/SC")
            check(c.transmit(a.select_auth_cert), ok, "SELECT EF over PC/SC")
            if len(check(c.transmit(a.read_256), ok, "READ BINARY over PC/SC")) != 258:
                raise BenchError("READ BINARY over PC/SC returned another length")
            check(c.transmit(a.select_auth_pin), ok, "SELECT PIN EF over PC/SC")
            check(c.transmit(a.verify), ok, "VERIFY over PC/SC")
            check(c.transmit(a.empty_verify), b"\x63\xc3", "empty VERIFY over PC/SC")

        try:
            task = None
            if same_slot:
                # one slot: the null card's runs, then ours (attaching takes a pcscd poll)
                _attach(null.start, null.attached, null_reader)
                clients["null"] = Client(null_reader)
                task = progress.task("through pcscd + vpcd", cfg.pcsc_runs * (len(figures) + 1))
                for _ in range(cfg.pcsc_runs):
                    run_null(n)
                    progress.advance(task)
                clients.pop("null").close()
                null.stop()
                _attach(card.start, card.attached, card_reader)
                clients["card"] = Client(card_reader)
                check_card()
                for _ in range(cfg.pcsc_runs):
                    for name, fig in figures.items():
                        apdus = command(name, fig)
                        per_apdu = sample(clients["card"], apdus, fig.ops_per_sample)
                        fig.add(per_apdu * fig.apdus_per_op)
                        progress.advance(task)
            else:
                # two slots, both attached. Every card sample is paired with a null-card
                # sample of the same APDUs (so answers of the same sizes) taken right
                # before or after it, the order alternating: both see the same moment
                # of a noisy machine. The plain 9000 floor is sampled alongside.
                _attach(null.start, null.attached, null_reader)
                _attach(card.start, card.attached, card_reader)
                clients["null"] = Client(null_reader)
                clients["card"] = Client(card_reader)
                check_card()
                task = progress.task("through pcscd + vpcd", cfg.pcsc_runs * len(figures))
                for i in range(cfg.pcsc_runs):
                    run_null(n)
                    for name, fig in figures.items():
                        apdus = command(name, fig)
                        count = fig.ops_per_sample
                        if i % 2:
                            t_card = sample(clients["card"], apdus, count)
                            t_null = sample(clients["null"], apdus, count)
                        else:
                            t_null = sample(clients["null"], apdus, count)
                            t_card = sample(clients["card"], apdus, count)
                        fig.add(t_card * fig.apdus_per_op)
                        pairs[name].append(t_null / t_card)
                        progress.advance(task)
            progress.done(task)
            serve = None
            if "startup" in cfg.sections:
                for c in clients.values():
                    c.close()
                clients.clear()
                card.stop()
                wait_for_card(card_reader, present=False, timeout=5.0)
                serve = bench_serve(cfg, state, work, card_port, card_reader, progress)
        finally:
            for c in clients.values():
                try:
                    c.close()
                except Exception:
                    pass
            card.stop()
            null.stop()
        ratios_9000 = {name: fig.rate * fig.apdus_per_op / null_fig.rate
                       for name, fig in figures.items()}
        if same_slot:
            ratio_method = "median card APDU rate / median rate of the null card's 9000"
            ratios = ratios_9000
        else:
            ratio_method = ("median over paired samples of null-card time / card time per APDU, "
                            "both sent the same APDUs")
            ratios = {name: percentile(pairs[name], 50) for name in figures}
        return {
            "ratio_method": ratio_method,
            "ratios_vs_9000": ratios_9000,
            "readers": {"card": card_reader, "null_card": null_reader},
            "same_slot": same_slot,
            "hosting": "each card in a child process (as jpki-sim serve); pyscard client here",
            "started_pcscd": stack["started_pcscd"],
            "null_card": null_fig.to_json(),
            "commands": {name: fig.to_json() for name, fig in figures.items()},
            "ratios": ratios,
            "serve_startup": serve,
        }


# ---------------------------------------------------------------- progress display


class Progress:
    """rich progress bars on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._cls = RichProgress
            self._columns = (TextColumn("{task.description:<34}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn())
            self._console = Console(stderr=True)

    def task(self, label: str, total: int) -> Any:
        if not hasattr(self, "_cls"):
            return None
        if self._progress is None:
            self._progress = self._cls(*self._columns, console=self._console, transient=True)
            self._progress.start()
        return self._progress.add_task(label, total=total)

    def advance(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task)

    def done(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


# ---------------------------------------------------------------- targets and report


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: float | None, met: bool | None) -> None:
        out.append({"name": name, "target": target, "measured": measured, "met": met})

    inp = doc.get("inprocess")
    if inp:
        sel = inp["commands"]["select_fid"]["per_s"]
        rb = inp["commands"]["read_binary_256"]["per_s"]
        add("in-process SELECT-by-FID APDU/s", f">= {TARGET_SELECT_FID_PER_S:,}", sel,
            sel >= TARGET_SELECT_FID_PER_S)
        add("in-process READ BINARY 256 APDU/s", f">= {TARGET_READ_BINARY_PER_S:,}", rb,
            rb >= TARGET_READ_BINARY_PER_S)
    sig = doc.get("signature")
    if sig:
        add("signature APDU / bare cryptography", f"<= {TARGET_SIGNATURE_RATIO}", sig["ratio"],
            sig["ratio"] <= TARGET_SIGNATURE_RATIO)
    pcsc = doc.get("pcsc")
    if pcsc and pcsc.get("available"):
        for name in PCSC_SIMPLE:
            r = pcsc["ratios"][name]
            add(f"PC/SC {name} / null card", f">= {TARGET_PCSC_RATIO}", r, r >= TARGET_PCSC_RATIO)
    start = doc.get("startup")
    if start and start.get("help"):
        ms = start["help"]["median"] * 1000
        add("jpki-sim --help ms", f"< {TARGET_HELP_MS}", ms, ms < TARGET_HELP_MS)
    return out


def run_all(cfg: Settings, progress: Progress) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "quick": cfg.quick,
        "runs": cfg.runs,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "sections": cfg.sections,
        "inprocess": None,
        "signature": None,
        "issuance": None,
        "startup": None,
        "pcsc": None,
        "notes": [],
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jpki-sim-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        state, ca = make_state(work)
        doc["setup_s"] = time.perf_counter() - t0
        if "inprocess" in cfg.sections:
            doc["inprocess"] = bench_inprocess(cfg, state, work, progress)
        if "signature" in cfg.sections:
            doc["signature"] = bench_signature(cfg, state, progress)
        if "issuance" in cfg.sections:
            doc["issuance"] = bench_issuance(cfg, state, ca, work, progress)
        if "startup" in cfg.sections:
            doc["startup"] = bench_help(cfg, work, progress)
            doc["startup"]["serve"] = None
        if "pcsc" in cfg.sections:
            try:
                pcsc = bench_pcsc(cfg, state, work, progress)
                pcsc["available"] = True
                pcsc["skipped"] = None
                if doc["startup"] is not None:
                    doc["startup"]["serve"] = pcsc.pop("serve_startup")
                else:
                    pcsc.pop("serve_startup")
                doc["pcsc"] = pcsc
            except PcscUnavailable as exc:
                doc["pcsc"] = {"available": False, "skipped": str(exc)}
                doc["notes"].append(f"PC/SC part skipped: {exc}")
        else:
            doc["pcsc"] = {"available": False, "skipped": "not requested (--no-pcsc or --only)"}
        if doc["startup"] is not None and doc["startup"]["serve"] is None:
            doc["startup"]["serve_skipped"] = "needs the PC/SC part"
    doc["total_s"] = time.perf_counter() - t_start
    doc["targets"] = targets(doc)
    return doc


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:,.1f} µs"
    if s < 1:
        return f"{s * 1e3:,.2f} ms"
    return f"{s:,.2f} s"


def _spread(f: dict[str, Any]) -> str:
    return f"{_fmt_time(f['min'])} – {_fmt_time(f['max'])}"


def print_report(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 120)
    m = doc["machine"]
    con.print(f"[bold]jpki-sim bench[/] {'(quick) ' if doc['quick'] else ''}{doc['started']}  "
              f"{m['nproc']} × {m['cpu']}, Python {m['python']}, {m['os']}")
    con.print(f"load average at start: {m['loadavg_at_start']}  (shared machine: compare only "
              f"figures of one run)", style="dim")

    def timing_table(title: str, rows: list[tuple[str, dict[str, Any], str]],
                     rate_col: str) -> Table:
        t = Table(title=title, title_justify="left")
        t.add_column("what")
        t.add_column(rate_col, justify="right")
        t.add_column("median", justify="right")
        t.add_column("p95", justify="right")
        t.add_column("min – max", justify="right")
        t.add_column("note")
        for label, f, note in rows:
            t.add_row(label, _fmt_rate(f["apdus_per_s"]), _fmt_time(f["median"]),
                      _fmt_time(f["p95"]), _spread(f), note)
        return t

    inp = doc.get("inprocess")
    if inp:
        rows = []
        for name, f in inp["commands"].items():
            note = f"{f['apdus_per_op']} APDUs per read" if f["apdus_per_op"] > 1 else ""
            rows.append((name, f, note))
        con.print(timing_table("in-process (Card.process)", rows, "APDU/s"))
    sig = doc.get("signature")
    if sig:
        con.print(timing_table("signature (RSA-2048, PKCS#1 v1.5)", [
            ("80 2A signature APDU", sig["card"], ""),
            ("bare cryptography sign", sig["bare"], ""),
        ], "per s"))
        con.print(f"  overhead ratio (median APDU / median bare): [bold]{sig['ratio']:.3f}[/]")
    pcsc = doc.get("pcsc")
    if pcsc and pcsc.get("available"):
        rows = [("null card (9000 at once)", pcsc["null_card"], "the transport's limit")]
        for name, f in pcsc["commands"].items():
            note = f"{pcsc['ratios'][name]:.2f} × null"
            if not pcsc["same_slot"]:
                note += f" (vs its 9000: {pcsc['ratios_vs_9000'][name]:.2f})"
            rows.append((name, f, note))
        slot = "one slot, in turn" if pcsc["same_slot"] else "two slots, interleaved"
        con.print(timing_table(f"through pcscd + vpcd (pyscard client; {slot})", rows, "APDU/s"))
    elif pcsc:
        con.print(f"[yellow]PC/SC part skipped:[/] {pcsc['skipped']}")
    iss = doc.get("issuance")
    if iss:
        rows = [("issue card (2 keys, 2 certs)", iss["issue"], ""),
                ("renew (2 keys, 2 certs, revoke)", iss["renew"], "")]
        b = iss.get("batch")
        if b:
            rows.append((f"batch: {b['cards']} cards", b["per_card"],
                         f"{b['cards_per_s']:.1f} cards/s on {b['workers']} cores, "
                         f"{b['wall_s']:.1f} s wall"))
        con.print(timing_table("issuance", rows, "per s"))
    st = doc.get("startup")
    if st:
        rows = [("jpki-sim --help", st["help"], f"{st['own_share_s'] * 1000:.0f} ms over python"),
                ("  without bytecode cache", st["help_no_bytecode_cache"],
                 "PYTHONDONTWRITEBYTECODE=1"),
                ("python -c pass", st["python"], "interpreter floor")]
        if st.get("serve"):
            rows.append(("jpki-sim serve → card in pcscd", st["serve"], "includes a pcscd poll"))
        con.print(timing_table("start-up (subprocess)", rows, "per s"))
        if not st.get("serve"):
            con.print(f"  serve start-up skipped: {st.get('serve_skipped')}", style="dim")
    t = Table(title="targets (issue 7)", title_justify="left")
    for col in ("target", "required", "measured", "met"):
        t.add_column(col, justify="left" if col == "target" else "right")
    for row in doc["targets"]:
        measured = row["measured"]
        text = f"{measured:,.0f}" if measured >= 100 else f"{measured:.3f}"
        t.add_row(row["name"], row["target"], text,
                  "[green]yes[/]" if row["met"] else "[red]NO[/]")
    con.print(t)
    for note in doc["notes"]:
        con.print(f"note: {note}", style="yellow")
    con.print(f"total {doc['total_s']:.1f} s", style="dim")


def run(args: argparse.Namespace) -> int:
    cfg = Settings.from_args(args)
    progress = Progress(enabled=sys.stderr.isatty() and not args.json)
    try:
        doc = run_all(cfg, progress)
    finally:
        progress.close()
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if args.save:
        Path(args.save).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_report(doc)
    return 0
