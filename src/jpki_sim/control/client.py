"""The control API from Python: what ``jpki-sim ctl`` and the tests use (standard library only).

Finding the service: ``url`` (or ``$JPKI_SIM_CONTROL_URL``, else
``http://127.0.0.1:3280/``) and the token (``token``, ``$JPKI_SIM_CONTROL_TOKEN``,
``token_file``, else the token file of that port in the runtime directory).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jpki_sim.control import DEFAULT_HOST, DEFAULT_PORT
from jpki_sim.errors import JpkiSimError, UserError

URL_ENV = "JPKI_SIM_CONTROL_URL"
TOKEN_ENV = "JPKI_SIM_CONTROL_TOKEN"


class ControlUnreachable(JpkiSimError):
    """No control service answers (serve not running, another port)."""


class ApiError(UserError):
    """The service refused the request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class ControlClient:
    """Calls the control API of a running ``jpki-sim serve``."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None, timeout: float = 60.0) -> None:
        self.url = (url or os.environ.get(URL_ENV) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/")
        if "://" not in self.url:
            self.url = f"http://{self.url}"
        self.url = self.url.rstrip("/") + "/"
        self.timeout = timeout
        self._token = token or os.environ.get(TOKEN_ENV) or None
        self._token_file = Path(token_file) if token_file else None

    @property
    def token(self) -> str:
        if self._token:
            return self._token
        path = self._token_file or self.default_token_file()
        try:
            self._token = path.read_text().strip()
        except FileNotFoundError:
            raise ControlUnreachable(
                f"no token file {path}: is `jpki-sim serve` running with its control service "
                "on this port? (--token-file FILE or $JPKI_SIM_CONTROL_TOKEN)") from None
        except OSError as exc:
            raise UserError(f"cannot read the token file {path}: {exc.strerror}") from None
        return self._token

    def default_token_file(self) -> Path:
        from jpki_sim.control.server import runtime_dir, token_path

        port = urlsplit(self.url).port or DEFAULT_PORT
        return token_path(port, runtime_dir())

    # ------------------------------------------------------------ HTTP

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error") or exc.reason
            except (ValueError, AttributeError):
                message = str(exc.reason)
            raise ApiError(exc.code, f"{message} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlUnreachable(
                f"no control service at {self.url} ({reason}): is `jpki-sim serve` running? "
                "(--control HOST:PORT for another address)") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    # ------------------------------------------------------------ the API

    def info(self) -> Any:
        return self.get("api")

    def cards(self) -> Any:
        return self.get("api/cards")

    def state(self, card: int = 0) -> Any:
        return self.get(f"api/cards/{card}")

    def act(self, action: str, card: int = 0, body: Any = None) -> Any:
        return self.post(f"api/cards/{card}/{action}", body)

    def remove(self, card: int = 0) -> Any:
        return self.act("remove", card)

    def insert(self, card: int = 0) -> Any:
        return self.act("insert", card)

    def power_cycle(self, card: int = 0) -> Any:
        return self.act("power-cycle", card)

    def pin(self, pin: str, action: str, card: int = 0, body: Any = None) -> Any:
        return self.post(f"api/cards/{card}/pins/{pin}/{action}", body)

    def set_tries(self, pin: str, tries: int, card: int = 0) -> Any:
        return self.pin(pin, "tries", card, {"tries": tries})

    def fault(self, card: int = 0, **faults: Any) -> Any:
        return self.post(f"api/cards/{card}/faults", faults)

    def clear_faults(self, card: int = 0, kind: str | None = None) -> Any:
        return self.request("DELETE", f"api/cards/{card}/faults" + (f"/{kind}" if kind else ""))

    def trace(self, card: int = 0, since: int = 0) -> Any:
        return self.get(f"api/cards/{card}/trace?since={since}")

    def set_date(self, day: str | None) -> Any:
        return self.request("PUT", "api/clock", {"date": day})

    def stream(self, card: int | None = None) -> Iterator[dict[str, Any]]:
        """The live trace: one dict per APDU or event, until the connection ends."""
        query = f"?card={card}" if card is not None else ""
        req = urllib.request.Request(self.url + f"api/stream{query}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            resp = urllib.request.urlopen(req, timeout=None)
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, f"the stream was refused (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ControlUnreachable(f"no control service at {self.url} "
                                     f"({getattr(exc, 'reason', exc)})") from None
        with resp:
            data: list[str] = []
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []
