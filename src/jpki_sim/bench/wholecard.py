"""Through pcscd: a thorough client's read of the whole card, against a null card of its lengths.

The read is what soltia48/myna-card's ``examples/read_card.rs`` reads with the
helper PIN and 照合番号A, every EF those open read as that client reads them
(each EF selected, a 256-byte READ BINARY, then the rest its TLV header names;
certificates OpenSC's way): the MF level's data objects and CV chain, the
共通AP card info, the helper AP (EF 0001-0008 after the PIN), the surface AP
(EF 0002-0006 after 照合番号A), the JPKI AP (token info, the certificates that
need no PIN, the two retry counters). That is the target's figure. A second
figure adds what read_card.rs does besides reading: a challenge signed by the
surface AP's key (GET CHALLENGE, ``80 2A 00 00``), whose RSA private-key
operation the null card does not do (the signature section compares it with a
bare signature instead).

The APDUs are recorded once from the card in this process; the timed runs
replay them through pcscd. The null card (:class:`NullCard` with ``lengths``)
answers each APDU of the sequence with as many bytes as the card did, so both
carry the same data through pcscd and pyscard; each card sample is paired with
a null sample taken right before or after it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import BenchError, Figure, Progress, Settings, percentile, timed
from jpki_sim.bench.pcsc import (
    Client,
    HostedCard,
    _attach,
    _reader,
    card_cpu,
    pcsc_lock,
    pcsc_stack,
)

#: the target (issue 13): the whole-card read at least this fraction of the null card's rate
TARGET_WHOLE_CARD_RATIO = 0.9


def record_read(state: Any, *, with_challenge: bool = False) -> list[tuple[bytes, bytes]]:
    """The APDUs of one whole-card read and the card's answers, from an in-process card.

    ``with_challenge``: then a challenge signed by the surface AP's key, as
    read_card.rs does after reading the card face.
    """
    from jpki_sim.profiles import registry
    from jpki_sim.profiles.jpki import ids as jpki
    from jpki_sim.profiles.jpki.client import JpkiClient
    from jpki_sim.profiles.jpki.state import new_store
    from jpki_sim.transport.inprocess import InProcessTransport

    if state.kenmen is None:
        raise BenchError("the card under test has no 券面 applications")
    card = registry.get("jpki").build(new_store(copy.deepcopy(state)))
    card.power_on()
    exchanges: list[tuple[bytes, bytes]] = []

    class Recorder:
        def xfer(self, command: bytes, response: bytes, started: float, duration: float) -> None:
            exchanges.append((command, response))

        def reset(self, atr: bytes, kind: str = "warm") -> None:
            pass

    client = JpkiClient(InProcessTransport(card), observer=Recorder())
    # the MF level (the card manager brings it back), its objects and CV chain
    client.select_aid(jpki.CARD_MANAGER_AID)
    for tag in (0x0045, 0x00F8, 0x7F21, 0x00F7):
        client.get_data(tag)
    # the 共通AP: the contact ATR and the card info record
    client.select_aid(jpki.COMMON_AID)
    client.get_data(0x5F51)
    client.card_info()
    # the helper AP: its certificate and basic info, the PIN, then everything it opens
    client.kenmen_read("helper", jpki.EF_HELPER_CERTIFICATE)
    client.kenmen_read("helper", jpki.EF_HELPER_AP_INFO)
    client.verify_pin("helper", state.pins["helper"].value)
    for fid in (0x0007, 0x0006, 0x0001, 0x0002, 0x0003, 0x0008):
        client.kenmen_read("helper", fid)
    client.read_physical(jpki.EF_HELPER_MY_NUMBER)  # what EF 0003's DF31 digest covers
    # the surface AP: certificate, basic info, 照合番号A, what it opens, a challenge
    client.kenmen_read("surface", jpki.EF_SURFACE_CERTIFICATE)
    client.kenmen_read("surface", jpki.EF_SURFACE_INFO)
    client.verify_pin("surface-a", state.pins["surface-a"].value)
    for fid in (0x0002, 0x0005, 0x0006):
        client.kenmen_read("surface", fid)
    # the JPKI AP: what a reader reads with no PIN
    client.token_label()
    client.certificate_presence()
    for which in ("auth", "auth-ca", "sign-ca"):
        client.read_certificate(which)
    for pin in ("auth", "sign"):
        client.pin_status(pin)
    if with_challenge:
        client.app_sign("surface", client.get_challenge(16))
    return exchanges


def _commands(apdus: list[bytes]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for command in apdus:
        key = {0xA4: "SELECT", 0xB0: "READ BINARY", 0xCA: "GET DATA", 0xB2: "READ RECORD",
               0x20: "VERIFY", 0x84: "GET CHALLENGE", 0x2A: "COMPUTE DIGITAL SIGNATURE"}.get(
            command[1], f"INS {command[1]:02X}")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _check(card: Client, exchanges: list[tuple[bytes, bytes]]) -> None:
    """The card answers over PC/SC as it did in-process (lengths and status words)."""
    for command, response in exchanges:
        got = card.transmit(command)
        if len(got) != len(response) or got[-2:] != response[-2:]:
            raise BenchError(f"{command[:4].hex().upper()} answered {got[-2:].hex().upper()} "
                             f"over PC/SC, {response[-2:].hex().upper()} in-process")


class _Sampler:
    """Timed whole reads of one sequence by one client."""

    def __init__(self, cfg: Settings, apdus: list[bytes]) -> None:
        self.apdus = apdus
        self.reads = max(1, cfg.pcsc_apdus // len(apdus))

    def figure(self, label: str) -> Figure:
        fig = Figure(label, ops_per_sample=self.reads)
        fig.apdus_per_op = len(self.apdus)
        return fig

    def __call__(self, client: Client) -> float:
        ops = [client.op(x) for x in self.apdus]

        def read() -> None:
            for op in ops:
                op()

        return timed(read, self.reads) / self.reads


def _summary(exchanges: list[tuple[bytes, bytes]], card_fig: Figure, null_fig: Figure,
             ratio: float) -> dict[str, Any]:  # fmt: skip
    return {"apdus": len(exchanges), "bytes_answered": sum(len(r) for _c, r in exchanges),
            "commands": _commands([c for c, _r in exchanges]), "card": card_fig.to_json(),
            "null_card": null_fig.to_json(), "ratio": ratio}


def _paired(cfg: Settings, card: Client, null: Client, exchanges: list[tuple[bytes, bytes]],
            label: str, progress: Progress) -> dict[str, Any]:
    """Card and null card read the same sequence, sample after sample, order alternating."""
    _check(card, exchanges)
    sample = _Sampler(cfg, [c for c, _r in exchanges])
    card_fig, null_fig = sample.figure(label), sample.figure(f"null card, {label}")
    pairs: list[float] = []
    sample(null)  # warm-up: one pass each
    sample(card)
    task = progress.task(f"through pcscd: {label}", cfg.pcsc_runs)
    for i in range(cfg.pcsc_runs):
        if i % 2:
            t_card, t_null = sample(card), sample(null)
        else:
            t_null, t_card = sample(null), sample(card)
        card_fig.add(t_card)
        null_fig.add(t_null)
        pairs.append(t_null / t_card)
        progress.advance(task)
    progress.done(task)
    return _summary(exchanges, card_fig, null_fig, percentile(pairs, 50))


def bench_wholecard(cfg: Settings, state: Any, work: Path, progress: Progress) -> dict[str, Any]:
    runs = {"read": record_read(state),
            "read_and_challenge": record_read(state, with_challenge=True)}
    labels = {"read": "whole-card read", "read_and_challenge": "whole-card read + challenge"}
    with pcsc_lock(cfg.pcsc_wait), pcsc_stack(work) as stack:
        card_port, null_port = cfg.ports[0], cfg.ports[-1]
        card_reader = _reader(card_port, stack["readers"])
        null_reader = _reader(null_port, stack["readers"])
        if card_port == null_port:
            out = _in_turn(cfg, state, runs, labels, card_reader, card_port, progress)
            method = "median null-card time / median card time (one slot: in turn)"
        else:
            out = _two_slots(cfg, state, runs, labels, (card_reader, card_port),
                             (null_reader, null_port), progress)
            method = ("median over paired samples of null-card time / card time per read; "
                      "the null card answers each APDU with as many bytes as the card")
    return {**out["read"], "with_challenge": out["read_and_challenge"],
            "ratio_method": method, "same_slot": card_port == null_port,
            "card_cpu": card_cpu(),
            "readers": {"card": card_reader, "null_card": null_reader}}


def _serve(kind: str, port: int, reader: str, state: Any, lengths: list[int] | None = None,
           control: bool = True) -> tuple[HostedCard, Client]:  # fmt: skip
    hosted = HostedCard(kind, port, state, control=control, lengths=lengths)
    _attach(hosted.start, hosted.attached, reader)
    try:
        return hosted, Client(reader)
    except BaseException:
        hosted.stop()
        raise


def _leave(hosted: HostedCard, client: Client | None, reader: str) -> None:
    from jpki_sim.transport.pcsc import wait_for_card

    if client is not None:
        try:
            client.close()
        except Exception:
            pass
    hosted.stop()
    wait_for_card(reader, present=False, timeout=5.0)


def _two_slots(cfg: Settings, state: Any, runs: dict[str, list[tuple[bytes, bytes]]],
               labels: dict[str, str], card_at: tuple[str, int], null_at: tuple[str, int],
               progress: Progress) -> dict[str, Any]:  # fmt: skip
    """Both attached; a null card per sequence (it replays that sequence's lengths)."""
    out: dict[str, Any] = {}
    card, card_client = _serve("card", card_at[1], card_at[0], state,
                               control=cfg.pcsc_control)
    try:
        for name, exchanges in runs.items():
            null, null_client = _serve("null", null_at[1], null_at[0], state,
                                       [len(r) for _c, r in exchanges])
            try:
                out[name] = _paired(cfg, card_client, null_client, exchanges, labels[name],
                                    progress)
            finally:
                _leave(null, null_client, null_at[0])
    finally:
        _leave(card, card_client, card_at[0])
    return out


def _in_turn(cfg: Settings, state: Any, runs: dict[str, list[tuple[bytes, bytes]]],
             labels: dict[str, str], reader: str, port: int,
             progress: Progress) -> dict[str, Any]:  # fmt: skip
    """One slot: the null card's runs, then the card's, per sequence; medians compared."""
    out: dict[str, Any] = {}
    for name, exchanges in runs.items():
        sample = _Sampler(cfg, [c for c, _r in exchanges])
        figs = {"null": sample.figure(f"null card, {labels[name]}"),
                "card": sample.figure(labels[name])}
        task = progress.task(f"through pcscd: {labels[name]}", 2 * cfg.pcsc_runs)
        for kind in ("null", "card"):
            hosted, client = _serve(kind, port, reader, state,
                                    [len(r) for _c, r in exchanges] if kind == "null" else None,
                                    control=cfg.pcsc_control)
            try:
                if kind == "card":
                    _check(client, exchanges)
                sample(client)  # warm-up
                for _ in range(cfg.pcsc_runs):
                    figs[kind].add(sample(client))
                    progress.advance(task)
            finally:
                _leave(hosted, client, reader)
        progress.done(task)
        out[name] = _summary(exchanges, figs["card"], figs["null"],
                             figs["null"].median / figs["card"].median)
    return out
