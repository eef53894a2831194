"""``jpki-sim serve``: put emulated cards into PC/SC virtual readers (pcscd + vpcd).

Each card connects to vpcd as the card end of one virtual reader slot, first
card on ``--vpcd``'s port, the next on the following port, and stays there
until Ctrl-C / SIGTERM. PIN counter changes are written to the card file as
they happen, under the card file's lock (the card's store commits before it
answers), so a killed server loses nothing and no other process's change is
lost. When another process rewrites a card file (``jpki-sim card ...``
commands), counters are always the file's; the card's files (certificates,
keys, helper data) are rebuilt from it at the next power-on.

"Ready" means pcscd shows the card present in the reader (asked with
SCardGetStatusChange). vpcd can poll a card that pcscd believes absent: after
a client's transmission failed because the previous server was killed, pcscd
marks the reader empty, and if the new connection answers vpcd's very next
poll pcscd never sees the card leave and come back, so it never updates the
reader. A watcher per card notices (the reader stays empty while vpcd polls)
and reconnects, which makes pcscd see a removal and an insertion. A pcscd
that serve started gets SIGTERM when serve dies, however it dies.

Beside the cards, serve runs the control service (:mod:`jpki_sim.control`):
the JSON API, the dashboard, OCSP and the CRLs, on ``--control`` (default
127.0.0.1:3280, the address the test CA writes into certificates).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jpki_sim.cli.common import add_profile_argument

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}

log = logging.getLogger("jpki_sim.serve")


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve cards to PC/SC programs through pcscd's virtual readers (vpcd)",
        description=(
            "Attach each card file to a vpcd virtual reader of pcscd, so that any PC/SC "
            "program (OpenSC's pkcs15-tool and pkcs11 module, pcsc_scan, browsers, "
            "pyscard) sees it like a card in a reader. Several cards go to consecutive "
            "ports (readers). Without a card argument the default card is served, "
            "created on first use. As root, pcscd is started if none runs."
        ),
        epilog=(
            "examples: jpki-sim serve  |  jpki-sim serve alice.json bob.json -v  |  "
            "jpki-sim serve card.json --trace session.jsonl"
        ),
    )
    p.add_argument("cards", nargs="*", metavar="CARD.json",
                   help="card files (default: the default card)")
    p.add_argument(
        "--vpcd",
        default="localhost:35963",
        metavar="HOST:PORT",
        help="vpcd's port for the first card (default localhost:35963, reader 'Virtual PCD 00 00')",
    )
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log one line per APDU (-vv: also power events)")
    p.add_argument("--show-pins", action="store_true",
                   help="show PIN bytes in -v logs and traces (hidden by default)")
    p.add_argument("--trace", metavar="FILE",
                   help="write a JSON Lines APDU trace (several cards: FILE-0, FILE-1, ...)")
    p.add_argument("--install", action="store_true",
                   help="apt-get install pcscd and vsmartcard-vpcd when they are missing (root)")
    p.add_argument("--no-start-pcscd", action="store_true",
                   help="never start pcscd; wait for one to appear")
    p.add_argument("--json", action="store_true",
                   help="print events (ready, detached, stopped) as JSON lines on stdout")
    p.add_argument(
        "--control", metavar="HOST:PORT", default=None,
        help="where the control service (API, dashboard, OCSP, CRLs) listens "
        "(default 127.0.0.1:3280; port 0 picks a free one)",
    )
    p.add_argument("--no-control", action="store_true",
                   help="no control service (no API, dashboard, OCSP or CRLs)")
    p.add_argument("--control-allow-remote", action="store_true",
                   help="allow --control on an address other than loopback (it warns: anyone "
                   "who can reach it and has the token controls the cards)")
    p.add_argument("--atr", metavar="NAME|HEX",
                   help="present this ATR instead of the card file's: a variant of the card's "
                        "profile (jpki: contact, contact-02..05, contactless-06..09) or hex")
    add_profile_argument(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------- helpers


def _emit(args: argparse.Namespace, text: str, **event: Any) -> None:
    if args.json:
        print(json.dumps(event, ensure_ascii=False), flush=True)
    else:
        print(text, flush=True)


def _open_stores(args: argparse.Namespace) -> list[tuple[str, Any]]:
    from jpki_sim.cli.common import open_card
    from jpki_sim.errors import UserError

    if not args.cards:
        _profile, store = open_card(None, args.profile)
        return [(str(store.path), store)]
    seen: set[Path] = set()
    stores: list[tuple[str, Any]] = []
    for name in args.cards:
        resolved = Path(name).resolve()
        if resolved in seen:
            raise UserError(f"{name} is given twice: one card file can be in one reader only")
        seen.add(resolved)
        stores.append((name, open_card(name, args.profile)[1]))
    return stores


def _preflight(args: argparse.Namespace, host: str, port: int, count: int) -> Any:
    """Check (and with --install, fix) the local PC/SC stack; start pcscd if we may.

    Returns the :class:`~jpki_sim.pcscd.Pcscd` we started, or None.
    """
    from jpki_sim.errors import UserError
    from jpki_sim.transport import pcscd

    if host not in LOCAL_HOSTS:
        return None  # a remote vpcd: nothing here to check
    missing = []
    if pcscd.find_binary() is None:
        missing.append("pcscd")
    if pcscd.vpcd_driver() is None:
        missing.append("vsmartcard-vpcd")
    if missing:
        if not args.install:
            raise UserError(f"{' and '.join(missing)} not installed: {pcscd.SETUP_HINT}")
        print(f"installing {', '.join(pcscd.APT_PACKAGES)} ...", file=sys.stderr, flush=True)
        try:
            pcscd.apt_install()
        except pcscd.PcscdError as exc:
            raise UserError(str(exc)) from None

    conf = pcscd.vpcd_readers()
    if conf:
        for p in range(port, port + count):
            if pcscd.vpcd_reader_for_port(p, conf) is None:
                known = ", ".join(f"{r.ports.start}-{r.ports.stop - 1}" for r in conf)
                raise UserError(
                    f"no vpcd reader listens on port {p} (configured ports: {known}); "
                    f"add a reader to {pcscd.READER_CONF_DIR} (see docs) or serve fewer cards"
                )

    if pcscd.is_running():
        _check_readers_free(port, count)
        return None
    if args.no_start_pcscd:
        return None
    stale = pcscd.stale_socket()
    if not pcscd.is_root():
        raise UserError(
            f"pcscd is not running{f' ({stale})' if stale else ''}: start it with "
            "`sudo pcscd -f &` (or run `sudo jpki-sim serve`, which starts it)"
        )
    import tempfile

    # a new private file each time: a fixed name in /tmp could be a planted symlink
    fd, name = tempfile.mkstemp(prefix="jpki-sim-pcscd-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    daemon = pcscd.Pcscd(log_path=log_path)
    try:
        daemon.start()
    except pcscd.PcscdError as exc:
        raise UserError(str(exc)) from None
    if daemon.cleared:
        print(daemon.cleared, file=sys.stderr, flush=True)
    print(f"started pcscd (pid {daemon.pid}, log {log_path}); it stops when serve stops",
          file=sys.stderr, flush=True)
    return daemon


def _check_readers_free(port: int, count: int) -> None:
    """Refuse to queue behind another card: vpcd takes one card per reader."""
    from jpki_sim.errors import UserError
    from jpki_sim.transport import pcscd

    try:
        from jpki_sim.transport.pcsc import PcscError, list_readers, wait_for_card

        live = list_readers()
        for p in range(port, port + count):
            name = pcscd.pcsc_reader_name(p, live)
            # a card that just left still shows until pcscd's next poll (400 ms)
            if name is not None and not wait_for_card(name, present=False, timeout=1.5):
                raise UserError(
                    f"reader '{name}' (port {p}) already holds a card: is another "
                    "`jpki-sim serve` running? stop it or use --vpcd with another port"
                )
    except (ImportError, PcscError):
        return  # cannot tell without pyscard; the bridge warns if vpcd never polls


#: how long pcscd may take to show an attached card present (its polls come every 400 ms)
CONFIRM_TIMEOUT = 3.0
#: how often the presence of a ready card in pcscd is checked again
WATCH_INTERVAL = 2.0
#: checks in a row that must find the reader empty before serve reconnects
WATCH_MISSES = 2
#: how long serve stays away from vpcd when it reconnects to heal a reader
HEAL_PAUSE = 1.0


class PresenceWatch:
    """Makes sure pcscd shows a served card present; reconnects when it does not.

    Announces "ready" (once per connection to vpcd) only when pcscd's reader
    shows the card. If vpcd polls the card but the reader stays empty for
    :data:`CONFIRM_TIMEOUT` (or, later, for :data:`WATCH_MISSES` checks in a
    row), the bridge drops its connection for :data:`HEAL_PAUSE` and comes
    back, so that pcscd registers the removal and the insertion.
    """

    def __init__(self, bridge: Any, announce: Any, stop: threading.Event, *,
                 local: bool) -> None:
        self.bridge = bridge
        self.announce = announce
        self.stop = stop
        self.local = local

    def start(self) -> None:
        threading.Thread(target=self.run, name=f"watch-{self.bridge.port}", daemon=True).start()

    def _ask(self) -> tuple[Any, str | None]:
        """(wait_for_card, None), or (None, why pcscd cannot be asked)."""
        if not self.local:
            return None, "vpcd is on another host"
        try:
            from jpki_sim.transport.pcsc import wait_for_card

            return wait_for_card, None
        except ImportError:
            return None, "pyscard is not installed"

    def _reader(self) -> str | None:
        from jpki_sim.transport import pcscd
        from jpki_sim.transport.pcsc import PcscError, list_readers

        try:
            return pcscd.pcsc_reader_name(self.bridge.port, list_readers())
        except PcscError:
            return None

    def _present(self, wait: Any, reader: str, timeout: float) -> bool | None:
        from jpki_sim.transport.pcsc import PcscError

        try:
            return bool(wait(reader, True, timeout))
        except PcscError:
            return None  # pcscd cannot be asked right now: no verdict

    def _same(self, connection: int) -> bool:
        return self.bridge.connection_id == connection and self.bridge.attached.is_set()

    def run(self) -> None:
        from jpki_sim.transport import pcscd

        bridge = self.bridge
        wait, why_not = self._ask()
        while not self.stop.is_set():
            if not bridge.attached.wait(0.2):
                continue
            connection = bridge.connection_id
            if wait is None:
                guess = (pcscd.pcsc_reader_name(bridge.port) or f"vpcd port {bridge.port}"
                         if self.local else None)
                self.announce(bridge, connection, guess, why_not)
                while self._same(connection) and not self.stop.wait(0.2):
                    pass
                continue
            reader = self._reader()
            present = self._present(wait, reader, CONFIRM_TIMEOUT) if reader else False
            if not self._same(connection) or self.stop.is_set():
                continue
            if present is None:
                self.stop.wait(WATCH_INTERVAL)
                continue
            if not present:
                log.warning(
                    "%s: vpcd polls the card but pcscd does not show it in %s; reconnecting "
                    "so that pcscd sees it leave and come back", bridge.label,
                    f"'{reader}'" if reader else "any reader")
                bridge.drop(HEAL_PAUSE)
                self._wait_for_next(connection)
                continue
            assert reader is not None
            self.announce(bridge, connection, reader)
            misses = 0
            while self._same(connection) and not self.stop.wait(WATCH_INTERVAL):
                if not self._same(connection):
                    break
                seen = self._present(wait, reader, 1.0)
                misses = misses + 1 if seen is False else 0
                if misses >= WATCH_MISSES and self._same(connection):
                    log.warning("%s: pcscd lost the card in '%s' while vpcd polls it; "
                                "reconnecting", bridge.label, reader)
                    bridge.drop(HEAL_PAUSE)
                    self._wait_for_next(connection)
                    break

    def _wait_for_next(self, connection: int) -> None:
        while self.bridge.connection_id == connection and not self.stop.wait(0.05):
            pass


class _Tracer:
    """Adapts a TraceWriter to the bridge's hooks."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def xfer(self, command: bytes, response: bytes, duration: float) -> None:
        self.writer.xfer(command, response, time.monotonic() - duration, duration)

    def power(self, code: int, atr: bytes) -> None:
        from jpki_sim.transport import vpcd

        if code == vpcd.POWER_OFF:
            self.writer.power_off()
        else:
            self.writer.reset(atr, "cold" if code == vpcd.POWER_ON else "warm")


def _start_control(args: argparse.Namespace, served: list[Any]) -> Any:
    """Start the control service; None with --no-control (or, by default, a busy port)."""
    if args.no_control:
        return None
    from jpki_sim.control import DEFAULT_HOST, DEFAULT_PORT
    from jpki_sim.control.runner import ControlRunner
    from jpki_sim.errors import UserError

    explicit = args.control is not None
    try:
        return ControlRunner.start(served, args.control or f"{DEFAULT_HOST}:{DEFAULT_PORT}",
                                   allow_remote=args.control_allow_remote)
    except UserError as exc:
        if explicit:
            raise
        log.warning("control service not started: %s; serving without it "
                    "(--control HOST:PORT for another address, --no-control to silence this)",
                    exc)
        return None


def _trace_paths(template: str, count: int) -> list[str]:
    if count == 1:
        return [template]
    p = Path(template)
    return [str(p.with_name(f"{p.stem}-{i}{p.suffix}")) for i in range(count)]


# ---------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.profiles import registry
    from jpki_sim.transport import vpcd

    try:
        host, port = vpcd.parse_address(args.vpcd)
    except ValueError as exc:
        raise UserError(f"--vpcd: {exc}") from None

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose >= 2 else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(message)s",
        datefmt="%H:%M:%S",
    )
    stores = _open_stores(args)
    # --atr: a variant of each card's profile or hex, refused before anything is started
    atrs = [registry.profile_of(store).atr(args.atr) if args.atr else None
            for _label, store in stores]
    if port + len(stores) - 1 > 65535:
        raise UserError(f"{len(stores)} cards from port {port} run past port 65535")
    daemon = _preflight(args, host, port, len(stores))

    tracers: list[_Tracer] = []
    if args.trace:
        from jpki_sim.trace.writer import TraceWriter

        for (label, _), path in zip(stores, _trace_paths(args.trace, len(stores)), strict=True):
            try:
                writer = TraceWriter(path, card=label, keep_pins=args.show_pins)
            except OSError as exc:
                raise UserError(f"--trace {path}: {exc.strerror}") from None
            tracers.append(_Tracer(writer))

    stop = threading.Event()
    bridges: list[vpcd.VpcdBridge] = []
    from jpki_sim.control.served import ServedCard

    served = [ServedCard(store, index=i, label=label, profile=registry.profile_of(store),
                         atr=atrs[i])
              for i, (label, store) in enumerate(stores)]
    control = _start_control(args, served)
    control_info: dict[str, Any] = {}
    if control is not None:
        control_info = {"control": control.url, "token_file": str(control.token_file)}
        print(f"control service on {control.url} (token in {control.token_file}); "
              "dashboard: `jpki-sim ctl url`", file=sys.stderr, flush=True)

    announced: set[tuple[int, int]] = set()

    def announce(bridge: vpcd.VpcdBridge, connection: int, reader: str | None,
                 unconfirmed: str | None = None) -> None:
        """The ready line, once per connection to vpcd (PresenceWatch calls it)."""
        if (bridge.port, connection) in announced:
            return
        announced.add((bridge.port, connection))
        card = bridge.card
        index = card.index if isinstance(card, ServedCard) else None
        extra = (f" (control {control_info['control']}, token file "
                 f"{control_info['token_file']})" if control_info else "")
        if reader is None:
            # the reader is another machine's: this one's pcscd cannot name it
            _emit(args, f"card {bridge.label} ready in reader of vpcd {bridge.address} "
                  f"(named by that machine's pcscd){extra}", event="ready",
                  card=bridge.label, reader=None, vpcd=bridge.address, index=index,
                  confirmed=False, **control_info)
            return
        if isinstance(card, ServedCard):
            card.reader = reader
        note = f" (not confirmed with pcscd: {unconfirmed})" if unconfirmed else ""
        _emit(args, f"card {bridge.label} ready in reader '{reader}'{note}{extra}",
              event="ready", card=bridge.label, reader=reader, vpcd=bridge.address,
              index=index, confirmed=unconfirmed is None, **control_info)

    def on_detached(bridge: vpcd.VpcdBridge) -> None:
        if stop.is_set():
            return
        if not bridge.inserted.is_set():
            _emit(args, f"card {bridge.label} removed from {bridge.address} (control API)",
                  event="removed", card=bridge.label, vpcd=bridge.address)
            return
        _emit(args, f"card {bridge.label} detached from {bridge.address}; reconnecting",
              event="detached", card=bridge.label, vpcd=bridge.address)

    for i, card in enumerate(served):
        tracer = tracers[i] if tracers else None
        bridge = vpcd.VpcdBridge(
            card,
            host,
            port + i,
            label=card.label,
            trace=tracer.xfer if tracer else None,
            power_trace=tracer.power if tracer else None,
            log_apdus=args.verbose >= 1,
            show_pins=args.show_pins,
            on_detached=on_detached,
        )
        card.attach(bridge)
        bridges.append(bridge)

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for bridge in bridges:
            bridge.start()
            PresenceWatch(bridge, announce, stop, local=host in LOCAL_HOSTS).start()
        ports = f"{port}" if len(bridges) == 1 else f"{port}-{port + len(bridges) - 1}"
        print(f"serving {len(bridges)} card(s) to vpcd at {host}:{ports}; Ctrl-C stops",
              file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            if daemon is not None and not daemon.alive():
                log.error("the pcscd we started has exited; waiting for a new one")
                daemon = None
    finally:
        for card in served:
            card.close()
        if control is not None:
            control.stop()
        for bridge in bridges:
            bridge.stop()
        for tracer in tracers:
            tracer.writer.close()
        if daemon is not None:
            daemon.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    _emit(args, f"stopped ({sum(b.apdu_count for b in bridges)} APDUs answered)",
          event="stopped", apdus=sum(b.apdu_count for b in bridges))
    return 0

