"""``jpki-sim ca``: the test CA's revocation services (CRL file, OCSP responder) and its roots.

The X.509 roots (auth, sign) and the CV roots of the 券面 applications (``export-cv``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def configure(sub: Any) -> None:
    group = sub.add_parser(
        "ca",
        help="the test CA: CRLs, an OCSP responder on localhost, its root certificates",
        description=(
            "The test CA (separate auth and sign CAs, O=JPKI-TEST) lives in a directory, "
            "by default under the user data dir. `ca init` creates it (and `card issue` on "
            "first use); the other commands never do."
        ),
    )
    cmds = group.add_subparsers(dest="ca_command", metavar="SUBCOMMAND")
    group.set_defaults(_group_parser=group)

    p = cmds.add_parser("crl", help="write a CRL signed by the auth or sign CA")
    p.add_argument("--which", choices=("auth", "sign"), default="auth", help="which CA (auth)")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the CRL")
    p.add_argument("--pem", action="store_true", help="PEM instead of DER")
    _common(p)
    p.set_defaults(func=run_crl)

    p = cmds.add_parser(
        "ocsp",
        help="serve OCSP (and the CRLs) on localhost until Ctrl-C",
        description=(
            "Answer OCSP requests (POST to /ocsp, or GET /ocsp/<base64>) about certificates "
            "of both CAs, and serve /crl/auth.crl and /crl/sign.crl. Listens on 127.0.0.1 only. "
            "The same service as `jpki-sim serve`'s (which answers OCSP itself): answers "
            "pre-signed and cached, request size and time limits (docs/control.md)."
        ),
    )
    p.add_argument(
        "--port", type=int, default=None, help="TCP port (default: the one in the certificates)"
    )
    p.add_argument("--verbose", action="store_true", help="log each request")
    _common(p)
    p.set_defaults(func=run_ocsp)

    p = cmds.add_parser("show", help="where the CA is, its roots and what it issued")
    _common(p)
    p.set_defaults(func=run_show)

    p = cmds.add_parser(
        "export-cv",
        help="write the CV roots (券面 applications, MF chain) clients check signatures with",
        description=(
            "Write the test CV CA's three roots (MF chain 9000020/001, card surface "
            "9000023/001, input helper 9000033/001) as self-signed CV certificates in the "
            "card's layout (7F21 ...), concatenated; --pem writes their public keys instead."
        ),
    )
    p.add_argument("--out", metavar="FILE", required=True, help="where to write the roots")
    p.add_argument("--pem", action="store_true", help="PEM public keys, each after its key id")
    p.add_argument("--ca", metavar="DIR", help="test CA directory (default: user data dir)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_export_cv)

    p = cmds.add_parser(
        "init",
        help="create the test CA (new root keys); nothing else creates one except card issue",
        description=(
            "Create the test CA in --ca DIR (default: the user data dir): two RSA-2048 roots, "
            "auth and sign. An existing CA is left as it is."
        ),
    )
    p.add_argument("--ca", metavar="DIR", help="test CA directory (default: user data dir)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_init)

    p = cmds.add_parser(
        "stock-keys",
        help="generate RSA keys ahead of time, so that issuing a card takes them (each once)",
        description=(
            "Fill the test CA's key stock (<CA dir>/keystock/) up to N keys, generated side "
            "by side on all cores. `card issue` takes a card's seven key pairs from it, "
            "each key once, and generates any shortfall then (docs/performance.md)."
        ),
        epilog="example: jpki-sim ca stock-keys 70   # keys for ten cards",
    )
    p.add_argument("count", type=int, metavar="N", help="the keys the stock should hold")
    p.add_argument("--ca", metavar="DIR", help="test CA directory (default: user data dir)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run_stock_keys)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca", metavar="DIR", help="test CA directory (default: user data dir)")
    p.add_argument(
        "--at", metavar="DATE", help="answer as of this date (noon Japan time) instead of now"
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _at(args: argparse.Namespace) -> Any:
    if args.at is None:
        return None
    from jpki_sim.cli.card import parse_date
    from jpki_sim.issuer.lifecycle import FixedClock

    return FixedClock(parse_date(args.at, "--at")).now()


def run_crl(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from jpki_sim.card.store import write_atomic
    from jpki_sim.errors import UserError
    from jpki_sim.issuer.ca import TestCA

    out = Path(args.out)
    try:
        if out.is_dir() or not out.parent.is_dir():
            raise UserError(f"{out}: not a file path in an existing directory")
    except OSError as exc:
        raise UserError(f"{out}: {exc.strerror or exc}") from None
    ca = TestCA.open(args.ca, create=False)
    der = ca.crl(args.which, at=_at(args))
    crl = x509.load_der_x509_crl(der)
    data = crl.public_bytes(serialization.Encoding.PEM) if args.pem else der
    try:
        write_atomic(out, data, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    serials = [format(r.serial_number, "x") for r in crl]
    doc = {
        "path": str(out),
        "ca": args.which,
        "issuer": crl.issuer.rfc4514_string(),
        "this_update": crl.last_update_utc.isoformat(),
        "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
        "revoked": serials,
    }
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(f"wrote {out}: {args.which} CRL with {len(serials)} revoked certificate(s)")
    return 0


def run_ocsp(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from jpki_sim.control import DEFAULT_PORT
    from jpki_sim.control.runner import ControlRunner
    from jpki_sim.errors import UserError
    from jpki_sim.issuer.ca import TestCA

    ca = TestCA.open(args.ca, create=False)
    port = args.port if args.port is not None else (urlsplit(ca.base_url).port or DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a TCP port")
    import logging
    import threading

    if args.verbose:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    runner = ControlRunner.start([], f"127.0.0.1:{port}", cas=[ca], control=False)
    if args.at:
        from jpki_sim.cli.card import parse_date

        runner.service.status_date.set(parse_date(args.at, "--at"))
    runner.service.presign_in_background()
    import signal

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    # a service manager or a test stops it with SIGTERM: shut down the same way as Ctrl-C
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    base = runner.url.rstrip("/")
    ready = {
        "ocsp": f"{base}/ocsp",
        "crl": {w: f"{base}/crl/{w}.crl" for w in ("auth", "sign")},
        "ca": str(ca.directory),
        "as_of": args.at,
    }
    try:
        if args.json:
            print(json.dumps(ready), flush=True)
        else:
            print(
                f"OCSP responder ready on {ready['ocsp']} (CRLs under /crl/) for {ca.directory}; "
                "Ctrl-C to stop",
                flush=True,
            )
        while not stop.wait(1.0):
            pass
        print("stopped", file=sys.stderr)
    finally:
        runner.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _cv_roots(cv: Any) -> dict[str, dict[str, str]]:
    from jpki_sim.profiles.jpki.records_cv import key_id_text

    return {
        name: {"key_id": key_id_text(root.key_id), "for": root.label}
        for name, root in cv.roots.items()
    }


def run_export_cv(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jpki_sim.card.store import write_atomic
    from jpki_sim.errors import UserError
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.issuer.cv import CvCA

    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise UserError(f"{out}: not a file path in an existing directory")
    cv = CvCA.open(TestCA.open(args.ca, create=False).directory)
    data = cv.root_pem() if args.pem else cv.root_certificates()
    try:
        write_atomic(out, data, 0o644)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    roots = _cv_roots(cv)
    doc = {"path": str(out), "format": "pem" if args.pem else "cv", "roots": roots}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(f"wrote {out}: CV roots {', '.join(r['key_id'] for r in roots.values())}")
    return 0


def run_init(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.issuer.ca import TestCA

    try:
        TestCA.open(args.ca, create=False)
        existed = True
    except UserError:  # not there (or broken: creating says why)
        existed = False
    ca = TestCA.open(args.ca, create=True)
    doc = {"directory": str(ca.directory), "created": not existed, "base_url": ca.base_url}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    elif existed:
        print(f"a test CA is already in {ca.directory}; left as it is")
    else:
        print(f"created the test CA in {ca.directory}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.issuer.cv import CvCA
    from jpki_sim.issuer.keystock import KeyStock

    ca = TestCA.open(args.ca, create=False)
    cv = CvCA.open(ca.directory)
    records = ca.records()
    doc = {
        "directory": str(ca.directory),
        "base_url": ca.base_url,
        "roots": {
            w: {
                "subject": ca[w].cert.subject.rfc4514_string(),
                "serial": format(ca[w].cert.serial_number, "x"),
                "file": str(ca.directory / f"{w}-ca.crt"),
            }
            for w in ("auth", "sign")
        },
        "cv_roots": {
            name: {**root, "file": str(cv.directory / "roots.cv")}
            for name, root in _cv_roots(cv).items()
        },
        "issued": len(records),
        "revoked": sum(1 for r in records if r.revoked),
        "key_stock": KeyStock.of_ca(ca.directory).count(),
    }
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        print(f"test CA in {doc['directory']} (OCSP/CRL base {doc['base_url']})")
        for w, root in doc["roots"].items():  # type: ignore[attr-defined]
            print(f"  {w} root: {root['subject']} ({root['file']})")
        for root in doc["cv_roots"].values():  # type: ignore[attr-defined]
            print(f"  CV root {root['key_id']}: {root['for']} ({root['file']})")
        print(f"  {doc['issued']} certificates issued, {doc['revoked']} revoked")
        print(f"  {doc['key_stock']} keys in stock (jpki-sim ca stock-keys N)")
    return 0


def run_stock_keys(args: argparse.Namespace) -> int:
    import time

    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.issuer.keystock import KeyStock

    ca = TestCA.open(args.ca, create=False)
    stock = KeyStock.of_ca(ca.directory)
    t0 = time.perf_counter()
    made = stock.fill(args.count)
    took = time.perf_counter() - t0
    doc = {"directory": str(stock.directory), "made": made, "keys": stock.count(),
           "seconds": round(took, 3)}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"{stock.directory}: {doc['keys']} keys ({made} made in {took:.1f} s)")
    return 0
