"""Running the control service: uvicorn in a thread, its socket, limits, and the token file.

- **Loopback by default.** A non-loopback address must be allowed explicitly
  (``serve --control-allow-remote``) and is warned about.
- **A token per start**, written to a file only its owner can read (as Jupyter
  does): ``control-PORT.token`` in the user's runtime directory. Every API call
  and the dashboard need it; OCSP and CRLs (for relying parties) do not.
- **Limits**: a listen backlog of :data:`BACKLOG`; a request must arrive whole
  (headers and body) within :data:`REQUEST_TIMEOUT` of its first byte (or of
  the connection), else the connection is closed; headers over
  :data:`MAX_HEADER_BYTES` get 431; idle keep-alive connections close after
  :data:`KEEP_ALIVE` (uvicorn's own timeout).

uvicorn has no timeout for a request that stops half-way, so its httptools
protocol is subclassed with one (:func:`timed_protocol`). Connections start at
the front door (:mod:`.front`), which answers OCSP and CRLs itself with the
same limits and hands every other request to that protocol.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from jpki_sim.errors import UserError

log = logging.getLogger("jpki_sim.control")

BACKLOG = 1024
REQUEST_TIMEOUT = 10.0
KEEP_ALIVE = 5.0
MAX_HEADER_BYTES = 16 * 1024

TOKEN_ENV = "JPKI_SIM_CONTROL_TOKEN"
URL_ENV = "JPKI_SIM_CONTROL_URL"


# ---------------------------------------------------------------- addresses


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` -> (host, port); UserError if bad."""
    from jpki_sim.control import DEFAULT_HOST
    from jpki_sim.transport.address import parse_host_port

    try:
        return parse_host_port(text, DEFAULT_HOST, default_port, lowest_port=0)
    except ValueError as exc:
        raise UserError(f"--control: {exc}") from None


def bind(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--control: cannot resolve {host!r} ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = " (is another `jpki-sim serve` or `jpki-sim ca ocsp` running?)" \
            if exc.errno == 98 else ""
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


# ---------------------------------------------------------------- the token file


def runtime_dir() -> Path:
    """Where token files live: the user's runtime directory (0700, ours), else the data dir."""
    import warnings

    import platformdirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "XDG_RUNTIME_DIR is not set": we check the fallback
        runtime = Path(platformdirs.user_runtime_dir("jpki-sim"))
    for folder in (runtime, Path(platformdirs.user_data_dir("jpki-sim")) / "run"):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if folder.stat().st_uid != os.getuid():
                continue  # someone else's folder (a shared /tmp): not for our token
            os.chmod(folder, 0o700)
            return folder
        except OSError:
            continue
    raise UserError("no private folder for the control token: set XDG_RUNTIME_DIR")


def token_path(port: int, folder: Path | None = None) -> Path:
    return (folder or runtime_dir()) / f"control-{port}.token"


def write_token(path: Path, token: str) -> None:
    """The token, alone on a line, in a new file only its owner can read."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


# ---------------------------------------------------------------- the protocol


def timed_protocol(request_timeout: float = REQUEST_TIMEOUT,
                   max_header_bytes: int = MAX_HEADER_BYTES) -> type:
    """uvicorn's httptools protocol with a deadline for each request to arrive whole."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _in_head = False

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(request_timeout, self._too_slow)

        def keep_deadline(self, when: float) -> None:
            """A connection handed over mid-request keeps its deadline (loop time)."""
            self._disarm()
            self._deadline = self.loop.call_at(when, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that sends nothing is closed as well

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._disarm()
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                         b"content-length: 0\r\nconnection: close\r\n\r\n")
                    self.transport.close()
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # between requests uvicorn's keep-alive timeout watches the connection

    return TimedProtocol


# ---------------------------------------------------------------- the server


class ControlServer:
    """An ASGI app served by uvicorn on one socket, in a thread of its own.

    With ``responder`` (the OCSP responder), every connection starts at the
    front door (:mod:`.front`): OCSP and CRL requests are answered there from
    the socket, the rest is handed to uvicorn's protocol and the app.
    """

    def __init__(self, app: Any, sock: socket.socket, *, responder: Any = None,
                 request_timeout: float = REQUEST_TIMEOUT, keep_alive: float = KEEP_ALIVE,
                 backlog: int = BACKLOG) -> None:
        import uvicorn

        self.sock = sock
        self.url = url_of(sock)
        protocol = timed_protocol(request_timeout)
        #: the front door every connection starts at (None: uvicorn's protocol alone)
        self.door: Any = None
        if responder is not None:
            from jpki_sim.control.front import FrontDoor, front_protocol

            self.door = FrontDoor(responder, protocol, request_timeout=request_timeout,
                                  keep_alive=keep_alive, max_header_bytes=MAX_HEADER_BYTES)
            protocol = front_protocol(self.door)
        self._config = uvicorn.Config(
            app,
            http=protocol,
            loop="uvloop" if _has_uvloop() else "asyncio",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=int(keep_alive) or 1,
            backlog=backlog,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(self._config)
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> ControlServer:
        self._thread = threading.Thread(target=self._run, name="control-http", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise UserError(f"the control service did not start ({self._error or 'timeout'})")
        return self

    def _run(self) -> None:
        try:
            loop: asyncio.AbstractEventLoop
            if self._config.loop == "uvloop":
                import uvloop

                loop = uvloop.new_event_loop()
            else:
                loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            finally:
                loop.close()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        server = self._server
        config = server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self.sock])
        if server.should_exit:
            raise RuntimeError("uvicorn refused to start")
        self._started.set()
        try:
            await server.main_loop()
        finally:
            await server.shutdown(sockets=[self.sock])

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.sock.close()
        except OSError:
            pass


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
