"""High-level operations on a JPKI card, in the card's own vocabulary.

:class:`JpkiClient` sits on any :class:`jpki_sim.iso7816.transport.Transport` (the
in-process card, a PC/SC reader, a replayed trace) and sends the same APDUs the
real card's readers send (OpenSC's JPKI driver above all; see
``docs/protocol.md``):

* SELECT by AID ``00 A4 04 0C``, SELECT EF ``00 A4 02 0C 02 FID``;
* certificates: a 4-byte READ BINARY for the DER header, then the whole file
  again from offset 0 in 256-byte chunks, the last one with the exact remainder;
* PIN status: SELECT the PIN EF, then an empty VERIFY ``00 20 00 80`` (63Cx);
* signing: SELECT the key EF, then ``80 2A P1 80 Lc data 00``.

The wire and the ISO operations (SELECT, READ BINARY, VERIFY, CHANGE
REFERENCE DATA) are :class:`~jpki_sim.iso7816.client.CardClient`'s; this class
adds what the JPKI card does, and raises :class:`ApduError` / :class:`PinError`
on any status word it did not expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from jpki_sim.iso7816.apdu import CommandApdu, ResponseApdu
from jpki_sim.iso7816.client import (
    CHANGE_REFERENCE_DATA,
    ApduObserver,
    CardClient,
    CardView,
    Exchange,
    PinAddress,
    der_length,
)
from jpki_sim.iso7816.errors import ApduError, PinError
from jpki_sim.iso7816.transport import Transport
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.client_kenmen import KenmenClient

__all__ = [
    "ApduError",
    "ApduObserver",
    "BasicInfo",
    "CardView",
    "CommandApdu",
    "Exchange",
    "JpkiClient",
    "PinError",
    "ResponseApdu",
    "decode_basic_info",
    "decode_my_number",
    "der_length",
]

#: JICSAP CHANGE KEY: how the 住基AP and 共通AP PINs are changed
CHANGE_KEY = (jpki.CLA_PROPRIETARY, jpki.INS_CHANGE_KEY, 0x00)

#: where each PIN is: SELECT its EF, then VERIFY with P2=80 (the current EF)
JPKI_PINS = {
    name: PinAddress(
        aid, fid, jpki.VERIFY_POLICIES[name].max_tries,
        change=CHANGE_KEY if name in jpki.CHANGE_KEY_PINS else CHANGE_REFERENCE_DATA,
    )
    for name, (aid, fid) in jpki.VERIFY_EFS.items()
}


@dataclass(frozen=True, slots=True)
class BasicInfo:
    """The four basic facts (基本4情報) from the helper application's EF 0002."""

    name: str
    address: str
    birthdate: str  # YYYYMMDD as stored on the card
    sex: str  # ISO 5218 code "1" / "2" / "9" (or "0")

    @property
    def birth_date(self) -> date | None:
        try:
            return date(int(self.birthdate[:4]), int(self.birthdate[4:6]), int(self.birthdate[6:8]))
        except ValueError:
            return None


class JpkiClient(KenmenClient, CardClient):
    """The JPKI card through one transport (see :class:`CardClient` for ``mode``)."""

    def __init__(
        self,
        transport: Transport,
        *,
        mode: str = "auto",
        observer: ApduObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            transport, mode=mode, observer=observer, clock=clock,
            applications=jpki.APPLICATIONS, pins=JPKI_PINS,
        )

    def select_jpki(self) -> None:
        self.select_aid(jpki.JPKI_AID)

    def select_helper(self) -> None:
        self.select_aid(jpki.HELPER_AID)

    def read_certificate(self, which: str) -> bytes:
        """The DER bytes of ``"auth"``, ``"sign"``, ``"auth-ca"`` or ``"sign-ca"``.

        Like OpenSC: read the 4-byte header, then the whole certificate from
        offset 0. The sign certificate needs the sign PIN verified (6982).
        """
        try:
            fid = jpki.CERT_EFS[which]
        except KeyError:
            names = ", ".join(jpki.CERT_EFS)
            raise ValueError(f"no certificate {which!r}: one of {names}") from None
        self.ensure_application(jpki.JPKI_AID)
        self.select_ef(fid)
        header = self.read_binary(0, 4)
        total = der_length(header)
        return self.read_ef(total)

    def token_label(self) -> str:
        """The first 32 bytes of EF 0006, trimmed: ``JPKIAPICCTOKEN2`` on a My Number card."""
        self.ensure_application(jpki.JPKI_AID)
        self.select_ef(jpki.EF_TOKEN_INFO)
        return self.read_binary(0, 0x20).decode("ascii", "replace").rstrip(" \x00")

    def certificate_presence(self) -> bytes:
        """EF 0008: ``8F 8F 00`` when both certificates are on the card."""
        self.ensure_application(jpki.JPKI_AID)
        self.select_ef(jpki.EF_CERT_PRESENCE)
        return self.read_binary(0, 3)

    # ------------------------------------------------------------ signing

    def sign(self, which: str, data: bytes, scheme: int = jpki.SIGN_PKCS1) -> bytes:
        """COMPUTE DIGITAL SIGNATURE with the auth or sign key.

        ``scheme`` is P1 (0 = PKCS#1 v1.5 over ``data``, normally a DigestInfo;
        see :mod:`jpki_sim.jpki` for 1-5). The matching PIN must be verified.
        """
        try:
            fid = jpki.KEY_EFS[which]
        except KeyError:
            raise ValueError(f"no key {which!r}: one of {', '.join(jpki.KEY_EFS)}") from None
        self.ensure_application(jpki.JPKI_AID)
        self.select_ef(fid)
        return self._send(
            CommandApdu(jpki.CLA_PROPRIETARY, jpki.INS_COMPUTE_SIGNATURE, scheme,
                        jpki.P2_CURRENT_KEY, data, 256),
            f"COMPUTE DIGITAL SIGNATURE {which}",
        )

    # ------------------------------------------------------------ 共通AP and the MF level

    def card_info(self) -> dict[str, str]:
        """Serial, municipality code and expiry from the 共通AP (EF 0001 record 1).

        As Myna Portal-style clients do: SELECT the 共通AP, then READ RECORD 1 of
        short EF 1 (``00 B2 01 0C 00``), no EF SELECT.
        """
        from jpki_sim.profiles.jpki.chipdata import decode_card_info

        self.ensure_application(jpki.COMMON_AID)
        return decode_card_info(self.read_record(1, sfi=jpki.EF_COMMON_CARD_INFO))

    def common_authenticate(self, challenge: bytes) -> bytes:
        """INTERNAL AUTHENTICATE with 共通AP key 0019 (no PIN): a 256-byte signature."""
        self.ensure_application(jpki.COMMON_AID)
        return self.internal_authenticate(0x80 | jpki.EF_COMMON_AUTH_KEY, challenge)

    def cv_chain(self) -> list[bytes]:
        """The MF level's CV certificates (GET DATA 00F8, then 7F21 when the card has it).

        Only answered while no application is selected: after power-on, reset
        or a SELECT of the card manager.
        """
        from jpki_sim.profiles.jpki.chipdata import CV_TAGS

        chain = []
        for tag in CV_TAGS:
            try:
                chain.append(self.get_data(tag))
            except ApduError as exc:
                if exc.sw in (0x6A88, 0x6A82) and chain:
                    break  # an older card without the lower certificate
                raise
        return chain

    # ------------------------------------------------------------ helper application

    def _read_helper_object(self, fid: int) -> bytes:
        """Read a TLV object of the helper AP whole, learning its length from its header."""
        self.ensure_application(jpki.HELPER_AID)
        self.select_ef(fid)
        head = self.read_binary(0, 8)
        total = _tlv_total_length(head)
        if total <= len(head):
            return head[:total]
        return head + self.read_from(len(head), total - len(head))

    def my_number(self) -> str:
        """The 12-digit My Number (helper EF 0001; needs the helper PIN)."""
        raw = self._read_helper_object(jpki.EF_HELPER_MY_NUMBER)
        return decode_my_number(raw)

    def basic_info(self) -> BasicInfo:
        """Name, address, birth date and sex (helper EF 0002; needs the helper PIN)."""
        raw = self._read_helper_object(jpki.EF_HELPER_BASIC_INFO)
        return decode_basic_info(raw)


# ---------------------------------------------------------------- decoders


def _tlv_header(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(tag, length, header size) of the BER-TLV at ``pos``; tolerant of non-minimal forms."""
    start = pos
    if pos >= len(buf):
        raise ValueError("TLV truncated")
    tag = buf[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        while True:
            if pos >= len(buf):
                raise ValueError("TLV tag truncated")
            b = buf[pos]
            tag = (tag << 8) | b
            pos += 1
            if not b & 0x80:
                break
    if pos >= len(buf):
        raise ValueError("TLV length truncated")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > len(buf):
            raise ValueError("TLV length field unsupported or truncated")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    return tag, length, pos - start


def _tlv_total_length(head: bytes) -> int:
    _tag, length, hsize = _tlv_header(head)
    return hsize + length


def decode_my_number(raw: bytes) -> str:
    """``FF 10 0C`` + 12 ASCII digits (+ filler) -> the My Number."""
    from jpki_sim.profiles.jpki import records

    return records.decode_helper_my_number(raw)


def decode_basic_info(raw: bytes) -> BasicInfo:
    """``FF 20 len { DF21 offsets, DF22 name, DF23 address, DF24 birth, DF25 sex }``."""
    from jpki_sim.profiles.jpki import records

    info = records.decode_helper_basic_info(raw)
    return BasicInfo(info["name"], info["address"], info["birthdate_text"], info["sex"])
