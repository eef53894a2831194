"""pyHanko: a PDF signed with the card's signature key through OpenSC's PKCS#11 module,
validated against the test CA's root with revocation checked by the project's OCSP
responder (``jpki-sim ca ocsp``), before and after the certificate is revoked at the
counter (``jpki-sim card change-address``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from compat_harness import (
    SIGN_PIN,
    SIGN_TOKEN,
    Served,
    free_port,
    need_python,
    ok,
    pkcs11_module,
    run,
    run_python,
    serve,
    stop,
)

from pcsc_harness import PORTS, PcscSession, jpki_sim_command

pytestmark = [pytest.mark.pcsc]


@dataclass
class HankoCard:
    served: Served
    ca_dir: Path
    ocsp: subprocess.Popen[str]
    ocsp_log: Path


def minimal_pdf() -> bytes:
    """A one-page PDF with a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        None,  # the content stream
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    content = b"BT /F1 18 Tf 72 770 Td (jpki-sim: application form) Tj ET"
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        if body is None:
            body = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def hanko_card(readers_to_ourselves: PcscSession, tmp_path: Path) -> Iterator[HankoCard]:
    """A card from a CA of its own whose certificates name a responder on a free port."""
    need_python("pyhanko.sign.pkcs11", "pyhanko[pkcs11]")
    from jpki_sim.issuer import counter
    from jpki_sim.issuer.ca import TestCA
    from jpki_sim.profiles.jpki.state import save

    port = free_port()
    ca = TestCA.open(tmp_path / "ca", base_url=f"http://127.0.0.1:{port}")
    card = tmp_path / "card.json"
    save(counter.issue_card(counter.default_identity(), ca=ca), card)
    log = tmp_path / "ocsp.log"
    with open(log, "w") as err:
        ocsp = subprocess.Popen([*jpki_sim_command(), "ca", "ocsp", "--ca", str(ca.directory),
                                 "--port", str(port), "--json", "--verbose"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                text=True)
    try:
        assert ocsp.stdout is not None
        ready = json.loads(ocsp.stdout.readline() or "{}")
        assert ready.get("ocsp") == f"http://127.0.0.1:{port}/ocsp", log.read_text()
        served = serve(card, PORTS[0])
        try:
            yield HankoCard(served, ca.directory, ocsp, log)
        finally:
            stop(served)
    finally:
        ocsp.terminate()
        ocsp.wait(10)


SIGN_PROGRAM = """
import json, sys
from pyhanko.config.pkcs11 import TokenCriteria
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.pkcs11 import PKCS11Signer, open_pkcs11_session

module, token, pin, source, target = sys.argv[1:]
session = open_pkcs11_session(module, token_criteria=TokenCriteria(label=token), user_pin=pin)
try:
    signer = PKCS11Signer(session, cert_label="Digital Signature Certificate",
                          key_label="Digital Signature Key")
    with open(source, "rb") as inf, open(target, "wb") as outf:
        meta = signers.PdfSignatureMetadata(field_name="Signature1", reason="申請")
        signers.sign_pdf(IncrementalPdfFileWriter(inf), meta, signer=signer, output=outf)
finally:
    session.close()
print(json.dumps({"signed": target}))
"""

#: the sign root as the only trust anchor; OCSP required for the signer's certificate
VALIDATE_PROGRAM = """
import json, sys
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule)

pdf, root = sys.argv[1:]
policy = CertRevTrustPolicy(RevocationCheckingPolicy(
    ee_certificate_rule=RevocationCheckingRule.OCSP_REQUIRED,
    intermediate_ca_cert_rule=RevocationCheckingRule.NO_CHECK))
context = ValidationContext(trust_roots=[load_cert_from_pemder(root)], allow_fetching=True,
                            revinfo_policy=policy)
with open(pdf, "rb") as f:
    signatures = PdfFileReader(f).embedded_signatures
    status = validate_pdf_signature(signatures[0], context)
print(json.dumps({"signatures": len(signatures), "intact": status.intact,
                  "valid": status.valid, "trusted": status.trusted, "revoked": status.revoked,
                  "bottom_line": status.bottom_line,
                  "ocsp_statuses": [o["response_bytes"]["response"].parsed["tbs_response_data"]
                                    ["responses"][0]["cert_status"].name
                                    for o in context.ocsps],
                  "signer": status.signing_cert.dump().hex(),
                  "details": status.pretty_print_details()}))
"""


def sign_pdf(card: HankoCard, source: Path, target: Path) -> None:
    run_python(SIGN_PROGRAM, pkcs11_module(), SIGN_TOKEN, SIGN_PIN, str(source), str(target))
    assert target.stat().st_size > source.stat().st_size


def validate(card: HankoCard, pdf: Path) -> dict[str, Any]:
    found = run_python(VALIDATE_PROGRAM, str(pdf), str(card.ca_dir / "sign-ca.crt"))
    assert found["signatures"] == 1
    return found


@pytest.mark.compat("pyhanko", "sign a PDF with the signature key (PKCS#11), validate with the "
                    "test root and OCSP: intact, trusted, valid")
def test_signed_pdf_validates(hanko_card: HankoCard, tmp_path: Path) -> None:
    (tmp_path / "form.pdf").write_bytes(minimal_pdf())
    sign_pdf(hanko_card, tmp_path / "form.pdf", tmp_path / "signed.pdf")
    status = validate(hanko_card, tmp_path / "signed.pdf")
    assert bytes.fromhex(status["signer"]) == hanko_card.served.cert_der("sign")
    assert (status["intact"], status["valid"], status["trusted"], status["revoked"]) == (
        True, True, True, False), status["details"]
    assert status["bottom_line"]
    # answered by the responder the certificate's AIA names (the CA's own, on a free port)
    assert status["ocsp_statuses"] == ["good"], status["details"]


@pytest.mark.compat("pyhanko", "the same after `jpki-sim card change-address` revoked the "
                    "signature certificate: revoked")
def test_revoked_certificate_is_seen(hanko_card: HankoCard, tmp_path: Path) -> None:
    (tmp_path / "form.pdf").write_bytes(minimal_pdf())
    sign_pdf(hanko_card, tmp_path / "form.pdf", tmp_path / "signed.pdf")
    status = validate(hanko_card, tmp_path / "signed.pdf")
    assert status["bottom_line"] and not status["revoked"]  # good before the move
    serial = hanko_card.served.cert("sign").serial_number
    moved = ok(run([*jpki_sim_command(), "card", "change-address",
                    str(hanko_card.served.card_file), "東京都千代田区霞が関２丁目１番２号",
                    "--json"]))
    assert format(serial, "x") in moved.stdout
    status = validate(hanko_card, tmp_path / "signed.pdf")
    assert status["intact"] and status["revoked"] and not status["bottom_line"], (
        status["details"])
    assert status["ocsp_statuses"] == ["revoked"], status["details"]
