"""A corpus of hand-broken card files (issue 11, item 9): each refused at load, cleanly.

Every variant is refused when the file is opened, with one line naming the
field, by the store and by the commands that open card files (status, apdu,
shell, serve); nothing fails later (a traceback, a 6F00 when signing), and the
file is never changed. No message quotes a PIN or a key.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.cli import main
from jpki_sim.errors import CardFileError
from jpki_sim.profiles.jpki.state import CardState, dumps, open_store

Doc = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return mutate


def _drop(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _encrypted_key(doc: Doc) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(doc["certificates"]["auth"]["key"].encode(), None)
    doc["certificates"]["auth"]["key"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()


def _truncated_key(doc: Doc) -> None:
    pem = doc["certificates"]["auth"]["key"]
    doc["certificates"]["auth"]["key"] = pem[: len(pem) // 2] + "\n-----END PRIVATE KEY-----\n"


def _other_key(doc: Doc) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    doc["certificates"]["sign"]["key"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _damaged_key(doc: Doc) -> None:
    """A PEM that parses, with a private exponent that does not fit (d + 2)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(doc["certificates"]["auth"]["key"].encode(), None)
    n = key.private_numbers()  # type: ignore[union-attr]
    bad = rsa.RSAPrivateNumbers(n.p, n.q, n.d + 2, n.dmp1, n.dmq1, n.iqmp, n.public_numbers)
    doc["certificates"]["auth"]["key"] = bad.private_key(
        unsafe_skip_rsa_key_validation=True).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _truncated_cert(doc: Doc) -> None:
    der = base64.b64decode(doc["certificates"]["auth"]["cert"])
    doc["certificates"]["auth"]["cert"] = base64.b64encode(der[:-40]).decode()


def _history(entry: dict[str, Any]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        good = {"which": "sign", "serial": "1f", "revoked_at": "2025-01-01T00:00:00+00:00",
                "reason": "superseded", "expires": "2030-03-31"}
        doc["history"] = [{**good, **entry}]

    return mutate


#: (id, mutation, words the message must hold)
VARIANTS: list[tuple[str, Callable[[Doc], None], str]] = [
    ("auth-cert-a-list", _set("certificates.auth", [1]), "certificates.auth"),
    ("auth-cert-a-string", _set("certificates.auth", "x"), "certificates.auth"),
    ("tries-5000-digits", _set("pins.auth.tries_left", 10**4000), "pins.auth.tries_left"),
    ("tries-negative", _set("pins.auth.tries_left", -1), "pins.auth.tries_left"),
    ("tries-over-max", _set("pins.auth.tries_left", 4), "pins.auth.tries_left"),
    ("tries-float", _set("pins.auth.tries_left", 3.0), "pins.auth.tries_left"),
    ("tries-bool", _set("pins.auth.tries_left", True), "pins.auth.tries_left"),
    ("max-tries-zero", _set("pins.sign.max_tries", 0), "pins.sign.max_tries"),
    ("max-tries-16", _set("pins.sign.max_tries", 16), "pins.sign.max_tries"),
    ("pin-not-digits", _set("pins.auth.value", "12a4"), "pins.auth.value"),
    ("pin-five-digits", _set("pins.helper.value", "12345"), "pins.helper.value"),
    ("sign-pin-lowercase", _set("pins.sign.value", "abc123"), "pins.sign.value"),
    ("pin-a-number", _set("pins.auth.value", 1234), "pins.auth.value"),
    ("pin-missing", _drop("pins.helper"), "helper"),
    ("pin-a-list", _set("pins.auth", [3]), "pins.auth"),
    ("key-encrypted", _encrypted_key, "certificates.auth.key: encrypted"),
    ("key-truncated", _truncated_key, "certificates.auth.key"),
    ("key-not-pem", _set("certificates.auth.key", "hello"), "certificates.auth.key"),
    ("key-of-another-card", _other_key, "certificates.sign.key: does not belong"),
    ("key-damaged", _damaged_key, "certificates.auth.key: a damaged RSA key"),
    ("cert-not-base64", _set("certificates.auth.cert", "%%%"), "certificates.auth.cert"),
    ("cert-not-der", _set("certificates.auth.cert", base64.b64encode(b"x" * 50).decode()),
     "certificates.auth.cert"),
    ("cert-truncated", _truncated_cert, "certificates.auth.cert"),
    ("cert-too-big", _set("certificates.auth.cert",
                          base64.b64encode(b"\x30" * 3000).decode()), "certificates.auth.cert"),
    ("serial-not-hex", _set("certificates.auth.serial", "xyz"), "certificates.auth.serial"),
    ("serial-of-another", _set("certificates.auth.serial", "1"), "certificates.auth.serial"),
    ("not-before-after-expiry", _set("certificates.auth.not_before", "2099-01-01"),
     "certificates.auth.expires"),
    ("ca-cert-not-der", _set("ca_certificates.auth", base64.b64encode(b"x").decode()),
     "ca_certificates.auth"),
    ("name-empty", _set("identity.name", ""), "identity.name"),
    ("name-control", _set("identity.name", "番号\n花子"), "identity.name"),
    ("name-too-long", _set("identity.name", "あ" * 101), "identity.name"),
    ("name-a-number", _set("identity.name", 7), "identity.name"),
    ("address-too-long", _set("identity.address", "あ" * 201), "identity.address"),
    ("born-1800", _set("identity.birthdate", "1800-01-01"), "identity.birthdate"),
    ("born-not-a-day", _set("identity.birthdate", "2020-13-01"), "identity.birthdate"),
    ("born-compact", _set("identity.birthdate", "19930331"), "identity.birthdate"),
    ("born-after-issue", _set("identity.birthdate", "2099-01-01"), "card.issued"),
    ("sex-3", _set("identity.sex", "3"), "identity.sex"),
    ("my-number-check-digit", _set("identity.my_number", "012345678901"), "identity.my_number"),
    ("my-number-short", _set("identity.my_number", "1234"), "identity.my_number"),
    ("stay-until-garbage", _set("identity.stay_until", "soon"), "identity.stay_until"),
    ("expires-before-issue", _set("card.expires", "1999-01-01"), "card.expires"),
    ("application-id-short", _set("card.application_id", "123"), "card.application_id"),
    ("security-code-letters", _set("card.security_code", "12a4"), "card.security_code"),
    ("ca-dir-a-number", _set("ca_dir", 5), "ca_dir"),
    ("history-not-a-list", _set("history", {"a": 1}), "history"),
    ("history-serial-not-hex", _history({"serial": "zz"}), "history[0].serial"),
    ("history-reason-unknown", _history({"reason": "bogus"}), "history[0].reason"),
    ("history-time-garbage", _history({"revoked_at": "yesterday"}), "history[0].revoked_at"),
    ("history-entry-a-string", _set("history", ["x"]), "history[0]"),
    ("identity-missing", _drop("identity"), "identity"),
    ("version-2", _set("version", 2), "version"),
    ("version-huge", _set("version", 10**100), "version"),
    ("profile-a-number", _set("profile", 12345), "profile"),
    ("format-missing", _drop("format"), "not a jpki-sim card file"),
]


@pytest.fixture(scope="module")
def good_doc(jpki_state: CardState) -> Doc:
    doc: Doc = json.loads(dumps(jpki_state))
    return doc


def write_variant(tmp_path: Path, good_doc: Doc, mutate: Callable[[Doc], None]) -> Path:
    doc = copy.deepcopy(good_doc)
    mutate(doc)
    path = tmp_path / "card.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    return path


def no_secret(text: str, doc: Doc) -> None:
    for pin in doc["pins"].values():
        value = pin.get("value") if isinstance(pin, dict) else None
        if isinstance(value, str) and len(value) >= 4:
            assert value not in text
    assert "PRIVATE KEY" not in text and "MII" not in text


@pytest.mark.parametrize(("mutate", "words"), [(m, w) for _i, m, w in VARIANTS],
                         ids=[i for i, _m, _w in VARIANTS])
def test_a_hand_broken_card_file_is_refused_at_load(
    tmp_path: Path, good_doc: Doc, mutate: Callable[[Doc], None], words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_variant(tmp_path, good_doc, mutate)
    before = path.read_bytes()
    with pytest.raises(CardFileError) as caught:
        open_store(path)
    message = str(caught.value)
    assert words in message, message
    assert "\n" not in message and len(message) < 400
    broken = json.loads(before)
    no_secret(message, broken)
    # and through every command that opens a card file
    for argv in (["card", "status", str(path)],
                 ["apdu", "--card", str(path), "00A4040C0AD392F000260100000001"],
                 ["card", "reset-pin", str(path), "--pin", "auth", "--new-pin", "1234"],
                 ["serve", str(path), "--no-start-pcscd"]):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jpki-sim: error: "), (argv, err)
        assert words in lines[0] and "Traceback" not in err
        no_secret(err + out, broken)
    assert path.read_bytes() == before  # nothing was changed, nothing was half written
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_counter_of_5000_digits_is_refused(tmp_path: Path, good_doc: Doc,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """More digits than Python turns into an int by default: refused, not a traceback."""
    text = json.dumps(good_doc, ensure_ascii=False, indent=1)
    assert '"tries_left": 3' in text
    path = tmp_path / "card.json"
    path.write_text(text.replace('"tries_left": 3', '"tries_left": ' + "9" * 5000, 1))
    with pytest.raises(CardFileError, match="far too long"):
        open_store(path)
    assert main(["card", "status", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_the_corpus_control_the_good_file_loads(tmp_path: Path, good_doc: Doc) -> None:
    path = write_variant(tmp_path, good_doc, lambda doc: None)
    assert open_store(path).state.pins["auth"].tries_left == 3


@pytest.mark.parametrize("raw", [
    b"", b"\xff\xfe{", b"[1, 2]", b"{", b'{"format": "jpki-sim-card", "version": 1}',
    b"null", b'"card"', b"1e999999",
], ids=["empty", "not-utf8", "an-array", "truncated", "envelope-only", "null", "a-string",
        "huge-number"])
def test_files_that_are_no_json_card_are_refused(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(raw)
    with pytest.raises(CardFileError):
        open_store(path)
    assert path.read_bytes() == raw


def test_the_history_reasons_are_the_cas() -> None:
    from jpki_sim.issuer.ca import REASONS
    from jpki_sim.profiles.jpki.state import HISTORY_REASONS

    assert set(HISTORY_REASONS) == set(REASONS)
