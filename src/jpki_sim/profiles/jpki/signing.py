"""RSA signing as the card's COMPUTE DIGITAL SIGNATURE does it.

The card pads what it is given with PKCS#1 v1.5 type 1 (scheme 00) or signs
with PSS, optionally hashing first (schemes 01-05). When the input is a
DigestInfo of a known hash, OpenSSL's own PKCS#1 v1.5 signer produces the
identical bytes and is used (the fast path OpenSC and every client takes);
other inputs go through the raw RSA private operation.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

#: DER prefixes of DigestInfo for each hash (RFC 8017 §9.2 note 1)
DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def digest_info(hash_name: str, digest: bytes) -> bytes:
    """The DigestInfo DER for ``digest`` (hash_name: sha1, sha224, sha256, sha384, sha512)."""
    for prefix, algo in DIGEST_INFO_PREFIXES.items():
        if algo.name == hash_name:
            if len(digest) != algo.digest_size:
                raise ValueError(f"{hash_name} digest must be {algo.digest_size} bytes")
            return prefix + digest
    raise ValueError(f"unknown hash {hash_name!r}")


def _split_digest_info(data: bytes) -> tuple[hashes.HashAlgorithm, bytes] | None:
    for prefix, algo in DIGEST_INFO_PREFIXES.items():
        if data.startswith(prefix) and len(data) == len(prefix) + algo.digest_size:
            return algo, data[len(prefix) :]
    return None


def pkcs1_v15_sign_raw(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 type 1 padding over ``data`` as given, then RSASP1."""
    split = _split_digest_info(data)
    if split is not None:
        algo, digest = split
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algo))
    k = (key.key_size + 7) // 8
    if len(data) > k - 11:
        raise ValueError("data too long for PKCS#1 v1.5 padding")
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data
    return _rsasp1(key, em)


def _rsasp1(key: rsa.RSAPrivateKey, em: bytes) -> bytes:
    """The RSA private operation with CRT (inputs that OpenSSL's signer cannot take)."""
    nums = key.private_numbers()
    n = nums.public_numbers.n
    m = int.from_bytes(em, "big")
    if m >= n:
        raise ValueError("message representative out of range")
    s1 = pow(m, nums.dmp1, nums.p)
    s2 = pow(m, nums.dmq1, nums.q)
    h = (nums.iqmp * (s1 - s2)) % nums.p
    s = s2 + h * nums.q
    return s.to_bytes((key.key_size + 7) // 8, "big")


def pss_sign_sha256(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, over a given SHA-256."""
    return key.sign(
        digest,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        utils.Prehashed(hashes.SHA256()),
    )


def sign_scheme(key: rsa.RSAPrivateKey, scheme: int, data: bytes) -> bytes:
    """Sign ``data`` with the card's scheme ``scheme`` (P1 of 80 2A). Lengths checked by caller."""
    if scheme == 0x00:
        return pkcs1_v15_sign_raw(key, data)
    if scheme == 0x01:
        return pkcs1_v15_sign_raw(key, hashlib.sha256(data).digest())
    if scheme == 0x02:
        return key.sign(data, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    if scheme == 0x03:
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if scheme == 0x04:
        return pss_sign_sha256(key, data)
    if scheme == 0x05:
        return pss_sign_sha256(key, hashlib.sha256(data).digest())
    raise ValueError(f"unknown signing scheme {scheme:#04x}")
