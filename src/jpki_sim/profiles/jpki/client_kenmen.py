"""The client's part for the 券面 applications: reading their EFs, the 照合番号, a challenge.

A mixin of :class:`jpki_sim.profiles.jpki.client.JpkiClient`, sending what the
sources' readers send (soltia48/myna-card ``src/card.rs``, ``ap/text.rs``,
``ap/surface.rs``):

* an EF holding a TLV object is read whole: a 256-byte READ BINARY, then, if its
  header says there is more, the rest in 256-byte chunks (MC ``read_binary_all``);
* helper EF 0001 is read as stored, filler included, until the card answers a
  short chunk or 6B00 (MC ``read_binary_physical``: what EF 0003's digest covers);
* a 照合番号 or the birth date: SELECT its key's EF, VERIFY ``00 20 00 80``;
* the application's own signature: ``80 2A 00 00 Lc DigestInfo 00`` (P2 00, the
  application's default key), over the SHA-256 of what the caller signs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import ApduError
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.jpki import ids as jpki

if TYPE_CHECKING:
    from jpki_sim.iso7816.client import CardClient

    _Base = CardClient
else:
    _Base = object

#: the longest EF a physical read follows (the card's 15-bit offsets)
MAX_EF = 0x7FFF
CHUNK = 256
#: the 券面 applications by name, and the key P2=00 signs with in each
APPS = {"helper": jpki.HELPER_AID, "surface": jpki.SURFACE_AID}


def tlv_total_length(head: bytes) -> int:
    """Header + value length of the BER-TLV starting ``head`` (non-minimal forms too)."""
    if len(head) < 2:
        raise ValueError("TLV truncated")
    pos = 1
    if head[0] & 0x1F == 0x1F:
        while pos < len(head) and head[pos] & 0x80:
            pos += 1
        pos += 1
    if pos >= len(head):
        raise ValueError("TLV length truncated")
    first = head[pos]
    pos += 1
    if first < 0x80:
        return pos + first
    n = first & 0x7F
    if n == 0 or n > 3 or pos + n > len(head):
        raise ValueError("TLV length field unsupported or truncated")
    return pos + n + int.from_bytes(head[pos:pos + n], "big")


class KenmenClient(_Base):
    """Reads of the helper and surface applications (a mixin of the JPKI client)."""

    def read_object(self, fid: int) -> bytes:
        """EF ``fid`` of the current application, up to the end of its TLV object."""
        self.select_ef(fid)
        head = self.read_binary(0, CHUNK)
        try:
            total = tlv_total_length(head)
        except ValueError:
            return head
        if total <= len(head):
            return head[:total]
        return head + self.read_from(len(head), total - len(head))

    def read_physical(self, fid: int) -> bytes:
        """EF ``fid`` of the current application as stored, filler included."""
        self.select_ef(fid)
        out = bytearray()
        while len(out) <= MAX_EF:
            resp = self.transmit_apdu(CommandApdu(0x00, 0xB0, len(out) >> 8, len(out) & 0xFF,
                                                  b"", CHUNK))
            if resp.sw == SW.WRONG_PARAMETERS and out:  # 6B00: past the end
                break
            if resp.sw != SW.OK:
                raise ApduError(resp.sw, f"READ BINARY {len(out):04X}")
            out += resp.data
            if len(resp.data) < CHUNK:
                break
        return bytes(out)

    def kenmen_read(self, app: str, fid: int) -> bytes:
        """EF ``fid`` of the ``helper`` or ``surface`` application (its TLV object)."""
        self.ensure_application(APPS[app])
        return self.read_object(fid)

    def app_sign(self, app: str, data: bytes) -> bytes:
        """The application's own key signs SHA-256(``data``): ``80 2A 00 00 DigestInfo``."""
        from jpki_sim.profiles.jpki.signing import digest_info

        self.ensure_application(APPS[app])
        payload = digest_info("sha256", hashlib.sha256(data).digest())
        return self._send(CommandApdu(jpki.CLA_PROPRIETARY, jpki.INS_COMPUTE_SIGNATURE, 0x00,
                                      jpki.P2_DEFAULT_KEY, payload, 256),
                          f"COMPUTE DIGITAL SIGNATURE ({app} key)")
