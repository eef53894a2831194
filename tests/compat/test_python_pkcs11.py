"""PyKCS11 and python-pkcs11 through OpenSC's PKCS#11 module: log in, find, sign, verify.

Each client runs as a program of its own (see compat_harness.run_python); the test
checks what it found and verifies its signature with the card's certificate."""

from __future__ import annotations

import pytest
from compat_harness import (
    AUTH_PIN,
    AUTH_TOKEN,
    SIGN_PIN,
    SIGN_TOKEN,
    Served,
    need_python,
    pkcs11_module,
    run_python,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

pytestmark = [pytest.mark.pcsc]

KEYS = {"auth": (AUTH_TOKEN, AUTH_PIN, "User Authentication"),
        "sign": (SIGN_TOKEN, SIGN_PIN, "Digital Signature")}

PYKCS11_PROGRAM = """
import json, sys
import PyKCS11

module, token, pin, label, message = sys.argv[1:]
lib = PyKCS11.PyKCS11Lib()
lib.load(module)
slots = [s for s in lib.getSlotList(tokenPresent=True)
         if lib.getTokenInfo(s).label.strip() == token]
session = lib.openSession(slots[0], PyKCS11.CKF_SERIAL_SESSION)
session.login(pin)
certs = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE),
                             (PyKCS11.CKA_LABEL, label + " Certificate")])
der = bytes(session.getAttributeValue(certs[0], [PyKCS11.CKA_VALUE])[0])
keys = session.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
                            (PyKCS11.CKA_LABEL, label + " Key")])
mech = PyKCS11.Mechanism(PyKCS11.CKM_SHA256_RSA_PKCS, None)
signature = bytes(session.sign(keys[0], message.encode(), mech))
session.logout()
session.closeSession()
print(json.dumps({"slots": len(slots), "certs": len(certs), "keys": len(keys),
                  "cert": der.hex(), "signature": signature.hex()}))
"""

PYTHON_PKCS11_PROGRAM = """
import json, sys
import pkcs11
from pkcs11 import Attribute, Mechanism, ObjectClass

module, token_label, pin, label, message = sys.argv[1:]
tokens = list(pkcs11.lib(module).get_tokens(token_label=token_label))
with tokens[0].open(user_pin=pin) as session:
    certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                      Attribute.LABEL: label + " Certificate"}))
    der = bytes(certs[0][Attribute.VALUE])
    keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                     Attribute.LABEL: label + " Key"}))
    signature = bytes(keys[0].sign(message.encode(), mechanism=Mechanism.SHA256_RSA_PKCS))
print(json.dumps({"slots": len(tokens), "certs": len(certs), "keys": len(keys),
                  "cert": der.hex(), "signature": signature.hex()}))
"""


def check(served: Served, key: str, message: str, found: dict[str, object]) -> None:
    assert (found["slots"], found["certs"], found["keys"]) == (1, 1, 1)
    der = bytes.fromhex(str(found["cert"]))
    assert der == served.cert_der(key)
    public = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(bytes.fromhex(str(found["signature"])), message.encode(), padding.PKCS1v15(),
                  hashes.SHA256())


@pytest.mark.parametrize("key", ["auth", "sign"])
@pytest.mark.compat("pykcs11", "log in, find certificate and key, SHA256-RSA-PKCS sign, "
                    "verify with the certificate: {key} key")
def test_pykcs11(served: Served, key: str) -> None:
    need_python("PyKCS11", "PyKCS11")
    token, pin, label = KEYS[key]
    message = f"PyKCS11, {key} key"
    found = run_python(PYKCS11_PROGRAM, pkcs11_module(), token, pin, label, message)
    check(served, key, message, found)


@pytest.mark.parametrize("key", ["auth", "sign"])
@pytest.mark.compat("python-pkcs11", "log in, find certificate and key, SHA256-RSA-PKCS sign, "
                    "verify with the certificate: {key} key")
def test_python_pkcs11(served: Served, key: str) -> None:
    need_python("pkcs11", "python-pkcs11")
    token, pin, label = KEYS[key]
    message = f"python-pkcs11, {key} key"
    found = run_python(PYTHON_PKCS11_PROGRAM, pkcs11_module(), token, pin, label, message)
    check(served, key, message, found)
