"""The card end of vsmartcard's vpcd socket: an emulated card in a PC/SC reader.

pcscd's ``vpcd`` driver listens on one TCP port per virtual reader slot
(35963, 35964 by default) and waits for a card to connect. This module is that
card: a TCP client that answers vpcd's messages with an
:class:`~jpki_sim.transport.EmulatedCard`.

Wire format, both directions: a 2-byte big-endian length N, then N bytes.

- N == 1 is a control code from vpcd: ``00`` power off, ``01`` power on,
  ``02`` warm reset, ``04`` "send your ATR". Only ``04`` gets a reply.
- N > 1 is a command APDU; it gets exactly one framed response APDU.
- An empty reply means "card removed" to vpcd, so we never send one.

Speed: Debian 12's vpcd writes the length and the payload with two ``send()``
calls on a socket with Nagle on, so its second segment waits for our ACK of the
first; Linux delays that ACK by ~40 ms when it has nothing to send back. We
re-arm ``TCP_QUICKACK`` before and after every ``recv`` (the kernel clears it
on its own), set ``TCP_NODELAY`` and send each reply as one buffer. Without
that every message, including the 400 ms presence polls, stalls ~40 ms.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from jpki_sim.iso7816.transport import EmulatedCard, HotPath
from jpki_sim.trace.model import is_secret_command
from jpki_sim.transport.address import parse_host_port

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 35963  # vpcd's CHANNELID 0x8C7B; slot n listens on DEFAULT_PORT + n

# control codes vpcd sends as one-byte messages
POWER_OFF = 0x00
POWER_ON = 0x01
RESET = 0x02
GET_ATR = 0x04
CONTROL_NAMES = {POWER_OFF: "power off", POWER_ON: "power on", RESET: "reset", GET_ATR: "get ATR"}

MAX_MESSAGE = 0xFFFF  # the 2-byte length field; vpcd refuses longer sends
RECV_SIZE = MAX_MESSAGE + 2

#: answered when the card gives nothing usable (never send an empty frame)
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"


#: seconds to wait after connecting before warning that vpcd does not poll us
FIRST_POLL_WARNING = 5.0
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

#: trace hook: (command APDU, response APDU, seconds the card took)
TraceHook = Callable[[bytes, bytes, float], None]
#: called before each power-on with the current card; returns the card to use
#: from then on (serve uses it to reload a card file another process rewrote)
RefreshHook = Callable[[EmulatedCard], EmulatedCard]
#: power event hook: (control code POWER_OFF/POWER_ON/RESET, the card's ATR)
PowerHook = Callable[[int, bytes], None]


class DropConnection(Exception):
    """Raised by a card's ``process()`` to have the bridge close the connection unanswered.

    That is how a card pulled (or torn) in the middle of a command looks to vpcd:
    the command's reply never comes, pcscd reports the card removed, and the
    client's transmit fails. The bridge then reconnects as after any loss
    (unless the card was removed with :meth:`VpcdBridge.remove`).
    """

log = logging.getLogger("jpki_sim.vpcd")

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class FrameParser:
    """Splits vpcd's byte stream into messages, whatever the TCP segmentation.

    Several messages can arrive in one ``recv`` (``00 01 02 00 01 04``: reset,
    then get-ATR) and one message can be split across several.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet forming a whole message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        messages: list[bytes] = []
        start = 0
        end = len(buf)
        while end - start >= 2:
            n = (buf[start] << 8) | buf[start + 1]
            if end - start - 2 < n:
                break
            messages.append(bytes(buf[start + 2 : start + 2 + n]))
            start += 2 + n
        if start:
            del buf[:start]
        return messages


def frame(payload: bytes) -> bytes:
    """Length-prefix one message (one buffer, so it leaves in one ``send``)."""
    n = len(payload)
    if n > MAX_MESSAGE:
        raise ValueError(f"vpcd message of {n} bytes: at most {MAX_MESSAGE}")
    return bytes(((n >> 8) & 0xFF, n & 0xFF)) + payload


def redact_pin(apdu: bytes) -> str:
    """Hex of a command APDU with the PIN bytes of VERIFY-like commands hidden."""
    if is_secret_command(apdu):
        return f"{apdu[:5].hex().upper()} <{len(apdu) - 5} bytes hidden>"
    return apdu.hex().upper()


def _reason(exc: BaseException) -> str:
    """What a log line says of an error: its type, and for OS errors the reason.

    Never the message of an arbitrary exception, nor a traceback: either could
    quote the data of the command being handled.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def describe_response(resp: bytes, limit: int = 48) -> str:
    if len(resp) <= 2:
        return resp.hex().upper()
    data, sw = resp[:-2], resp[-2:]
    shown = data[:limit].hex().upper()
    more = f"... ({len(data)} bytes)" if len(data) > limit else ""
    return f"{shown}{more} {sw.hex().upper()}"


class VpcdBridge:
    """Attach one emulated card to one vpcd reader slot and keep it attached.

    ``run()`` connects to vpcd at ``host:port``, answers its messages, and when
    vpcd goes away (pcscd stopped or restarted) reconnects with backoff until
    :meth:`stop` is called. ``card`` may be swapped at any time between
    messages.
    """

    def __init__(
        self,
        card: EmulatedCard,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        label: str = "card",
        refresh: RefreshHook | None = None,
        trace: TraceHook | None = None,
        power_trace: PowerHook | None = None,
        log_apdus: bool = False,
        show_pins: bool = False,
        reconnect: bool = True,
        on_attached: Callable[[VpcdBridge], None] | None = None,
        on_detached: Callable[[VpcdBridge], None] | None = None,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.label = label
        self.refresh = refresh
        self.trace = trace
        self.power_trace = power_trace
        self.log_apdus = log_apdus
        self.show_pins = show_pins
        self.reconnect = reconnect
        self.on_attached = on_attached
        self.on_detached = on_detached
        #: set while vpcd has polled us on the current connection (card present)
        self.attached = threading.Event()
        #: command APDUs answered since start
        self.apdu_count = 0
        #: set while the card is in the reader; :meth:`remove` clears it, :meth:`insert` sets it
        self.inserted = threading.Event()
        self.inserted.set()
        #: counts connections to vpcd (a watcher tells one attachment from the next)
        self.connection_id = 0
        self._reconnect_after: float | None = None
        self._stop = threading.Event()
        #: wakes the connect loop (insert, stop)
        self._wake = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def replace_card(self, card: EmulatedCard) -> None:
        """Put another card in the reader slot, between two messages (vpcd never sees it)."""
        self.card = card

    def remove(self) -> None:
        """Take the card out of the reader: close the connection and stay away until :meth:`insert`.

        vpcd notices at its next presence poll (<= 400 ms) and pcscd reports the
        card removed to its clients, as when a card is pulled from a real reader.
        """
        self.inserted.clear()
        self._shutdown_socket()

    def insert(self) -> None:
        """Put the card back: connect to vpcd again (pcscd shows it at its next poll)."""
        self.inserted.set()
        self._wake.set()

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv
            except OSError:
                pass

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> threading.Thread:
        """Run the bridge in a background thread."""
        thread = threading.Thread(target=self.run, name=f"vpcd-{self.port}", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def stop(self, timeout: float | None = 5.0) -> None:
        """Detach the card: close the socket and end :meth:`run`.

        The APDU being processed, if any, finishes first (its state change is
        already committed by the card); only its reply may be lost.
        """
        self._stop.set()
        self._wake.set()
        self._shutdown_socket()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def drop(self, reconnect_after: float = 0.5) -> None:
        """Close the connection to vpcd now and connect again after ``reconnect_after`` s.

        vpcd then sees the card leave at its next poll and come back at a later
        one, so pcscd registers a removal and an insertion: what heals a reader
        whose state pcscd got wrong (see :mod:`jpki_sim.cli.serve`).
        """
        self._reconnect_after = reconnect_after
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Connect, serve, reconnect; return after :meth:`stop` (or on loss without reconnect)."""
        delay = BACKOFF_FIRST
        warned = False
        while not self._stop.is_set():
            if not self.inserted.is_set():
                # removed: no connection until insert() (or stop()) wakes us
                self._wake.wait()
                self._wake.clear()
                delay = BACKOFF_FIRST
                continue
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
            except OSError as exc:
                if not self.reconnect:
                    raise
                if not warned:
                    log.warning(
                        "%s: cannot reach vpcd at %s (%s); is pcscd running with the vpcd "
                        "driver? retrying",
                        self.label,
                        self.address,
                        exc.strerror or exc,
                    )
                    warned = True
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            warned = False
            try:
                got_message = self.serve_connection(sock)
            finally:
                sock.close()
            if got_message:
                delay = BACKOFF_FIRST
            if not self.reconnect or self._stop.is_set():
                break
            if self._reconnect_after is not None:
                delay, self._reconnect_after = self._reconnect_after, None
            if self.inserted.is_set():
                self._wake.wait(delay)
                self._wake.clear()
            delay = min(delay * 2, BACKOFF_MAX)

    # ------------------------------------------------------------ one connection

    def serve_connection(self, sock: socket.socket) -> bool:
        """Answer vpcd on a connected socket until it closes; True if vpcd spoke at all."""
        self._sock = sock
        self.connection_id += 1
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got_message = False
        try:
            if self._stop.is_set() or not self.inserted.is_set():
                return False
            got_message = self._serve(sock)
        except DropConnection:
            got_message = True
            log.info("%s: connection to vpcd dropped before the answer (card torn)", self.label)
        except OSError as exc:
            if not self._stop.is_set() and self.inserted.is_set():
                log.info("%s: connection to vpcd at %s lost (%s)", self.label, self.address, exc)
        finally:
            self._sock = None
            was_attached = self.attached.is_set()
            self.attached.clear()
            # the reader lost the card: volatile state (verified PINs, current DF) goes too
            try:
                self.card.power_off()
            except Exception as exc:  # the card must not take the bridge down
                log.error("%s: power off failed (%s)", self.label, _reason(exc))
            if was_attached:
                if self._stop.is_set():
                    pass
                elif not self.inserted.is_set():
                    log.info("%s: removed from the reader at %s", self.label, self.address)
                else:
                    log.info("%s: detached from vpcd at %s", self.label, self.address)
                if self.on_detached is not None:
                    self.on_detached(self)
        return got_message

    def _serve(self, sock: socket.socket) -> bool:
        parser = FrameParser()
        recv = sock.recv
        setopt = sock.setsockopt
        sendall = sock.sendall
        handle = self._handle
        card, process, settle, has_hot = self._bind()
        quickack = _QUICKACK
        tcp = socket.IPPROTO_TCP
        got_message = False

        # vpcd accepts us at its next presence poll (<= 400 ms); if nothing
        # comes for a while the slot is probably taken by another card
        sock.settimeout(FIRST_POLL_WARNING)
        try:
            if quickack is not None:
                setopt(tcp, quickack, 1)
            first = recv(RECV_SIZE)
        except TimeoutError:
            log.warning(
                "%s: connected to %s but vpcd has not polled for %.0f s: is another card "
                "attached to this reader, or is this port not vpcd? still waiting",
                self.label,
                self.address,
                FIRST_POLL_WARNING,
            )
            sock.settimeout(None)
            first = recv(RECV_SIZE)
        sock.settimeout(None)
        data = first
        # Debian 12's vpcd writes the 2-byte length and the payload separately, so
        # most messages arrive as a lone header, then exactly its payload: that pair
        # skips the FrameParser (a measurable share of the bridge's time per APDU).
        # ``header`` holds such a lone header until the next segment.
        header = b""
        while True:
            if quickack is not None:
                setopt(tcp, quickack, 1)
            if not data:
                return got_message
            got_message = True
            n = len(data)
            if header:
                if n == ((header[0] << 8) | header[1]):
                    messages = [data]  # the payload the header announced, whole
                else:
                    messages = parser.feed(header + data)
                header = b""
            elif parser.pending or n < 2:
                messages = parser.feed(data)
            else:
                length = (data[0] << 8) | data[1]
                if length + 2 == n:
                    messages = [data[2:]]  # exactly one whole message in this segment
                elif n == 2:
                    header = data  # a lone header of a non-empty message: payload next
                    messages = []
                else:
                    messages = parser.feed(data)
            for message in messages:
                if len(message) > 1 and self.trace is None and not self.log_apdus:
                    # the hot path: a command APDU, neither traced nor logged here
                    # (_handle's work, inlined: through pcscd every call costs)
                    if self.card is not card:
                        card, process, settle, has_hot = self._bind()
                    hot: HotPath | None = card.hot if has_hot else None
                    resp = None
                    try:
                        if hot is not None:
                            # the card's own answer, gate and record, kept in this frame;
                            # no lock (a lock's acquire and release cost more than the
                            # rest of the wrapper, the caches being cold): the gate says
                            # "answering", and a change closes the path, then waits for it
                            answer, gate, record, clock = hot
                            gate[0] = True
                            try:
                                if card.hot is hot:  # not closed meanwhile
                                    resp = answer(message)
                                else:
                                    hot = None  # the card's process answers instead
                            finally:
                                gate[0] = False
                        if hot is None:
                            resp = process(message)
                    except DropConnection:
                        raise
                    except Exception as exc:  # as in _handle; asked once, whichever way
                        log.error("%s: card raised %s on %s", self.label, type(exc).__name__,
                                  redact_pin(message))
                        resp, hot = SW_NO_PRECISE_DIAGNOSIS, None
                    if not resp or not 2 <= len(resp) <= MAX_MESSAGE:  # None, too
                        log.error("%s: card gave an unusable %d-byte response", self.label,
                                  len(resp or b""))
                        resp = SW_NO_PRECISE_DIAGNOSIS
                    n = len(resp)
                    self.apdu_count += 1
                    sendall(n.to_bytes(2, "big") + resp)
                    if hot is not None:
                        # what the card keeps of the exchange, after the answer left
                        record((message, resp, clock[0]))
                        continue
                else:
                    reply = handle(message)
                    if reply is None:
                        continue
                    sendall(reply)
                    if self.card is not card:
                        card, process, settle, has_hot = self._bind()
                # what the card keeps of the exchange (a trace record) is done after
                # the answer left: off the client's wait
                if settle is not None:
                    settle()
            if quickack is not None:
                setopt(tcp, quickack, 1)
            data = recv(RECV_SIZE)

    def _bind(self) -> tuple[Any, Callable[[bytes], bytes], Callable[[], None] | None, bool]:
        """The current card, its ``process``, its ``settle`` (if it has one), bound once,
        and whether it may offer a hot path (a ``hot`` attribute)."""
        card = self.card
        return card, card.process, getattr(card, "settle", None), hasattr(card, "hot")

    def _handle(self, message: bytes) -> bytes | None:
        """One message from vpcd -> the framed reply, or None for no reply."""
        n = len(message)
        if n == 1:
            return self._control(message[0])
        if n == 0:
            return None  # vpcd never sends these; nothing sensible to answer
        card = self.card
        # the clock is read only for the trace and the log (the hot path otherwise)
        timing = self.trace is not None or self.log_apdus
        t0 = time.perf_counter() if timing else 0.0
        try:
            resp = card.process(message)
        except DropConnection:
            raise
        except Exception as exc:  # process() must not raise; if it does, keep the reader alive
            # no traceback and no message: either could carry the command's data (a PIN)
            log.error("%s: card raised %s on %s", self.label, type(exc).__name__,
                      redact_pin(message))
            resp = SW_NO_PRECISE_DIAGNOSIS
        elapsed = time.perf_counter() - t0 if timing else 0.0
        if not resp or len(resp) < 2 or len(resp) > MAX_MESSAGE:
            log.error("%s: card gave an unusable %d-byte response", self.label, len(resp or b""))
            resp = SW_NO_PRECISE_DIAGNOSIS
        self.apdu_count += 1
        if self.log_apdus:
            shown = message.hex().upper() if self.show_pins else redact_pin(message)
            log.info(
                "%s: > %s  < %s  (%.2f ms)",
                self.label,
                shown,
                describe_response(resp),
                elapsed * 1000,
            )
        if self.trace is not None:
            try:
                self.trace(message, resp, elapsed)
            except Exception as exc:
                log.error("%s: trace hook failed (%s); tracing switched off", self.label,
                          _reason(exc))
                self.trace = None
        n = len(resp)
        return bytes(((n >> 8) & 0xFF, n & 0xFF)) + resp

    def _control(self, code: int) -> bytes | None:
        if code == GET_ATR:
            atr = self.card.atr
            if not self.attached.is_set():
                self.attached.set()
                log.info("%s: attached to vpcd at %s", self.label, self.address)
                if self.on_attached is not None:
                    self.on_attached(self)
            return frame(atr)
        try:
            if code == POWER_ON:
                if self.refresh is not None:
                    self.card = self.refresh(self.card)
                self.card.power_on()
            elif code == POWER_OFF:
                self.card.power_off()
            elif code == RESET:
                self.card.reset()
            else:
                log.warning("%s: unknown vpcd control code %02X ignored", self.label, code)
                return None
        except Exception as exc:
            log.error("%s: %s failed (%s)", self.label, CONTROL_NAMES.get(code, code),
                      _reason(exc))
        if self.log_apdus:
            log.debug("%s: %s", self.label, CONTROL_NAMES[code])
        if self.power_trace is not None:
            try:
                self.power_trace(code, self.card.atr)
            except Exception as exc:
                log.error("%s: trace hook failed (%s); tracing switched off", self.label,
                          _reason(exc))
                self.power_trace = None
        return None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` -> (host, port); raises ValueError."""
    return parse_host_port(text, DEFAULT_HOST, DEFAULT_PORT)
