"""What the card file keeps of the 券面 applications (券面事項入力補助AP and 券面事項確認AP).

The issuer (:mod:`jpki_sim.issuer.kenmen`) writes it at issue and again whenever
what it shows changes; the card serves it as stored, so serving never needs the
CV CA, a font or an image codec:

* ``photo``: the holder's photo as the card face carries it (DF27, greyscale
  JPEG 2000), kept apart so the issuer can re-sign the face and ``card face``
  can draw it;
* ``keys``: the card's own private keys (PKCS#8 PEM), generated at issue and on
  no EF: ``helper`` (helper key 0013, whose public half is EF 0007's DF51; it
  signs challenges), ``session`` (the private half of helper EF 0006, for
  session-key delivery), ``surface`` (surface key 001A, whose public half the
  age record, the card face and the My Number image carry) and ``mf`` (the key
  the MF level's 7F21 certificate certifies), with ``mf_key_id`` its 16-byte
  identifier;
* ``opaque``: bytes of unknown meaning the real cards carry, drawn at issue and
  kept: helper EF 0005's DF43 (32 bytes) and surface EF 0003's DF35 (256 bytes);
* ``efs``: the EFs in the card's layout, by application and FID (helper
  0003-0007, surface 0001-0005), the signed ones signed by the issuing
  municipality's record-signing key of the test CV CA.

A card file written before this existed has no ``kenmen``: its helper AP keeps
EF 0001/0002 and the PIN only, and the card has no surface AP (docs/protocol.md).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from jpki_sim.errors import CardFileError

#: the EFs the issuer writes, per application
HELPER_EFS = (0x0003, 0x0004, 0x0005, 0x0006, 0x0007)
SURFACE_EFS = (0x0001, 0x0002, 0x0003, 0x0004, 0x0005)
EF_SETS = {"helper": HELPER_EFS, "surface": SURFACE_EFS}
KEY_NAMES = ("helper", "session", "surface", "mf")
OPAQUE_SIZES = {"helper": 32, "surface": 256}
#: the largest EF the issuer writes (a card face with a 4000-byte photo is ~7 KB)
MAX_EF = 32767
KEY_ID_SIZE = 16


@dataclass
class Kenmen:
    """The 券面 applications' data on one card (see the module's description)."""

    photo: bytes
    keys: dict[str, str]
    mf_key_id: bytes
    opaque: dict[str, bytes]
    efs: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def ef(self, app: str, fid: int) -> bytes:
        return self.efs[app][fid]

    def to_json(self) -> dict[str, Any]:
        return {
            "photo": _b64(self.photo),
            "keys": dict(self.keys),
            "mf_key_id": self.mf_key_id.hex().upper(),
            "opaque": {name: _b64(raw) for name, raw in self.opaque.items()},
            "efs": {app: {f"{fid:04X}": _b64(raw) for fid, raw in sorted(efs.items())}
                    for app, efs in self.efs.items()},
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "kenmen") -> Kenmen:
        if not isinstance(d, dict):
            raise CardFileError(f"{where}: must be an object")
        keys = _obj(d, "keys", where)
        for name in KEY_NAMES:
            pem = keys.get(name)
            if not isinstance(pem, str) or "PRIVATE KEY" not in pem:
                raise CardFileError(f"{where}.keys.{name}: not a PEM private key")
        key_id = d.get("mf_key_id")
        try:
            mf_key_id = bytes.fromhex(key_id) if isinstance(key_id, str) else b""
        except ValueError:
            mf_key_id = b""
        if len(mf_key_id) != KEY_ID_SIZE:
            raise CardFileError(f"{where}.mf_key_id: not a 16-byte key identifier (hex)")
        opaque_doc = _obj(d, "opaque", where)
        opaque = {}
        for name, size in OPAQUE_SIZES.items():
            raw = _unb64(opaque_doc, name, f"{where}.opaque")
            if len(raw) != size:
                raise CardFileError(f"{where}.opaque.{name}: must be {size} bytes")
            opaque[name] = raw
        efs_doc = _obj(d, "efs", where)
        efs: dict[str, dict[int, bytes]] = {}
        for app, fids in EF_SETS.items():
            app_doc = _obj(efs_doc, app, f"{where}.efs")
            efs[app] = {}
            for fid in fids:
                raw = _unb64(app_doc, f"{fid:04X}", f"{where}.efs.{app}")
                if not 0 < len(raw) <= MAX_EF:
                    raise CardFileError(f"{where}.efs.{app}.{fid:04X}: 1 to {MAX_EF} bytes")
                efs[app][fid] = raw
        photo = _unb64(d, "photo", where)
        return cls(photo, {n: keys[n] for n in KEY_NAMES}, mf_key_id, opaque, efs)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise CardFileError(f"{where}.{key}: missing or not an object")
    return v


def _unb64(d: dict[str, Any], key: str, where: str) -> bytes:
    v = d.get(key)
    if not isinstance(v, str):
        raise CardFileError(f"{where}.{key}: missing or not base64")
    try:
        return base64.b64decode(v, validate=True)
    except ValueError:
        raise CardFileError(f"{where}.{key}: not base64") from None
