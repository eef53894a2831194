"""What the control layer costs an APDU through pcscd: the served card against the bare one.

The same card hosted twice, as ``jpki-sim serve`` serves it (under control, the
control service running) and bare (its engine straight behind the vpcd bridge),
sent the same APDUs in the same run. With two vpcd slots both are attached and
every served sample is paired with a bare sample taken right before or after it
(the order alternating); halfway through, the two cards change slots, so neither
slot's own speed counts. With one slot they take turns in blocks (bare, served,
served, bare, ...). The figure per command is served time / bare time per APDU,
with a bootstrap 95 % interval; the control layer has **no measurable cost** when
the interval reaches 1 (or below) for every command.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import Figure, Progress, Settings, percentile, timed
from jpki_sim.bench.inprocess import Apdus, check
from jpki_sim.bench.pcsc import (
    Client,
    HostedCard,
    _attach,
    _reader,
    card_cpu,
    pcsc_lock,
    pcsc_stack,
    release,
    single_apdu,
)

#: the commands compared (one APDU each, repeated); verify_memory: a right PIN, the card
#: store in memory (the try spent and restored: two commits)
CONTROL_COMMANDS = ("select_fid", "select_aid", "read_binary_256", "empty_verify",
                    "verify_memory")
#: bootstrap resamples for the intervals (a fixed seed: the same samples, the same interval)
BOOTSTRAP = 2000


def _interval(ratios: Callable[[random.Random], float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of a bootstrapped statistic."""
    rnd = random.Random(1)
    stats = sorted(ratios(rnd) for _ in range(BOOTSTRAP))
    return stats[int(0.025 * BOOTSTRAP)], stats[int(0.975 * BOOTSTRAP) - 1]


def paired_ratio(ratios: list[float]) -> dict[str, Any]:
    """Median of paired served/bare ratios, and its bootstrap 95 % interval."""
    med = percentile(ratios, 50)
    lo, hi = _interval(lambda rnd: percentile(rnd.choices(ratios, k=len(ratios)), 50))
    return {"ratio": med, "ci95": [lo, hi]}


def blocks_ratio(served: list[float], bare: list[float]) -> dict[str, Any]:
    """Median served time / median bare time (unpaired samples), and its interval."""
    med = percentile(served, 50) / percentile(bare, 50)
    lo, hi = _interval(lambda rnd: percentile(rnd.choices(served, k=len(served)), 50)
                       / percentile(rnd.choices(bare, k=len(bare)), 50))
    return {"ratio": med, "ci95": [lo, hi]}


def bench_control(cfg: Settings, state: Any, work: Path, progress: Progress) -> dict[str, Any]:
    a = Apdus()
    ok = b"\x90\x00"
    n = cfg.pcsc_apdus
    rounds = max(2, cfg.control_runs)
    figures = {kind: {name: Figure(f"{kind} {name}", ops_per_sample=n)
                      for name in CONTROL_COMMANDS} for kind in ("served", "bare")}
    pairs: dict[str, list[float]] = {name: [] for name in CONTROL_COMMANDS}

    def sample(client: Client, name: str) -> float:
        """Seconds per APDU of ``n`` of command ``name`` (the card put in its state first)."""
        ef, apdu = single_apdu(a, name)
        client.transmit(a.select_aid)
        client.transmit(ef)
        op = client.op(apdu)
        timed(op, max(1, n // 10))  # warm-up
        return timed(op, n) / n

    def check_card(client: Client) -> None:
        check(client.transmit(a.select_aid), ok, "SELECT AID over PC/SC")
        check(client.transmit(a.select_auth_pin), ok, "SELECT PIN EF over PC/SC")
        check(client.transmit(a.verify), ok, "VERIFY over PC/SC")
        check(client.transmit(a.empty_verify), b"\x63\xc3", "empty VERIFY over PC/SC")

    with pcsc_lock(cfg.pcsc_wait), pcsc_stack(work) as stack:
        ports = cfg.ports
        same_slot = ports[0] == ports[-1]
        readers = [_reader(p, stack["readers"]) for p in (ports[0], ports[-1])]
        # phases: which card sits in which slot; two slots: swapped halfway; one slot:
        # blocks in turn, ABBA, so a drift of the machine weighs on both alike
        phases: list[tuple[str, ...]]
        if same_slot:
            phases = [("bare",), ("served",), ("served",), ("bare",)]
        else:
            phases = [("bare", "served"), ("served", "bare")]
        per_phase = max(1, rounds // len(phases))
        task = progress.task("control layer through pcscd", per_phase * len(phases))
        for phase, kinds in enumerate(phases):
            hosted: list[HostedCard] = []
            clients: dict[str, Client] = {}
            try:
                for slot, kind in enumerate(kinds):
                    card = HostedCard(kind, (ports[0], ports[-1])[slot], state,
                                      control=kind == "served")
                    hosted.append(card)
                    _attach(card.start, card.attached, readers[slot])
                    clients[kind] = Client(readers[slot])
                    check_card(clients[kind])
                for i in range(per_phase):
                    for name in CONTROL_COMMANDS:
                        if same_slot:
                            kind = kinds[0]
                            figures[kind][name].add(sample(clients[kind], name))
                            continue
                        order = ("served", "bare") if (i + phase) % 2 else ("bare", "served")
                        t = {kind: sample(clients[kind], name) for kind in order}
                        for kind in order:
                            figures[kind][name].add(t[kind])
                        pairs[name].append(t["served"] / t["bare"])
                    progress.advance(task)
            finally:
                release(clients.values(), hosted)
                if phase < len(phases) - 1:
                    from jpki_sim.transport.pcsc import wait_for_card

                    for reader in dict.fromkeys(readers):
                        wait_for_card(reader, present=False, timeout=5.0)
        progress.done(task)

    commands: dict[str, Any] = {}
    for name in CONTROL_COMMANDS:
        served, bare = figures["served"][name], figures["bare"][name]
        if same_slot:
            fig = blocks_ratio(served.samples, bare.samples)
        else:
            fig = paired_ratio(pairs[name])
        commands[name] = {**fig, "served": served.to_json(), "bare": bare.to_json()}
    return {
        "ratio_method": (
            "median served time / median bare time per APDU, blocks in turn on one slot "
            "(bare, served, served, bare); bootstrap 95 % interval" if same_slot else
            "median over paired samples of served time / bare time per APDU, both cards "
            "attached, swapping slots halfway; bootstrap 95 % interval"),
        "same_slot": same_slot,
        "rounds": per_phase * len(phases),
        "apdus_per_sample": n,
        "readers": readers if not same_slot else readers[:1],
        "card_cpu": card_cpu(),
        "commands": commands,
        "measurable_cost": [name for name, c in commands.items() if c["ci95"][0] > 1.0],
    }
