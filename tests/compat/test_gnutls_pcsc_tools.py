"""GnuTLS's p11tool through OpenSC's module, and pcsc-tools straight on PC/SC."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from compat_harness import (
    AUTH_PIN,
    AUTH_TOKEN,
    SIGN_TOKEN,
    Served,
    need_tools,
    ok,
    pem_certificates,
    pkcs11_module,
    run,
)

from jpki_sim.profiles.jpki import ids as jpki

pytestmark = [pytest.mark.pcsc]


def token_url(label: str) -> str:
    return "pkcs11:token=" + urllib.parse.quote(label, safe="")


@pytest.mark.compat("gnutls", "`p11tool --list-tokens`, `--list-all` (and with `--login`): "
                    "the card's certificates, keys and the private signature certificate")
def test_p11tool_lists_everything(served: Served) -> None:
    need_tools("p11tool", package="gnutls-bin")
    provider = ["p11tool", "--provider", pkcs11_module()]
    tokens = ok(run([*provider, "--list-tokens"])).stdout
    labels = re.findall(r"Label: (.+)", tokens)
    assert labels[:2] == [AUTH_TOKEN, SIGN_TOKEN]
    public = ok(run([*provider, "--list-all", token_url(AUTH_TOKEN)])).stdout
    objects = set(re.findall(r"Label: (.+)", public))
    assert {"User Authentication Certificate", "User Authentication Certificate CA",
            "Digital Signature Certificate CA", "User Authentication Public Key"} <= objects
    assert "User Authentication Key" not in objects  # private: only after login
    private = ok(run([*provider, "--login", "--set-pin", AUTH_PIN, "--list-all",
                      token_url(AUTH_TOKEN)])).stdout
    assert "User Authentication Key" in set(re.findall(r"Label: (.+)", private))
    pem = ok(run([*provider, "--export", token_url(AUTH_TOKEN) +
                  ";object=User%20Authentication%20Certificate;type=cert"])).stdout
    assert pem_certificates(pem) == [served.cert_der("auth")]


@pytest.mark.compat("pcsc-tools", "`pcsc_scan -c` sees the card and its ATR")
def test_pcsc_scan_sees_the_card(served: Served) -> None:
    need_tools("pcsc_scan", package="pcsc-tools")
    out = ok(run(["pcsc_scan", "-c"], timeout=30)).stdout
    block = out.split(f"Reader 0: {served.reader}")[1].split("Reader 1")[0]
    assert "Card inserted" in block
    atr = " ".join(f"{b:02X}" for b in jpki.ATR)
    assert f"ATR: {atr}" in block


@pytest.mark.compat("pcsc-tools", "`scriptor`: SELECT the JPKI application, read the token "
                    "label from EF 0006")
def test_scriptor_reads_the_token_label(served: Served) -> None:
    need_tools("scriptor", package="pcsc-tools")
    script = "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01\n00 A4 02 0C 02 00 06\n00 B0 00 00 20\n"
    out = ok(run(["scriptor", "-r", served.reader], input=script, timeout=30)).stdout
    assert out.count("< 90 00 : Normal processing.") == 2
    label = re.search(r"> 00 B0 00 00 20\n< ((?:[0-9A-F]{2}\s+)+)90 00 : Normal processing", out)
    assert label, out
    assert bytes.fromhex(label.group(1)).decode("ascii").strip() == "JPKIAPICCTOKEN2"
