"""Start and stop the whole control service: socket, token file, app, server thread.

``serve`` calls :meth:`ControlRunner.start` with its served cards; ``ca ocsp``
with none (OCSP and CRLs only); tests and the benchmark the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jpki_sim.control import DEFAULT_PORT
from jpki_sim.control import server as server_mod
from jpki_sim.control.app import build_app
from jpki_sim.control.service import ControlService
from jpki_sim.errors import UserError

log = logging.getLogger("jpki_sim.control")


class ControlRunner:
    """A running control service. ``url``, ``token``, ``token_file``, ``service``."""

    def __init__(self, service: ControlService, server: server_mod.ControlServer,
                 token_file: Path | None) -> None:
        self.service = service
        self.server = server
        self.token_file = token_file
        self.url = server.url

    @property
    def token(self) -> str:
        return self.service.token

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}?token={self.token}"

    @classmethod
    def start(cls, cards: list[Any], address: str = f"127.0.0.1:{DEFAULT_PORT}", *,
              allow_remote: bool = False, cas: list[Any] | None = None, control: bool = True,
              token_dir: Path | None = None, request_timeout: float = server_mod.REQUEST_TIMEOUT,
              keep_alive: float = server_mod.KEEP_ALIVE, presign: bool = True) -> ControlRunner:
        """Listen on ``address`` and serve; UserError when the address cannot be used."""
        host, port = server_mod.parse_address(address, DEFAULT_PORT)
        if not server_mod.is_loopback(host):
            if not allow_remote:
                raise UserError(
                    f"--control {address}: not a loopback address; anyone who reaches it could "
                    "drive the cards with the token. Add --control-allow-remote to mean it"
                )
            log.warning("the control service listens on %s, beyond this machine: protect the "
                        "token file and the network", host)
        sock = server_mod.bind(host, port)
        token_file: Path | None = None
        try:
            folder = token_dir or (server_mod.runtime_dir() if control else None)
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            service = ControlService(cards, cas=cas, runtime_dir=folder)
            service.url = server_mod.url_of(sock)
            if control:
                token_file = server_mod.token_path(sock.getsockname()[1], folder)
                server_mod.write_token(token_file, service.token)
            server = server_mod.ControlServer(build_app(service, control=control), sock,
                                              responder=service.ocsp,
                                              request_timeout=request_timeout,
                                              keep_alive=keep_alive)
            server.start()
        except BaseException:
            sock.close()
            if token_file is not None:
                token_file.unlink(missing_ok=True)
            raise
        runner = cls(service, server, token_file)
        if presign:
            service.presign_in_background()
        return runner

    def stop(self) -> None:
        self.server.stop()
        if self.token_file is not None:
            try:
                if self.token_file.read_text().strip() == self.service.token:
                    self.token_file.unlink()
            except OSError:
                pass
