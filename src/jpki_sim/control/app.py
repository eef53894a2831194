"""The HTTP face of the control service (Starlette): JSON API, trace stream, dashboard, OCSP.

Paths (docs/control.md has them all with curl examples):

- ``/api/...``: the JSON control API; needs the token (``Authorization: Bearer
  TOKEN``; GET requests may pass ``?token=TOKEN`` instead, as the dashboard's
  event stream must). No CORS headers are sent, so a page from elsewhere cannot
  read an answer, and a POST needs the header, which no other site can set.
- ``/``: the dashboard (token as for GET); ``/static/...``: its script and style.
- ``/ocsp`` (POST, RFC 6960 appendix A), ``/ocsp/BASE64`` (GET) and the CRL
  paths the certificates name: open to relying parties, no token.

Anything else is 404. Errors are JSON ``{"error": "..."}`` with 400 (bad input),
401 (no or a wrong token), 404, 405, 411, 413, 415.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from importlib import resources
from typing import Any
from urllib.parse import unquote

from jpki_sim.control import ocsp as ocsp_mod
from jpki_sim.control.livetrace import record_json
from jpki_sim.control.service import ControlService, NotFound
from jpki_sim.errors import UserError

log = logging.getLogger("jpki_sim.control")

#: seconds between keep-alive comments on the event stream
STREAM_HEARTBEAT = 15.0
#: trace records sent to a new stream listener before the live ones
STREAM_BACKLOG = 200

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADERS = {
    **_SECURITY_HEADERS,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
}


def _static(name: str) -> bytes:
    return resources.files("jpki_sim.control").joinpath("static", name).read_bytes()


def build_app(service: ControlService, *, control: bool = True) -> Any:
    """The ASGI app. ``control`` False: OCSP and CRLs only (``jpki-sim ca ocsp``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps({"error": message}, ensure_ascii=False).encode()
        return Response(body, status, {**_SECURITY_HEADERS, **(headers or {})},
                        media_type="application/json")

    def ok(doc: Any, status: int = 200) -> Response:
        body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
        return Response(body, status, _SECURITY_HEADERS, media_type="application/json")

    def authorized(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else ""
        if not given and request.method == "GET":
            given = request.query_params.get("token", "")
        return bool(given) and hmac.compare_digest(given.encode(), service.token.encode())

    def unauthorized() -> Response:
        return error(401, "this needs the control token: Authorization: Bearer TOKEN "
                     "(the token file is named in serve's ready line)",
                     {"WWW-Authenticate": 'Bearer realm="jpki-sim"'})

    async def body_json(request: Request) -> Any:
        raw = await read_body(request, 64 * 1024)
        if isinstance(raw, Response):
            return raw
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return error(400, f"the body is not JSON ({exc})")

    async def read_body(request: Request, limit: int) -> bytes | Response:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error(400, "bad Content-Length")
            if int(length) > limit:
                return error(413, f"the body is over {limit} bytes")
        elif request.headers.get("transfer-encoding", "").lower() != "chunked":
            return b""
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, f"the body is over {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def api(handler: Any, *, needs_body: bool = False) -> Any:
        """An API endpoint: token checked, body parsed, errors as JSON, work in a thread."""
        from starlette.concurrency import run_in_threadpool

        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return unauthorized()
            body = None
            if needs_body:
                body = await body_json(request)
                if isinstance(body, Response):
                    return body
            try:
                doc = await run_in_threadpool(handler, request, body)
            except NotFound as exc:
                return error(404, str(exc))
            except UserError as exc:
                return error(400, str(exc))
            return ok(doc)

        return endpoint

    # ------------------------------------------------------------ the API

    def get_info(request: Request, _body: Any) -> Any:
        return service.info()

    def get_cards(request: Request, _body: Any) -> Any:
        return service.states()

    def get_card(request: Request, _body: Any) -> Any:
        return service.state(request.path_params["n"])

    def post_action(request: Request, body: Any) -> Any:
        return service.act(request.path_params["n"], request.path_params["action"], body)

    def post_pin(request: Request, body: Any) -> Any:
        p = request.path_params
        return service.pin(p["n"], p["pin"], p["action"], body)

    def get_faults(request: Request, _body: Any) -> Any:
        return service.card(request.path_params["n"]).faults.to_json()

    def post_faults(request: Request, body: Any) -> Any:
        return service.set_faults(request.path_params["n"], body)

    def delete_faults(request: Request, _body: Any) -> Any:
        return service.clear_faults(request.path_params["n"], request.path_params.get("kind"))

    def get_trace(request: Request, _body: Any) -> Any:
        since = request.query_params.get("since", "0")
        if not since.isdigit():
            raise UserError("since: a trace sequence number")
        return service.trace(request.path_params["n"], int(since))

    def get_clock(request: Request, _body: Any) -> Any:
        return service.status_date.to_json()

    def put_clock(request: Request, body: Any) -> Any:
        return service.set_date(body)

    async def stream(request: Request) -> Response:
        """Server-sent events: every card's (or ``?card=N``'s) trace, live, PINs masked."""
        if not authorized(request):
            return unauthorized()
        wanted = request.query_params.get("card")
        try:
            cards = [service.card(wanted)] if wanted is not None else list(service.cards)
        except NotFound as exc:
            return error(404, str(exc))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=5000)

        def listener_for(index: int) -> Any:
            def put(rec: Any) -> None:
                if not queue.full():
                    queue.put_nowait((index, rec))

            return lambda rec: loop.call_soon_threadsafe(put, rec)

        unsubscribe = [c.trace.subscribe(listener_for(c.index)) for c in cards]
        backlog = sorted(((r[1], c.index, r) for c in cards
                          for r in c.trace.recent(STREAM_BACKLOG)),
                         key=lambda x: x[0])[-STREAM_BACKLOG:]

        def event(index: int, rec: Any) -> bytes:
            doc = record_json(rec, index)
            return (f"id: {index}:{rec[0]}\nevent: trace\n"
                    f"data: {json.dumps(doc, ensure_ascii=False)}\n\n").encode()

        async def events() -> Any:
            try:
                yield b"retry: 1000\n\n"
                for _t, index, rec in backlog:
                    yield event(index, rec)
                while True:
                    try:
                        index, rec = await asyncio.wait_for(queue.get(), STREAM_HEARTBEAT)
                    except asyncio.TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    yield event(index, rec)
            finally:
                for undo in unsubscribe:
                    undo()

        headers = {**_SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def face(request: Request) -> Response:
        """The card's front (PNG), token-protected like the API; versioned URLs may be cached."""
        from starlette.concurrency import run_in_threadpool

        if not authorized(request):
            return unauthorized()
        try:
            png = await run_in_threadpool(service.face, request.path_params["n"])
        except NotFound as exc:
            return error(404, str(exc))
        except UserError as exc:
            return error(400, str(exc))
        return Response(png, 200, {**_SECURITY_HEADERS, "Cache-Control": "private, max-age=3600"},
                        media_type="image/png")

    # ------------------------------------------------------------ the dashboard

    async def dashboard(request: Request) -> Response:
        if not authorized(request):
            page = _static("unauthorized.html")
            return Response(page, 401, _PAGE_HEADERS, media_type="text/html; charset=utf-8")
        return Response(_static("index.html"), 200, _PAGE_HEADERS,
                        media_type="text/html; charset=utf-8")

    static_types = {"dashboard.js": "text/javascript; charset=utf-8",
                    "dashboard.css": "text/css; charset=utf-8"}

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static_types:
            return error(404, "not found")
        return Response(_static(name), 200, {**_PAGE_HEADERS, "Cache-Control": "no-cache"},
                        media_type=static_types[name])

    # ------------------------------------------------------------ OCSP and CRLs

    responder = service.ocsp

    async def ocsp_answer(der: bytes, get: bool) -> Response:
        from starlette.concurrency import run_in_threadpool

        cached = responder.cached(der)
        body = cached if cached is not None else await run_in_threadpool(responder.respond, der)
        headers = {"Cache-Control": "no-store"}
        if get:
            headers = ocsp_mod.http_dates(body)
        return Response(body, 200, headers, media_type=ocsp_mod.CONTENT_TYPE_RESPONSE)

    async def ocsp_post(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != ocsp_mod.CONTENT_TYPE_REQUEST:
            return error(415, f"an OCSP request is sent as {ocsp_mod.CONTENT_TYPE_REQUEST}")
        if request.headers.get("content-length") is None and \
                request.headers.get("transfer-encoding", "").lower() != "chunked":
            return error(411, "an OCSP request needs a Content-Length")
        raw = await read_body(request, ocsp_mod.MAX_REQUEST)
        if isinstance(raw, Response):
            return raw
        return await ocsp_answer(raw, get=False)

    async def ocsp_get(request: Request) -> Response:
        encoded = unquote(request.path_params["b64"])
        if len(encoded) > ocsp_mod.MAX_REQUEST * 2:
            return error(414, "the request is too long")
        try:
            der = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            der = b""
        return await ocsp_answer(der, get=True)

    async def crl(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await run_in_threadpool(responder.crl, request.url.path)
        if body is None:
            return error(404, "not found")
        return Response(body, 200, {"Cache-Control": "max-age=60"},
                        media_type=ocsp_mod.CONTENT_TYPE_CRL)

    crl_paths = sorted({p for p in responder.crl_paths()} | {"/crl/auth.crl", "/crl/sign.crl"})
    routes = [
        Route("/ocsp", ocsp_post, methods=["POST"]),
        Route("/ocsp/", ocsp_post, methods=["POST"]),
        Route("/ocsp/{b64:path}", ocsp_get, methods=["GET"]),
        *[Route(p, crl, methods=["GET"]) for p in crl_paths],
    ]
    if control:
        routes += [
            Route("/", dashboard, methods=["GET"]),
            Route("/static/{name}", static, methods=["GET"]),
            Route("/api", api(get_info), methods=["GET"]),
            Route("/api/cards", api(get_cards), methods=["GET"]),
            Route("/api/cards/{n:int}", api(get_card), methods=["GET"]),
            Route("/api/cards/{n:int}/faults", api(get_faults), methods=["GET"]),
            Route("/api/cards/{n:int}/faults", api(post_faults, needs_body=True),
                  methods=["POST"]),
            Route("/api/cards/{n:int}/faults", api(delete_faults), methods=["DELETE"]),
            Route("/api/cards/{n:int}/faults/{kind}", api(delete_faults), methods=["DELETE"]),
            Route("/api/cards/{n:int}/trace", api(get_trace), methods=["GET"]),
            Route("/api/cards/{n:int}/face.png", face, methods=["GET"]),
            Route("/api/cards/{n:int}/pins/{pin}/{action}", api(post_pin, needs_body=True),
                  methods=["POST"]),
            Route("/api/cards/{n:int}/{action}", api(post_action, needs_body=True),
                  methods=["POST"]),
            Route("/api/clock", api(get_clock), methods=["GET"]),
            Route("/api/clock", api(put_clock, needs_body=True), methods=["PUT", "POST"]),
            Route("/api/stream", stream, methods=["GET"]),
        ]
    async def http_error(request: Request, exc: Any) -> Response:
        status = getattr(exc, "status_code", 500)
        if request.url.path.startswith("/api") and control and not authorized(request):
            return unauthorized()
        return error(status, getattr(exc, "detail", "") or "error")

    inner = Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})
    return ocsp_fast_path(responder, inner)


def ocsp_fast_path(responder: Any, inner: Any) -> Any:
    """Answer a well-formed POST /ocsp whose answer is cached straight from ASGI.

    The common request of a relying party (the same bytes each time) skips
    Starlette's request and routing objects; anything else (another path, a
    wrong content type or length, a request not cached yet) goes to ``inner``,
    which applies every rule. Saves about half the time of a cached answer.
    """
    ctype_ok = ocsp_mod.CONTENT_TYPE_REQUEST.encode()
    response_headers = [(b"content-type", ocsp_mod.CONTENT_TYPE_RESPONSE.encode()),
                        (b"cache-control", b"no-store")]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or \
                scope["path"] not in ("/ocsp", "/ocsp/"):
            await inner(scope, receive, send)
            return
        length = -1
        ctype = b""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"content-type":
                ctype = value.split(b";")[0].strip().lower()
        if ctype != ctype_ok or not 0 < length <= ocsp_mod.MAX_REQUEST:
            await inner(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        der = b"".join(chunks)
        body = responder.cached(der)
        if body is None:
            from starlette.concurrency import run_in_threadpool

            body = await run_in_threadpool(responder.respond, der)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*response_headers,
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app
