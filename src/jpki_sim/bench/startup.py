"""Issuance, renewal and batch issuance; start-up of `jpki-sim --help` and of `serve`."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import ISSUED, RENEW_AT, BenchError, Figure, Progress, Settings
from jpki_sim.bench.inprocess import saved_copy

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
    """Issue with a key stock (the counter's way), issue cold (keys made at issue), renew.

    A card has seven key pairs. ``issue`` takes them from the test CA's key stock,
    filled beforehand (``key_stock_fill``: the cost per key of filling it, side by
    side on all cores); ``issue_cold`` starts each issue with the stock empty, so
    its seven keys are generated then, side by side.
    """
    from jpki_sim.issuer import counter as issuer
    from jpki_sim.issuer.keystock import KEYS_PER_CARD, KeyStock
    from jpki_sim.issuer.lifecycle import FixedClock
    from jpki_sim.profiles.jpki import ids as jpki
    from jpki_sim.profiles.jpki.state import new_store

    issue_fig = Figure("issue_card")
    cold_fig = Figure("issue_card_cold")
    renew_fig = Figure("renew")
    fill_fig = Figure("key_stock_fill")
    base_fig = Figure("two_keys_two_certificates")
    stock = KeyStock.of_ca(ca.directory)
    perf = time.perf_counter
    identity = issuer.default_identity()
    for _ in range(cfg.issues):
        # what issuing a card cost before issues 12 and 13: two fresh key pairs, two
        # certificates (the in-run baseline of the issue-time target)
        t0 = perf()
        for which in ("auth", "sign"):
            key = issuer.generate_key()
            if which == "auth":
                ca.issue_auth(key.public_key(), issued=ISSUED, expires=RENEW_AT)
            else:
                ca.issue_sign(key.public_key(), identity, issued=ISSUED, expires=RENEW_AT)
        base_fig.add(perf() - t0)
    task = progress.task("issue and renew", 2 * cfg.issues + cfg.renewals)
    for _ in range(cfg.issues):
        t0 = perf()
        issuer.issue_card(issuer.default_identity(), ISSUED, ca=ca)
        cold_fig.add(perf() - t0)
        progress.advance(task)
    wanted = KEYS_PER_CARD * cfg.issues + 2 * cfg.renewals + KEYS_PER_CARD * cfg.batch_cards
    t0 = perf()
    made = stock.fill(stock.count() + wanted)
    if made:
        fill_fig.add((perf() - t0) / made)
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
        "issue_cold": cold_fig.to_json(),
        "baseline": base_fig.to_json(),
        "ratio": issue_fig.median / base_fig.median,
        "key_stock_fill": fill_fig.to_json() if fill_fig.samples else None,
        "keys_per_card": KEYS_PER_CARD,
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

    path = saved_copy(save, state, work / "serve-card.json")
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
