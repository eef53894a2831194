"""The service's front door: OCSP and CRL answers straight from the socket, the rest to uvicorn.

Every connection to the control service starts in :class:`FrontProtocol` (an
asyncio protocol; uvloop's loop when installed). A relying party's request,
``POST /ocsp`` (RFC 6960 A.1, ``application/ocsp-request``), ``GET
/ocsp/BASE64`` or ``GET`` of a CRL path, is answered here from the
responder's pre-signed cache: one look-up and one write, no ASGI, no task, no
per-request objects beyond the answer's bytes. An answer not cached yet (a
nonce, a certificate not pre-signed, a CRL not signed yet) is signed in a
worker thread while the connection waits (its later pipelined requests stay
queued in order) and every other connection goes on being served.

Everything else is **handed over**: at the first request that is not one of
those (another path or method, a body over :data:`~.ocsp.MAX_REQUEST`, no
Content-Length, another content type, chunked, ``Expect``, a query string,
anything llhttp rejects), the connection and every byte not yet answered go
to uvicorn's protocol (:func:`~.server.timed_protocol`), which runs the
Starlette app and gives its answers (404, 405, 400, 411, 413, 414, 415, the
API, the dashboard). Requests are framed here by the blank line that ends
their head and their Content-Length, so the hand-over starts exactly at that
request's first byte; the head itself is checked by httptools (llhttp), the
parser uvicorn uses, so a request accepted here is one uvicorn accepts.

Guarantees kept here, the same as uvicorn's protocol gives the rest:

- a request must arrive whole within ``request_timeout`` of its first byte (or
  of the connection), else the connection is closed; a connection that hands
  over keeps the deadline it had;
- a head over ``max_header_bytes`` gets 431 and the connection is closed;
- an idle keep-alive connection is closed after ``keep_alive`` seconds;
- HTTP/1.1 keep-alive and pipelining (answers in request order), HTTP/1.0
  and ``Connection: close``; a client that stops reading its answers stops
  being read (transport flow control);
- uvicorn's graceful shutdown closes idle connections and lets busy ones
  finish their answer.

One timer per connection watches both deadlines (it is moved, not re-created,
per request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

import httptools

from jpki_sim.control import ocsp as ocsp_mod

log = logging.getLogger("jpki_sim.control")

_HEAD_END = b"\r\n\r\n"
_OCSP_POST_PATHS = (b"/ocsp", b"/ocsp/")
_OCSP_GET_PREFIX = b"/ocsp/"
_CTYPE_REQUEST = ocsp_mod.CONTENT_TYPE_REQUEST.encode()

_OK_OCSP = (b"HTTP/1.1 200 OK\r\ncontent-type: " + ocsp_mod.CONTENT_TYPE_RESPONSE.encode()
            + b"\r\n")
_NO_STORE = b"cache-control: no-store\r\n"
_OK_CRL = (b"HTTP/1.1 200 OK\r\ncontent-type: " + ocsp_mod.CONTENT_TYPE_CRL.encode()
           + b"\r\ncache-control: max-age=60\r\n")
_CLOSE = b"connection: close\r\n"
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"content-length: 0\r\nconnection: close\r\n\r\n")
_SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                 b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")

# what a request is, once its head is read
_POST, _GET, _CRL = 1, 2, 3


class FrontDoor:
    """What every connection's :class:`FrontProtocol` shares: the responder, limits, uvicorn."""

    def __init__(self, responder: ocsp_mod.OcspResponder, inner: type, *,
                 request_timeout: float, keep_alive: float, max_header_bytes: int) -> None:
        self.responder = responder
        #: uvicorn's protocol class the connections are handed to
        self.inner = inner
        self.request_timeout = request_timeout
        self.keep_alive = keep_alive
        self.max_header_bytes = max_header_bytes
        self._date_source: Any = None
        self._date_lines = b""
        #: requests answered here, and connections handed to uvicorn (for tests)
        self.answered = 0
        self.handed_over = 0

    def date_lines(self, server_state: Any) -> bytes:
        """uvicorn's default headers (its Date, renewed each second) as header lines."""
        headers = server_state.default_headers
        if headers is not self._date_source:
            self._date_lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self._date_source = headers
        return self._date_lines


def front_protocol(door: FrontDoor) -> type:
    """A protocol class for uvicorn's ``http=`` setting whose connections start at ``door``."""

    class Front(FrontProtocol):
        pass

    Front.door = door
    return Front


class FrontProtocol(asyncio.Protocol):
    """One connection: OCSP and CRL answers here, the first other request hands it over."""

    door: FrontDoor

    def __init__(self, config: Any, server_state: Any, app_state: Any,
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.loop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.buf = bytearray()
        # the request being read: its head's length (0: not read yet) and its whole length
        self._head = 0
        self._total = 0
        self._scan = 0  # the head's end is not before this offset
        self._kind = 0
        self._target = b""
        self._keep_alive = True
        # header fields of the current head (set by the parser's callbacks)
        self._url = b""
        self._length = -1
        self._ctype: bytes | None = b""
        self._plain = True
        self._headers_done = False
        self._complete = False
        # state of the connection
        self._busy = False  # an answer is being signed
        self._write_paused = False
        self._reading = True
        self._closing = False
        self._eof = False
        self._deadline: float | None = None  # the current request must be whole by then
        self._idle_since: float | None = None  # keep-alive: idle since then
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # ------------------------------------------------------------ asyncio

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.server_state.connections.add(self)
        # a connection that sends nothing is closed as well
        self._deadline = self.loop.time() + self.door.request_timeout
        self._watch(self._deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.buf.clear()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._busy:
            return True  # keep the write side open for the answer being signed
        return None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if not self.buf and self._deadline is None:
            # a request begins: it has request_timeout to arrive whole
            self._idle_since = None
            self._deadline = self.loop.time() + self.door.request_timeout
            if self._timer is None or self._deadline < self._timer_at:
                self._watch(self._deadline)
        self.buf += data
        if not self._busy and not self._write_paused:
            self._serve()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._set_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._set_reading()
        if not self._busy and not self._closing and self.buf:
            self._serve()

    # ------------------------------------------------------------ uvicorn

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close when idle, else after the answer being signed."""
        if self._busy:
            self._closing_after = True
        elif self.transport is not None:
            self._closing = True
            self.transport.close()

    _closing_after = False

    # ------------------------------------------------------------ the parser's callbacks

    def on_message_begin(self) -> None:
        pass

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._length = int(value) if value.isdigit() else -2
        elif name == b"content-type":
            # a second Content-Type makes the request ambiguous: uvicorn's turn
            self._ctype = value.split(b";")[0].strip().lower() if self._ctype == b"" else None
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            self._plain = False

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_message_complete(self) -> None:
        self._complete = True

    # ------------------------------------------------------------ serving

    def _serve(self) -> None:
        """Answer every whole request in the buffer, in order, until one must wait."""
        door = self.door
        buf = self.buf
        while buf and not self._busy and not self._write_paused and not self._closing:
            if not self._head:
                end = buf.find(_HEAD_END, self._scan)
                if end < 0:
                    self._scan = max(0, len(buf) - 3)
                    if len(buf) > door.max_header_bytes:
                        self._refuse(_TOO_LARGE)
                    elif buf.count(b"\n") != buf.count(b"\r\n"):
                        self._hand_over()  # bare line feeds: uvicorn's parser decides
                    return
                head = end + 4
                self._scan = 0
                if head > door.max_header_bytes:
                    self._refuse(_TOO_LARGE)
                    return
                if not self._read_head(bytes(buf[:head])):
                    self._hand_over()
                    return
                self._head = head
                self._total = head + max(self._length, 0)
            if len(buf) < self._total:
                return  # the body is on its way
            head, total = self._head, self._total
            if total > head:
                self._complete = False
                try:
                    self.parser.feed_data(bytes(buf[head:total]))
                except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                    self._hand_over()
                    return
                if not self._complete:
                    self._hand_over()
                    return
            if not self._answer(bytes(buf[head:total])):
                return  # handed over, or waiting for a signature
            del buf[:total]
            self._head = self._total = 0
            self._done()

    def _read_head(self, head: bytes) -> bool:
        """Parse one request head; True when it is a request answered here."""
        self._url = b""
        self._length = -1
        self._ctype = b""
        self._plain = True
        self._headers_done = self._complete = False
        try:
            self.parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return False
        if not self._headers_done or not self._plain:
            return False
        parser = self.parser
        method = parser.get_method()
        url = self._url
        self._keep_alive = parser.should_keep_alive()
        self._target = url
        if method == b"POST":
            if url in _OCSP_POST_PATHS and self._ctype == _CTYPE_REQUEST and \
                    0 < self._length <= ocsp_mod.MAX_REQUEST:
                self._kind = _POST
                return True
            return False
        if method != b"GET" or self._length > 0 or self._length < -1 or b"?" in url:
            return False
        if url.startswith(_OCSP_GET_PREFIX):
            # longer ones may be over the app's limit (414): its turn
            if len(_OCSP_GET_PREFIX) < len(url) <= len(_OCSP_GET_PREFIX) + 2 * ocsp_mod.MAX_REQUEST:
                self._kind = _GET
                return self._complete
            return False
        if b"%" not in url and self.door.responder.is_crl_path(url.decode("latin-1")):
            self._kind = _CRL
            return self._complete
        return False

    def _answer(self, body: bytes) -> bool:
        """Write the answer of the request just read; False when it must wait or went on."""
        responder = self.door.responder
        kind = self._kind
        if kind == _POST:
            answer = responder.cached(body)
            if answer is None:
                return self._sign(responder.respond, body)
            self._write(_OK_OCSP + _NO_STORE, answer)
            return True
        if kind == _GET:
            der = _get_request(self._target)
            answer = responder.cached(der)
            if answer is None:
                return self._sign(responder.respond, der)
            self._write(_OK_OCSP + _get_headers(responder, answer), answer)
            return True
        path = self._target.decode("latin-1")
        crl = responder.cached_crl(path)
        if crl is None:
            return self._sign(responder.crl, path)
        self._write(_OK_CRL, crl)
        return True

    def _write(self, head: bytes, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.door.answered += 1
        close = not self._keep_alive or self._closing_after
        transport.write(b"".join((head, self.door.date_lines(self.server_state),
                                  b"content-length: ", str(len(body)).encode(), b"\r\n",
                                  _CLOSE if close else b"", b"\r\n", body)))
        if close:
            self._closing = True
            transport.close()

    def _done(self) -> None:
        """A request answered: the next one's deadline, or the keep-alive wait."""
        if self._closing:
            return
        now = self.loop.time()
        if self.buf:
            self._deadline = now + self.door.request_timeout
            if self._timer is None or self._deadline < self._timer_at:
                self._watch(self._deadline)
        else:
            self._deadline = None
            self._idle_since = now
            if self._eof:
                self._closing = True
                if self.transport is not None:
                    self.transport.close()
            elif self._timer is None:
                self._watch(now + self.door.keep_alive)

    # ------------------------------------------------------------ answers to sign

    def _sign(self, work: Any, arg: Any) -> bool:
        """Sign in a worker thread; the connection's later requests wait in order."""
        self._busy = True
        self._deadline = None  # the request is whole: no timeout while it is answered
        self._set_reading()
        kind, target = self._kind, self._target
        future = self.loop.run_in_executor(None, work, arg)
        future.add_done_callback(lambda f: self._signed(f, kind, target))
        return False

    def _signed(self, future: Any, kind: int, target: bytes) -> None:
        self._busy = False
        if self._closing or self.transport is None or self.transport.is_closing():
            return
        try:
            answer = future.result()
        except Exception:
            log.exception("answering %s failed", target[:80])
            self._refuse(_SERVER_ERROR)
            return
        responder = self.door.responder
        if kind == _CRL:
            if answer is None:  # its CA went away meanwhile
                self._hand_over()
                return
            self._write(_OK_CRL, answer)
        elif kind == _GET:
            self._write(_OK_OCSP + _get_headers(responder, answer), answer)
        else:
            self._write(_OK_OCSP + _NO_STORE, answer)
        del self.buf[:self._total]
        self._head = self._total = 0
        self._done()
        self._set_reading()
        if not self._closing:
            self._serve()

    # ------------------------------------------------------------ the connection

    def _set_reading(self) -> None:
        """Read while nothing waits: no answer being signed, the client reading its answers."""
        want = not (self._busy or self._write_paused)
        if want != self._reading and self.transport is not None and \
                not self.transport.is_closing():
            self._reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _refuse(self, response: bytes) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.write(response)
            self.transport.close()

    def _watch(self, when: float) -> None:
        """(Re)arm the connection's one timer for ``when`` (loop time)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._check)

    def _check(self) -> None:
        """The timer: close a request that is too slow, or an idle connection; else re-arm."""
        self._timer = None
        self._timer_at = 0.0
        if self._closing or self.transport is None:
            return
        now = self.loop.time()
        if self._deadline is not None:
            if now >= self._deadline:
                self._closing = True
                self.transport.close()
                return
            self._watch(self._deadline)
        elif self._idle_since is not None:
            due = self._idle_since + self.door.keep_alive
            if now >= due:
                self._closing = True
                self.transport.close()
                return
            self._watch(due)
        # else an answer is being signed: _done() arms the timer again

    def _hand_over(self) -> None:
        """Give the connection and every unanswered byte to uvicorn's protocol."""
        transport = self.transport
        if transport is None or self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.server_state.connections.discard(self)
        self.door.handed_over += 1
        inner = self.door.inner(config=self.config, server_state=self.server_state,
                                app_state=self.app_state, _loop=self.loop)
        inner.connection_made(transport)
        if self._deadline is not None and hasattr(inner, "keep_deadline"):
            inner.keep_deadline(self._deadline)
        transport.set_protocol(inner)
        if not self._reading:
            self._reading = True
            transport.resume_reading()
        data = bytes(self.buf)
        self.buf.clear()
        if data:
            inner.data_received(data)


def _get_request(target: bytes) -> bytes:
    """The DER request of ``GET /ocsp/BASE64`` (b"" when it does not decode: malformed)."""
    import base64
    import binascii

    encoded = unquote(target[len(_OCSP_GET_PREFIX):].decode("latin-1"))
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _get_headers(responder: ocsp_mod.OcspResponder, answer: bytes) -> bytes:
    return b"".join(f"{name.lower()}: {value}\r\n".encode()
                    for name, value in responder.get_headers(answer))
