"""A thorough reader of the whole chip, written for the tests from the public sources alone.

It reads what soltia48/myna-card's ``examples/read_card.rs`` reads (the MF level
and its CV chain, the 共通AP card info, the helper AP, the surface AP, the JPKI
AP) with the credentials it is given, checks every signature against CV roots
a tester exports (``jpki-sim ca export-cv``), checks both digests of the
integrity record, and keeps the images. It shares no code with the emulator:
its BER reader, its CV certificate parser and its checks are its own, taken
from the layouts the sources describe (MC ``src/data.rs``, ``src/ap/text.rs``,
``src/ap/surface.rs``, ``src/mf.rs``, ``src/card.rs``; protocol notes §5-§6).
Only ``cryptography`` (RSA, X.509) and Pillow (the images) are used.

It talks through any ``transmit(apdu) -> response`` (pyscard through pcscd, or
an in-process card's ``process``). Every step either succeeds or raises
:class:`ReadError` naming what failed; ``checks`` lists what was verified.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

Transmit = Callable[[bytes], bytes]

JPKI = bytes.fromhex("D392F000260100000001")
HELPER = bytes.fromhex("D3921000310001010408")
SURFACE = bytes.fromhex("D3921000310001010402")
COMMON = bytes.fromhex("D3921000310001010100")
ISSUER_SECURITY_DOMAIN = bytes.fromhex("A0000001510000")
#: the DER of a SHA-256 AlgorithmIdentifier, as in a DigestInfo
SHA256_ALGORITHM = bytes.fromhex("300D06096086480165030402010500")


class ReadError(Exception):
    """A command the card refused, or data that does not check out."""


# ---------------------------------------------------------------- BER, as the card writes it


@dataclass
class Tlv:
    tag: int
    value: bytes
    raw: bytes  # header and value, as written


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value length, header size) of the object at ``pos``."""
    start = pos
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # long-form tag: more bytes while bit 8 is set
        while True:
            tag = tag << 8 | data[pos]
            pos += 1
            if not data[pos - 1] & 0x80:
                break
    first = data[pos]
    pos += 1
    if first < 0x80:
        return tag, first, pos - start
    n = first & 0x7F  # the card writes 82 hh ll even where one byte would do
    return tag, int.from_bytes(data[pos:pos + n], "big"), pos + n - start


def _is_filler(data: bytes, pos: int) -> bool:
    return data[pos] == 0x00 or (data[pos] == 0xFF and (pos + 1 == len(data)
                                                         or data[pos + 1] == 0xFF))


def ber_objects(data: bytes) -> list[Tlv]:
    """The objects in ``data`` up to FF (or 00) filler."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(data) and not _is_filler(data, pos):
        tag, length, size = _header(data, pos)
        if pos + size + length > len(data):
            raise ReadError(f"an object at {pos} runs past the data")
        out.append(Tlv(tag, data[pos + size:pos + size + length], data[pos:pos + size + length]))
        pos += size + length
    return out


def only(data: bytes, tag: int) -> Tlv:
    objects = ber_objects(data)
    if not objects or objects[0].tag != tag:
        raise ReadError(f"expected a {tag:X} object, got "
                        f"{objects[0].tag if objects else 'nothing':X}")
    return objects[0]


def field_of(objects: list[Tlv], tag: int) -> Tlv:
    for obj in objects:
        if obj.tag == tag:
            return obj
    raise ReadError(f"no {tag:X} object")


def rsa_from(value: bytes) -> rsa.RSAPublicKey:
    """An RSA key as the records carry it: ``90`` exponent, ``91`` modulus."""
    objects = ber_objects(value)
    e = int.from_bytes(field_of(objects, 0x90).value, "big")
    n = int.from_bytes(field_of(objects, 0x91).value, "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def key_id_text(raw: bytes) -> str:
    return f"{raw[:7].decode()}/{raw[9:12].decode()}"


# ---------------------------------------------------------------- CV certificates


@dataclass
class CvCert:
    issuer: bytes
    subject: bytes
    key: rsa.RSAPublicKey
    body: bytes
    signature: bytes


def cv_cert(data: bytes) -> CvCert:
    """A CV certificate with its 7F21 template (an EF 0004) or without (GET DATA)."""
    contents = only(data, 0x7F21).value if data[:2] == b"\x7f\x21" else data
    objects = ber_objects(contents)
    body = field_of(objects, 0x5F4E).value
    if len(body) != 297:
        raise ReadError(f"a CV body is 297 bytes, not {len(body)}")
    return CvCert(body[:16], body[16:32], rsa_from(body[32:]), body,
                  field_of(objects, 0x5F37).value)


def verify_sha256(key: rsa.RSAPublicKey, signature: bytes, data: bytes, what: str) -> None:
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ReadError(f"{what}: the signature does not verify") from None


def load_roots(data: bytes) -> dict[bytes, rsa.RSAPublicKey]:
    """Self-signed CV certificates, concatenated: key id -> key (each checked)."""
    roots = {}
    for obj in ber_objects(data):
        cert = cv_cert(obj.raw)
        if cert.issuer != cert.subject:
            raise ReadError("a root that is not self-signed")
        verify_sha256(cert.key, cert.signature, cert.body, "a CV root")
        roots[cert.subject] = cert.key
    return roots


# ---------------------------------------------------------------- the reader


@dataclass
class Credentials:
    helper_pin: str | None = None
    code_a: str | None = None  # 照合番号A: the My Number
    code_b: str | None = None  # 照合番号B: era YYMMDD + expiry year + security code
    birthdate: str | None = None  # era YYMMDD
    surface_with: str = "a"  # which 照合番号 opens the surface AP: "a" or "b"
    helper_with: str = "pin"  # which credential opens the helper AP: "pin", "a" or "b"


@dataclass
class Reading:
    """What the card handed over, and what was checked."""

    checks: list[str] = field(default_factory=list)
    data: dict[str, object] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    efs: dict[str, bytes] = field(default_factory=dict)


class ThoroughReader:
    def __init__(self, transmit: Transmit, roots: dict[bytes, rsa.RSAPublicKey]) -> None:
        self._tx = transmit
        self.roots = roots
        self.reading = Reading()

    # ---- the wire

    def call(self, apdu: bytes, *, expect: tuple[int, ...] = (0x9000,)) -> bytes:
        response = self._tx(apdu)
        sw = int.from_bytes(response[-2:], "big")
        if sw not in expect:
            raise ReadError(f"{apdu[:4].hex().upper()}: {sw:04X}")
        return response[:-2]

    def sw(self, apdu: bytes) -> int:
        return int.from_bytes(self._tx(apdu)[-2:], "big")

    def select_df(self, aid: bytes) -> None:
        self.call(bytes((0x00, 0xA4, 0x04, 0x0C, len(aid))) + aid)

    def select_ef(self, fid: int) -> None:
        self.call(bytes((0x00, 0xA4, 0x02, 0x0C, 0x02)) + fid.to_bytes(2, "big"))

    def read_chunk(self, offset: int, le: int) -> bytes:
        return self.call(bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, le & 0xFF)))

    def read_all(self, fid: int) -> bytes:
        """As MC's ``read_binary_all``: 256 bytes, then what the TLV header says is left."""
        self.select_ef(fid)
        head = self.read_chunk(0, 256)
        _tag, length, size = _header(head, 0)
        total = size + length
        out = head
        while len(out) < total:
            out += self.read_chunk(len(out), min(256, total - len(out)))
        return out[:total]

    def read_physical(self, fid: int) -> bytes:
        """As MC's ``read_binary_physical``: until a short chunk or 6B00."""
        self.select_ef(fid)
        out = b""
        while True:
            response = self._tx(bytes((0x00, 0xB0, len(out) >> 8, len(out) & 0xFF, 0x00)))
            sw = int.from_bytes(response[-2:], "big")
            if sw == 0x6B00 and out:
                return out
            if sw != 0x9000:
                raise ReadError(f"READ BINARY {len(out)}: {sw:04X}")
            out += response[:-2]
            if len(response) - 2 < 256:
                return out

    def get_data(self, tag: int) -> bytes:
        apdu = bytes((0x00, 0xCA, tag >> 8, tag & 0xFF, 0x00))
        response = self._tx(apdu)
        if response[-2:] == b"\x67\x00":
            response = self._tx(apdu[:4] + b"\x00\x00\x00")
        if response[-2:] != b"\x90\x00":
            raise ReadError(f"GET DATA {tag:04X}: {response[-2:].hex().upper()}")
        return response[:-2]

    def verify(self, fid: int, value: str) -> None:
        self.select_ef(fid)
        data = value.encode()
        self.call(bytes((0x00, 0x20, 0x00, 0x80, len(data))) + data)

    def retries(self, fid: int) -> int:
        self.select_ef(fid)
        sw = self.sw(bytes((0x00, 0x20, 0x00, 0x80)))
        if sw & 0xFFF0 != 0x63C0:
            raise ReadError(f"retry query of {fid:04X}: {sw:04X}")
        return sw & 0x0F

    def challenge_signature(self, card_key: rsa.RSAPublicKey, what: str) -> None:
        """GET CHALLENGE 16, then ``80 2A 00 00`` over its SHA-256 DigestInfo, checked."""
        challenge = self.call(bytes.fromhex("0084000010"))
        if len(challenge) != 16:
            raise ReadError(f"a 16-byte challenge came back as {len(challenge)} bytes")
        digest = hashlib.sha256(challenge).digest()
        info = b"\x30\x31" + SHA256_ALGORITHM + b"\x04\x20" + digest
        signature = self.call(bytes((0x80, 0x2A, 0x00, 0x00, len(info))) + info + b"\x00")
        verify_sha256(card_key, signature, challenge, f"{what} challenge")
        self.reading.checks.append(f"{what}: challenge signed by the card's key")

    # ---- trust

    def application_key(self, fid: int, root_id: bytes, what: str) -> rsa.RSAPublicKey:
        """EF 0004, checked against the root its issuer names; returns the key it certifies."""
        raw = self.read_all(fid)
        self.reading.efs[f"{what}-0004"] = raw
        cert = cv_cert(raw)
        if cert.issuer != root_id:
            raise ReadError(f"{what} EF 0004 names issuer {key_id_text(cert.issuer)}")
        root = self.roots.get(cert.issuer)
        if root is None:
            raise ReadError(f"{what} EF 0004: unknown authority {key_id_text(cert.issuer)}")
        verify_sha256(root, cert.signature, cert.body, f"{what} EF 0004")
        self.reading.checks.append(f"{what}: EF 0004 verifies against root "
                                   f"{key_id_text(cert.issuer)}")
        return cert.key

    def signed_record(self, raw: bytes, outer: int, signature_tag: int,
                      key: rsa.RSAPublicKey, what: str) -> list[Tlv]:  # fmt: skip
        objects = ber_objects(only(raw, outer).value)
        at = [o.tag for o in objects].index(signature_tag)
        verify_sha256(key, objects[at].value, b"".join(o.raw for o in objects[:at]), what)
        self.reading.checks.append(f"{what}: signature verified")
        return objects

    # ---- the applications

    def read_mf(self) -> None:
        """The MF level, reached again by selecting the Issuer Security Domain (MC mf.rs)."""
        self.call(bytes((0x00, 0xA4, 0x04, 0x0C, len(ISSUER_SECURITY_DOMAIN)))
                  + ISSUER_SECURITY_DOMAIN)
        serial = self.get_data(0x0045).decode("ascii")
        upper, lower = cv_cert(self.get_data(0x00F8)), cv_cert(self.get_data(0x7F21))
        root = self.roots.get(upper.issuer)
        if root is None:
            raise ReadError(f"MF chain: unknown authority {key_id_text(upper.issuer)}")
        verify_sha256(root, upper.signature, upper.body, "MF F8")
        if lower.issuer != upper.subject:
            raise ReadError("MF chain: 7F21 is not issued by the key F8 certifies")
        verify_sha256(upper.key, lower.signature, lower.body, "MF 7F21")
        intermediate = self.get_data(0x00F7)
        if intermediate != lower.issuer:
            raise ReadError("GET DATA F7 does not name 7F21's issuer")
        self.reading.checks.append(f"MF: chain {key_id_text(upper.issuer)} -> "
                                   f"{key_id_text(upper.subject)} -> {key_id_text(lower.subject)}")
        self.reading.data["card_number"] = serial

    def read_common(self) -> None:
        self.select_df(COMMON)
        atr = self.get_data(0x5F51)
        tck = 0
        for b in atr[:-1]:
            tck ^= b
        if tck != atr[-1]:
            raise ReadError("the contact ATR's TCK is wrong")
        self.select_ef(0x0001)
        record = self.call(bytes.fromhex("00B2010400"))
        if record[:2] != b"\x01\x1c":
            raise ReadError("the card info record does not start 01 1C")
        digits = record[2:].decode("ascii")
        self.reading.data.update(serial=digits[:15], municipality=digits[15:20],
                                 expires=digits[20:])
        self.reading.checks.append("共通AP: card info read")

    def read_helper(self, cred: Credentials) -> None:
        self.select_df(HELPER)
        key = self.application_key(0x0004, b"9000033\x08\x05001\x00\x00\x00\x00", "helper")
        basic = only(self.read_all(0x0005), 0xFF40)
        self.reading.data["helper_key_id"] = key_id_text(
            field_of(ber_objects(basic.value), 0xDF42).value)
        value = {"pin": cred.helper_pin, "a": cred.code_a, "b": cred.code_b}[cred.helper_with]
        if value is None:
            raise ReadError(f"no value for the helper AP's {cred.helper_with}")
        self.verify({"pin": 0x0011, "a": 0x0014, "b": 0x0015}[cred.helper_with], value)
        signed = self.read_all(0x0007)
        self.reading.efs["helper-0007"] = signed
        objects = self.signed_record(signed, 0xFF50, 0xDF52, key, "helper EF 0007")
        card_key = rsa_from(field_of(objects, 0xDF51).value)
        session = only(self.read_all(0x0006), 0xA1)
        rsa_from(session.value)
        integrity = self.read_all(0x0003)
        self.reading.efs["helper-0003"] = integrity
        digests = self.signed_record(integrity, 0xFF30, 0xDF33, key, "helper EF 0003")
        opens_1 = cred.helper_with in ("pin", "a")
        opens_2 = cred.helper_with in ("pin", "b")
        sw1 = self._refused_or_read(0x0001, opens_1, "helper")
        sw2 = self._refused_or_read(0x0002, opens_2, "helper")
        if sw1 is not None:
            physical = self.read_physical(0x0001)
            self.reading.efs["helper-0001"] = physical
            number = only(physical, 0xFF10).value.decode("ascii")
            self.reading.data["my_number"] = number
            if hashlib.sha256(physical).digest() != field_of(digests, 0xDF31).value:
                raise ReadError("EF 0003's DF31 is not the digest of EF 0001 as stored")
            self.reading.checks.append("helper: EF 0003 DF31 matches EF 0001")
        if sw2 is not None:
            facts_ef = self.read_all(0x0002)
            self.reading.efs["helper-0002"] = facts_ef
            facts = ber_objects(only(facts_ef, 0xFF20).value)
            if facts[0].tag != 0xDF21:
                raise ReadError("EF 0002 does not start with its offset table")
            table = facts[0].value
            header = len(facts_ef) - len(only(facts_ef, 0xFF20).value)
            pos = header + len(facts[0].raw)
            for i, obj in enumerate(facts[1:]):
                if int.from_bytes(table[2 * i:2 * i + 2], "big") != pos:
                    raise ReadError(f"EF 0002's offset {i} is wrong")
                pos += len(obj.raw)
            source = b"".join(o.raw for o in facts[1:])
            if hashlib.sha256(source).digest() != field_of(digests, 0xDF32).value:
                raise ReadError("EF 0003's DF32 is not the digest of EF 0002 after its offsets")
            self.reading.checks.append("helper: EF 0003 DF32 matches EF 0002")
            self.reading.data.update(
                name=field_of(facts, 0xDF22).value.decode(),
                address=field_of(facts, 0xDF23).value.decode(),
                birthdate=field_of(facts, 0xDF24).value.decode(),
                sex=field_of(facts, 0xDF25).value.decode())
        self.challenge_signature(card_key, "helper")

    def _refused_or_read(self, fid: int, opens: bool, what: str) -> int | None:
        """Check that EF ``fid`` opens (its first byte is read) or answers 6982."""
        self.select_ef(fid)
        sw = self.sw(bytes.fromhex("00B0000001"))
        if opens and sw == 0x9000:
            return sw
        if not opens and sw == 0x6982:
            self.reading.checks.append(f"{what}: EF {fid:04X} refused (6982)")
            return None
        raise ReadError(f"{what} EF {fid:04X}: {sw:04X} (expected "
                        f"{'9000' if opens else '6982'})")

    def read_surface(self, cred: Credentials) -> None:
        self.select_df(SURFACE)
        key = self.application_key(0x0004, b"9000023\x08\x05001\x00\x00\x00\x00", "surface")
        basic = ber_objects(only(self.read_all(0x0003), 0xFF30).value)
        town = field_of(basic, 0xDF34).value.decode("ascii")
        if "municipality" in self.reading.data and town != self.reading.data["municipality"]:
            raise ReadError("surface EF 0003 disagrees with the 共通AP on the municipality")
        self.reading.checks.append("surface: EF 0003 municipality agrees with the 共通AP")
        keys: list[rsa.RSAPublicKey] = []
        if cred.birthdate is not None:
            self._refused_or_read(0x0001, False, "surface (no credential)")
            self.verify(0x0011, cred.birthdate)
            age = self.read_all(0x0001)
            self.reading.efs["surface-0001"] = age
            objects = self.signed_record(age, 0xFF10, 0xDF13, key, "surface EF 0001")
            self.reading.data["age_birthdate"] = field_of(objects, 0xDF11).value.decode()
            keys.append(rsa_from(field_of(objects, 0xDF12).value))
            self._refused_or_read(0x0002, False, "surface (birth date)")
        value = cred.code_a if cred.surface_with == "a" else cred.code_b
        if value is not None:
            self.verify(0x0013 if cred.surface_with == "a" else 0x0012, value)
            face = self.read_all(0x0002)
            self.reading.efs["surface-0002"] = face
            keys.append(self._card_face(face, key))
            if cred.surface_with == "a":
                image = self.read_all(0x0005)
                self.reading.efs["surface-0005"] = image
                objects = self.signed_record(image, 0xFF40, 0xDF43, key, "surface EF 0005")
                self.reading.images["my-number"] = field_of(objects, 0xDF41).value
                keys.append(rsa_from(field_of(objects, 0xDF42).value))
            else:
                self._refused_or_read(0x0005, False, "surface (照合番号B)")
        if not keys:
            raise ReadError("no credential for the surface AP")
        if any(k.public_numbers() != keys[0].public_numbers() for k in keys):
            raise ReadError("the surface records carry different card keys")
        self.challenge_signature(keys[0], "surface")

    def _card_face(self, face: bytes, key: rsa.RSAPublicKey) -> rsa.RSAPublicKey:
        outer = only(face, 0xFF20)
        objects = ber_objects(outer.value)
        table = objects[0].value
        pos = len(face) - len(outer.value) + len(objects[0].raw)
        for i, obj in enumerate(objects[1:]):
            if int.from_bytes(table[2 * i:2 * i + 2], "big") != pos:
                raise ReadError(f"card face: offset {i} is wrong")
            pos += len(obj.raw)
        by_tag = {o.tag: o for o in objects}
        digests = b"".join(hashlib.sha256(b"".join(by_tag[t].raw for t in group)).digest()
                           for group in ((0xDF22, 0xDF23, 0xDF24), (0xDF25, 0xDF26), (0xDF27,)))
        payload = b"\x30\x71" + SHA256_ALGORITHM + b"\x04\x60" + digests
        numbers = key.public_numbers()
        recovered = pow(int.from_bytes(by_tag[0xDF28].value, "big"), numbers.e, numbers.n)
        block = recovered.to_bytes(256, "big")
        expected = b"\x00\x01" + b"\xff" * (256 - 3 - len(payload)) + b"\x00" + payload
        if block != expected:
            raise ReadError("card face: the signature does not verify over its three digests")
        self.reading.checks.append("surface EF 0002: signature verified over its three digests")
        self.reading.data.update(face_birthdate=by_tag[0xDF22].value.decode(),
                                 face_sex=by_tag[0xDF23].value.decode(),
                                 face_expiry=by_tag[0xDF29].value.decode())
        for name, tag in (("name", 0xDF25), ("address", 0xDF26), ("photo", 0xDF27),
                          ("security-code", 0xDF2A)):
            self.reading.images[name] = by_tag[tag].value
        return rsa_from(by_tag[0xDF24].value)

    def read_jpki(self) -> None:
        self.select_df(JPKI)
        self.select_ef(0x0006)
        self.reading.data["token"] = self.read_chunk(0, 32).decode("ascii").rstrip()
        certs = {}
        for name, fid in (("auth", 0x000A), ("auth-ca", 0x000B)):
            self.select_ef(fid)
            head = self.read_chunk(0, 4)
            total = 4 + int.from_bytes(head[2:4], "big")
            der = head
            while len(der) < total:
                der += self.read_chunk(len(der), min(256, total - len(der)))
            certs[name] = x509.load_der_x509_certificate(der)
        ca_key = certs["auth-ca"].public_key()
        assert isinstance(ca_key, rsa.RSAPublicKey)
        cert = certs["auth"]
        try:
            ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)  # type: ignore[arg-type]
        except InvalidSignature:
            raise ReadError("the auth certificate does not verify with EF 000B") from None
        self.reading.checks.append("JPKI: auth certificate verifies with its CA certificate")
        self.reading.data["auth_retries"] = self.retries(0x0018)
        self.reading.data["sign_retries"] = self.retries(0x001B)

    def read_everything(self, cred: Credentials) -> Reading:
        """MF, 共通AP, helper AP, surface AP, JPKI AP: read_card.rs's order."""
        self.read_mf()
        self.read_common()
        self.read_helper(cred)
        self.read_surface(cred)
        self.read_jpki()
        return self.reading


def image_facts(data: bytes) -> tuple[str, str, tuple[int, int]]:
    """(format, mode, size) of an image, opened with Pillow."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return str(image.format), image.mode, image.size
