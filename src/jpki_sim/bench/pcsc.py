"""Through pcscd + vpcd: our bridge against a null card over the same kind of socket."""

from __future__ import annotations

import copy
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import BenchError, Figure, Progress, Settings, percentile, timed
from jpki_sim.bench.inprocess import COMMANDS, Apdus, cert_read_apdus, check
from jpki_sim.bench.startup import bench_serve

# ---------------------------------------------------------------- PC/SC


class NullCard:
    """A vpcd card that answers every APDU at once: the transport's limit.

    The answer is 9000, except for a short READ BINARY (``00 B0 P1 P2 Le``),
    answered with Ne zero bytes and 9000, as long as the card's own answer.
    With ``lengths`` (the card's answers to a fixed sequence of APDUs, data and
    SW), it answers the i-th APDU of the sequence, over and over, with as many
    bytes (zeros, then 9000): a floor for a whole session of varied commands.

    Same socket handling as :class:`jpki_sim.vpcd.VpcdBridge`: TCP_NODELAY,
    TCP_QUICKACK re-armed before and after every ``recv`` (Debian 12's vpcd
    sends length and payload in two writes, and without it every message
    waits for our delayed ACK, ~40 ms), one write per reply, and a byte-wise
    frame parser so split or merged messages are handled.
    """

    def __init__(self, port: int, atr: bytes, host: str = "localhost",
                 lengths: list[int] | None = None) -> None:
        self.port = port
        self.lengths = lengths
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
        replies = None
        if self.lengths:
            replies = [(n).to_bytes(2, "big") + bytes(n - 2) + b"\x90\x00"
                       for n in self.lengths]
        at = 0
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
                        if replies is not None:
                            sendall(replies[at])
                            at = (at + 1) % len(replies)
                        elif n == 5 and buf[3] == 0xB0:
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


def _host(kind: str, port: int, state: Any, attached: Any, stop: Any,
          control: bool = True, lengths: list[int] | None = None) -> None:
    """Child process: serve one card on ``port`` until ``stop`` is set.

    ``control`` False serves the card bare: its engine straight behind the
    bridge, no served-card wrapper (lock, trace, faults) and no control
    service, as before the control layer existed: the baseline of its cost.
    ``lengths``: the null card replays answers of those lengths (see NullCard).
    """
    import gc

    from jpki_sim.profiles.jpki import ids as jpki

    cpu = card_cpu()
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    # the child inherits the benchmark's whole heap; a fresh `jpki-sim serve` has
    # a small one. Frozen objects are left out of garbage collections, so the card
    # does not pay for scanning what the benchmark allocated.
    gc.freeze()

    server: Any
    control_runner: Any = None
    if kind == "null":
        server = NullCard(port, jpki.ATR, lengths=lengths).start()
    elif not control:
        from jpki_sim.profiles import registry
        from jpki_sim.profiles.jpki.state import new_store
        from jpki_sim.transport.vpcd import VpcdBridge

        server = VpcdBridge(registry.get("jpki").build(new_store(copy.deepcopy(state))),
                            port=port, label="bench card")
        server.start()
    else:
        import tempfile
        from pathlib import Path

        from jpki_sim.control.runner import ControlRunner
        from jpki_sim.control.served import ServedCard
        from jpki_sim.profiles import registry
        from jpki_sim.profiles.jpki.state import new_store
        from jpki_sim.transport.vpcd import VpcdBridge

        # as `jpki-sim serve` serves it: under control, with the control service running
        served = ServedCard(new_store(copy.deepcopy(state)), label="bench card",
                            profile=registry.get("jpki"))
        control_runner = ControlRunner.start(
            [served], "127.0.0.1:0", presign=False,
            token_dir=Path(tempfile.mkdtemp(prefix="bench-ctl-")))
        server = VpcdBridge(served, port=port, label="bench card")
        served.attach(server)
        server.start()
    try:
        if server.attached.wait(10.0):
            attached.set()
        stop.wait()
    finally:
        server.stop()
        if control_runner is not None:
            control_runner.stop()


def single_apdu(a: Apdus, name: str) -> tuple[bytes, bytes]:
    """(the EF to select after the JPKI AP, the APDU repeated) of a one-APDU command."""
    if name in ("empty_verify", "verify_memory"):
        return a.select_auth_pin, {"empty_verify": a.empty_verify, "verify_memory": a.verify}[name]
    return a.select_auth_cert, {"select_fid": a.select_auth_cert, "select_aid": a.select_aid,
                                "read_binary_256": a.read_256}[name]


def release(clients: Iterable[Client], cards: Iterable[HostedCard]) -> None:
    """Close the clients (a reader gone meanwhile is no error here), stop the cards."""
    for client in clients:
        try:
            client.close()
        except Exception:
            pass
    for card in cards:
        card.stop()


def card_cpu() -> int | None:
    """The CPU every hosted card (ours and the null card) runs on, or None: not pinned.

    Where the scheduler happens to put a card's process (beside the client, beside
    pcscd) moves a whole run's ratios by several per cent, run to run. Both cards on
    the same CPU meet the same conditions (only one answers at a time), so the ratio
    measures the card, not the placement (**Chosen**, docs/performance.md). The last
    CPU this process may use, when it may use two or more.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) >= 2 else None


class HostedCard:
    """A card served from a child process, as ``jpki-sim serve`` serves it.

    The PC/SC client (this process) and the card then share no interpreter
    lock, as with any real client; the null card is hosted the same way.
    """

    def __init__(self, kind: str, port: int, state: Any, control: bool = True,
                 lengths: list[int] | None = None) -> None:
        import multiprocessing

        # fork: the child inherits the card state, and `python -m jpki_sim` has no
        # __main__ guard for spawn to re-import
        ctx = multiprocessing.get_context("fork")
        self.attached = ctx.Event()
        self._stop = ctx.Event()
        self.process = ctx.Process(target=_host, args=(kind, port, state, self.attached,
                                                        self._stop, control, lengths),
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

        card = HostedCard("card", card_port, state, control=cfg.pcsc_control)
        null = HostedCard("null", null_port, state)
        same_slot = card_port == null_port
        clients: dict[str, Client] = {}

        pairs: dict[str, list[float]] = {name: [] for name in figures}

        def command(name: str, fig: Figure) -> list[bytes]:
            """Put the card in the state ``name`` needs; the APDUs of one operation."""
            c = clients["card"]
            c.transmit(a.select_aid)
            if name == "cert_read":
                c.transmit(a.select_auth_cert)
                header = c.transmit(a.read_header)[:4]
                apdus = [a.select_auth_cert, a.read_header, *cert_read_apdus(header)]
            else:
                ef, apdu = single_apdu(a, name)
                c.transmit(ef)
                apdus = [apdu]
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
            release(clients.values(), (card, null))
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
            "hosting": ("each card in a child process (as jpki-sim serve"
                        + (", under control with the control service running"
                           if cfg.pcsc_control else "; bare: no control layer, no service")
                        + "); pyscard client here"),
            "control": cfg.pcsc_control,
            "card_cpu": card_cpu(),
            "started_pcscd": stack["started_pcscd"],
            "null_card": null_fig.to_json(),
            "commands": {name: fig.to_json() for name, fig in figures.items()},
            "ratios": ratios,
            "serve_startup": serve,
        }
