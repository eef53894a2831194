"""The control service's front door (control/front.py) over real sockets.

OCSP and CRL requests are answered at the socket; the first other request
hands the connection, with every byte not yet answered, to uvicorn and the
app. These tests speak raw HTTP/1.1 to see what a relying party's client
sees: keep-alive, pipelining, requests split anywhere, the hand-over, the
limits and the timeouts (the service here runs with 1 s for both).
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from jpki_sim.control.runner import ControlRunner
from jpki_sim.control.served import ServedCard
from jpki_sim.issuer.ca import TestCA
from test_control import card_file, keys, served  # noqa: F401  (fixtures)

TIMEOUT = 1.0  # the service's request and keep-alive timeouts here


@pytest.fixture
def front(served: ServedCard, tmp_path: Path) -> Iterator[ControlRunner]:  # noqa: F811
    r = ControlRunner.start([served], "127.0.0.1:0", token_dir=tmp_path / "run",
                            request_timeout=TIMEOUT, keep_alive=TIMEOUT, presign=False)
    try:
        yield r
    finally:
        r.stop()


def ocsp_request(served: ServedCard, nonce: bytes | None = None,  # noqa: F811
                 algorithm: Any = None) -> bytes:
    state = served.store.state
    ca = TestCA.open(state.ca_dir, create=False)
    cert = x509.load_der_x509_certificate(state.auth.cert_der)
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, ca.auth.cert,
                                                        algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def post(der: bytes, *, path: str = "/ocsp", extra: str = "",
         ctype: str = "application/ocsp-request") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(der)}\r\n{extra}\r\n").encode() + der


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def get_path(der: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")


class Conn:
    """A raw HTTP/1.1 connection reading Content-Length framed responses."""

    def __init__(self, r: ControlRunner) -> None:
        host, port = r.server.sock.getsockname()[:2]
        self.sock = socket.create_connection((host, port), timeout=30)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"closed before a response: {self.buf!r}"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "closed in the middle of a body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body

    def closed(self) -> bool:
        """True once the service closes the connection (read until EOF; 30 s at most)."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def conn(front: ControlRunner) -> Iterator[Conn]:
    c = Conn(front)
    try:
        yield c
    finally:
        c.close()


def status_of(body: bytes) -> Any:
    return ocsp.load_der_ocsp_response(body).certificate_status


# ---------------------------------------------------------------- answers


def test_a_kept_alive_connection_is_answered_from_the_cache(
        front: ControlRunner, conn: Conn, served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    responder = front.service.ocsp
    for i in range(50):
        conn.send(post(der))
        status, headers, body = conn.response()
        assert status == 200 and headers["content-type"] == "application/ocsp-response"
        assert headers["cache-control"] == "no-store" and "date" in headers
        assert "connection" not in headers
        assert status_of(body) is ocsp.OCSPCertStatus.GOOD
        if i == 0:
            signed = responder.signed  # the first was signed, then looked up
    assert responder.signed == signed == 1
    door = front.server.door
    assert door.answered == 50 and door.handed_over == 0  # all at the socket, none by the app


def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
        front: ControlRunner, conn: Conn, served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    with_nonce = ocsp_request(served, nonce=b"fedcba9876543210")
    auth = f"Authorization: Bearer {front.token}\r\n"
    conn.send(post(der) + get(get_path(der)) + get("/crl/auth.crl")
              + post(with_nonce) + post(der, path="/ocsp/") + get("/api", auth)
              + post(der) + get("/crl/sign.crl"))
    answers = [conn.response() for _ in range(8)]
    assert [a[0] for a in answers] == [200] * 8
    door = front.server.door
    assert door.answered == 5 and door.handed_over == 1  # the five before the API call
    types = [a[1]["content-type"] for a in answers]
    assert types == ["application/ocsp-response"] * 2 + ["application/pkix-crl"] \
        + ["application/ocsp-response"] * 2 + ["application/json"] \
        + ["application/ocsp-response", "application/pkix-crl"]
    for i in (0, 1, 3, 4, 6):
        assert status_of(answers[i][2]) is ocsp.OCSPCertStatus.GOOD
    nonce = ocsp.load_der_ocsp_response(answers[3][2]).extensions.get_extension_for_class(
        x509.OCSPNonce).value.nonce
    assert nonce == b"fedcba9876543210"
    assert answers[5][2].startswith(b"{") and b'"service"' in answers[5][2]
    # the same answer before the hand-over (front door) and after it (the app)
    assert answers[6][2] == answers[0][2]
    ca = TestCA.open(served.store.state.ca_dir, create=False)
    assert x509.load_der_x509_crl(answers[2][2]).issuer == ca.auth.cert.subject
    assert x509.load_der_x509_crl(answers[7][2]).issuer == ca.sign.cert.subject


def test_the_front_door_answers_as_the_app_does(front: ControlRunner,
                                                served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served, algorithm=hashes.SHA256())
    requests = [post(der), get(get_path(der)), get("/crl/auth.crl"), post(b"junk")]
    first, after = Conn(front), Conn(front)
    try:
        for request in requests:
            first.send(request)
        mine = [first.response() for _ in requests]
        after.send(get("/nothing"))  # hands the connection over: the app answers the rest
        assert after.response()[0] == 404
        for request in requests:
            after.send(request)
        app = [after.response() for _ in requests]
    finally:
        first.close()
        after.close()
    assert front.server.door.answered == len(requests) and front.server.door.handed_over == 1
    for (s1, h1, b1), (s2, h2, b2) in zip(mine, app, strict=True):
        assert s1 == s2 == 200 and b1 == b2
        assert h1["content-type"] == h2["content-type"]
        for name in ("last-modified", "expires"):
            assert h1.get(name) == h2.get(name)
        # max-age counts down each second
        assert h1["cache-control"].split(",")[1:] == h2["cache-control"].split(",")[1:]
    assert mine[1][1]["cache-control"].startswith("max-age=")
    assert ocsp.load_der_ocsp_response(mine[3][2]).response_status is \
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_a_request_split_anywhere_is_answered(front: ControlRunner,
                                              served: ServedCard) -> None:  # noqa: F811
    request = post(ocsp_request(served))
    head = request.index(b"\r\n\r\n") + 4
    for cuts in ([1], [head - 2], [head], [head + 1], list(range(1, len(request)))):
        c = Conn(front)
        try:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = 0
            for cut in [*cuts, len(request)]:
                c.send(request[start:cut])
                start = cut
            status, _, body = c.response()
            assert status == 200 and status_of(body) is ocsp.OCSPCertStatus.GOOD
        finally:
            c.close()
    assert front.server.door.answered == 5 and front.server.door.handed_over == 0


def test_an_answer_not_cached_is_signed_while_others_are_served(
        front: ControlRunner, served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    # 20 nonce requests (each signed in a worker thread) in one write, a cached one after
    nonces = [os.urandom(16) for _ in range(20)]
    burst = b"".join(post(ocsp_request(served, nonce=n)) for n in nonces) + post(der)
    cached = Conn(front)
    signing = Conn(front)
    try:
        cached.send(post(der))
        assert cached.response()[0] == 200
        signing.send(burst)
        for _ in range(20):
            cached.send(post(der))
            assert cached.response()[0] == 200
        for n in nonces:
            resp = ocsp.load_der_ocsp_response(signing.response()[2])
            assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == n
        assert status_of(signing.response()[2]) is ocsp.OCSPCertStatus.GOOD
    finally:
        cached.close()
        signing.close()
    assert front.server.door.answered == 42 and front.server.door.handed_over == 0
    assert front.service.ocsp.signed == 21


# ---------------------------------------------------------------- handed over, refused


@pytest.mark.parametrize(("request_bytes", "status"), [
    (post(b"0" * 10, ctype="text/plain"), 415),
    (post(b"\x30" * 20_000), 413),
    (b"POST /ocsp HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\n\r\n", 411),
    (get("/ocsp"), 405),
    (get("/ocspx"), 404),
    (get("/crl/other.crl"), 404),
    (get("/static/nothing.js"), 404),
    (get("/api"), 401),
    (b"GARBAGE\r\n\r\n", 400),
], ids=["type", "size", "length", "method", "path", "crl", "static", "token", "garbage"])
def test_what_the_front_door_does_not_answer_the_app_does(
        front: ControlRunner, conn: Conn, request_bytes: bytes, status: int) -> None:
    conn.send(request_bytes)
    assert conn.response()[0] == status
    assert front.server.door.answered == 0 and front.server.door.handed_over == 1


def test_chunked_query_and_head_requests_are_answered_by_the_app(
        conn: Conn, served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    conn.send(b"POST /ocsp HTTP/1.1\r\nHost: t\r\nContent-Type: application/ocsp-request\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(der):x}\r\n".encode() + der
              + b"\r\n0\r\n\r\n")
    status, _, body = conn.response()
    assert status == 200 and status_of(body) is ocsp.OCSPCertStatus.GOOD
    conn.send(post(der, path="/ocsp?from=test"))
    status, _, body = conn.response()
    assert status == 200 and status_of(body) is ocsp.OCSPCertStatus.GOOD
    conn.send(b"HEAD /crl/auth.crl HTTP/1.1\r\nHost: t\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and b"application/pkix-crl" in head


def test_a_head_over_the_limit_gets_431(front: ControlRunner) -> None:
    for ending in (b"", b"\r\n\r\n"):
        c = Conn(front)
        try:
            c.send(b"GET /crl/auth.crl HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + ending)
            assert c.response()[0] == 431
            assert c.closed()
        finally:
            c.close()


def test_bare_line_feeds_go_to_the_app(conn: Conn) -> None:
    conn.send(b"GET /crl/auth.crl HTTP/1.1\nHost: t\n\n")
    head = b""
    while b"\n\n" not in head.replace(b"\r\n", b"\n"):
        chunk = conn.sock.recv(4096)
        assert chunk, "closed without an answer"
        head += chunk
    assert head.startswith(b"HTTP/1.1 ")


# ---------------------------------------------------------------- connections and timeouts


def test_connection_close_and_http_1_0_are_honoured(front: ControlRunner,
                                                    served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    for request in (post(der, extra="Connection: close\r\n"),
                    post(der).replace(b"HTTP/1.1", b"HTTP/1.0")):
        c = Conn(front)
        try:
            c.send(request)
            status, headers, _ = c.response()
            assert status == 200 and headers["connection"] == "close"
            assert c.closed() and c.buf == b""
        finally:
            c.close()
    c = Conn(front)  # HTTP/1.0 asking to be kept alive
    try:
        for _ in range(2):
            c.send(post(der, extra="Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"))
            assert c.response()[0] == 200
    finally:
        c.close()


@pytest.mark.parametrize("after", ["answer", "hand-over"])
def test_a_half_sent_request_on_a_kept_alive_connection_is_closed(
        conn: Conn, served: ServedCard, after: str) -> None:  # noqa: F811
    conn.send(post(ocsp_request(served)) if after == "answer" else get("/nothing"))
    assert conn.response()[0] in (200, 404)
    conn.send(b"POST /ocsp HTTP/1.1\r\nHost: t\r\nContent-Le")
    assert conn.closed() and b"HTTP/" not in conn.buf


def test_a_handed_over_request_keeps_its_deadline(front: ControlRunner, conn: Conn) -> None:
    # the head is whole (the app's), its body never comes: uvicorn's side closes it
    conn.send(f"PUT /api/clock HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {front.token}\r\n"
              "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode())
    assert conn.closed() and b"HTTP/" not in conn.buf


def test_an_idle_kept_alive_connection_is_closed(conn: Conn, served: ServedCard) -> None:  # noqa: F811
    conn.send(post(ocsp_request(served)))
    assert conn.response()[0] == 200
    assert conn.closed() and conn.buf == b""


def test_200_parallel_kept_alive_connections_no_reset(front: ControlRunner,
                                                      served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    host, port = front.server.sock.getsockname()[:2]
    barrier = threading.Barrier(200)

    def one(_i: int) -> list[int]:
        c = Conn(front)
        try:
            barrier.wait(30)
            statuses = []
            for _ in range(3):
                c.send(post(der) * 2)  # two at a time, pipelined
                for _ in range(2):
                    status, _, body = c.response()
                    assert status_of(body) is ocsp.OCSPCertStatus.GOOD
                    statuses.append(status)
            return statuses
        finally:
            c.close()

    with ThreadPoolExecutor(200) as pool:
        assert list(pool.map(one, range(200))) == [[200] * 6] * 200


# ---------------------------------------------------------------- the cache


def test_a_revocation_by_another_process_shows_at_once(
        front: ControlRunner, conn: Conn, served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    for _ in range(2):
        conn.send(post(der) + get(get_path(der)))
        assert [status_of(conn.response()[2]) for _ in range(2)] == \
            [ocsp.OCSPCertStatus.GOOD] * 2
    state = served.store.state
    script = ("import sys; from datetime import datetime, timezone; "
              "from jpki_sim.issuer.ca import TestCA; "
              "TestCA.open(sys.argv[1], create=False).revoke(int(sys.argv[2]), "
              "at=datetime(2025, 6, 1, tzinfo=timezone.utc), reason='keyCompromise')")
    subprocess.run([sys.executable, "-c", script, str(state.ca_dir), str(state.auth.serial)],
                   check=True, timeout=60, env={**os.environ, "PYTHONPATH": ":".join(sys.path)})
    conn.send(post(der) + get(get_path(der)) + get("/crl/auth.crl"))
    assert [status_of(conn.response()[2]) for _ in range(2)] == [ocsp.OCSPCertStatus.REVOKED] * 2
    crl = x509.load_der_x509_crl(conn.response()[2])
    assert crl.get_revoked_certificate_by_serial_number(state.auth.serial) is not None
    assert front.server.door.answered == 7 and front.server.door.handed_over == 0


def test_a_move_of_the_status_date_drops_the_cache(front: ControlRunner, conn: Conn,
                                                   served: ServedCard) -> None:  # noqa: F811
    der = ocsp_request(served)
    conn.send(post(der))
    before = ocsp.load_der_ocsp_response(conn.response()[2])
    front.service.set_date({"date": "2031-05-05"})
    conn.send(post(der))
    moved = ocsp.load_der_ocsp_response(conn.response()[2])
    assert before.produced_at_utc.year != 2031
    assert moved.produced_at_utc.date().isoformat() == "2031-05-05"
    assert moved.this_update_utc.date().isoformat() == "2031-05-05"
