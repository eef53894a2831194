"""High-level operations on a JPKI card, in the card's own vocabulary.

:class:`JpkiClient` sits on any :class:`jpki_sim.transport.Transport` (the
in-process card, a PC/SC reader, a replayed trace) and sends the same APDUs the
real card's readers send (OpenSC's JPKI driver above all; see
``docs/protocol.md``):

* SELECT by AID ``00 A4 04 0C``, SELECT EF ``00 A4 02 0C 02 FID``;
* certificates: a 4-byte READ BINARY for the DER header, then the whole file
  again from offset 0 in 256-byte chunks, the last one with the exact remainder;
* PIN status: SELECT the PIN EF, then an empty VERIFY ``00 20 00 80`` (63Cx);
* signing: SELECT the key EF, then ``80 2A P1 80 Lc data 00``.

Two layers: :meth:`JpkiClient.transmit_apdu` exchanges one command (following
61xx / 6Cxx in ``auto`` mode and reporting every exchange it made), and the
operations above it raise :class:`ApduError` / :class:`PinError` on any status
word they did not expect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from jpki_sim.errors import ApduError, PinError
from jpki_sim.iso7816.apdu import CommandApdu, ResponseApdu
from jpki_sim.iso7816.sw import SW
from jpki_sim.iso7816.transport import Transport
from jpki_sim.profiles.jpki import ids as jpki

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_GET_RESPONSE = 0xC0
P1_SELECT_BY_AID = 0x04
P1_SELECT_EF = 0x02
P2_NO_FCI = 0x0C
P2_CURRENT_EF = 0x80  # VERIFY / CHANGE REFERENCE DATA: the key of the current EF
P1_CHANGE_NEW_ONLY = 0x01  # CHANGE REFERENCE DATA with the new value only

#: the chunk OpenSC reads certificates in (its default max_recv_size)
READ_CHUNK = 256

#: names of applications, for the prompt and the trace
APPLICATION_NAMES = {aid: name for name, aid in jpki.APPLICATIONS.items()}


class ApduObserver(Protocol):
    """Sees every exchange on the wire (a trace writer, a test recorder)."""

    def xfer(self, command: bytes, response: bytes, started: float, duration: float) -> None:
        """One command and its response; ``started`` is ``time.monotonic()``."""
        ...

    def reset(self, atr: bytes, kind: str = "warm") -> None: ...


@dataclass(frozen=True, slots=True)
class Exchange:
    """One command/response pair as it went over the wire."""

    command: bytes
    response: bytes
    started: float
    duration: float

    @property
    def sw(self) -> int:
        r = self.response
        return (r[-2] << 8 | r[-1]) if len(r) >= 2 else 0


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


@dataclass
class CardView:
    """What the client believes about the card's volatile state.

    Derived from the commands it sent and their answers: the card never reports
    its security state (an empty VERIFY always answers 63Cx), so this is the
    same bookkeeping OpenSC's driver does. Cleared by a reset.
    """

    application: bytes | None = None
    ef: int | None = None
    verified: set[str] = field(default_factory=set)

    @property
    def application_name(self) -> str | None:
        if self.application is None:
            return None
        return APPLICATION_NAMES.get(self.application, self.application.hex().upper())


def _pin_name(application: bytes | None, ef: int | None) -> str | None:
    for name, (aid, fid) in jpki.PIN_EFS.items():
        if aid == application and fid == ef:
            return name
    return None


def der_length(header: bytes) -> int:
    """Total length of the DER object whose first bytes are ``header``.

    Raises ValueError when the header is not a definite-length DER SEQUENCE
    header (an erased EF reads as FF...).
    """
    if len(header) < 2 or header[0] != 0x30:
        raise ValueError(f"not a DER certificate header: {header.hex().upper() or 'empty'}")
    first = header[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 3 or len(header) < 2 + n:
        raise ValueError(f"unsupported DER length field in {header.hex().upper()}")
    return 2 + n + int.from_bytes(header[2 : 2 + n], "big")


class JpkiClient:
    """The JPKI card through one transport.

    ``mode`` is ``"transparent"`` (send exactly what was asked, report 61xx /
    6Cxx as they come) or ``"auto"`` (follow 61xx with GET RESPONSE and 6Cxx by
    resending with the Le the card named).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        mode: str = "auto",
        observer: ApduObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode not in ("auto", "transparent"):
            raise ValueError(f"mode must be 'auto' or 'transparent', not {mode!r}")
        self.transport = transport
        self.mode = mode
        self.observers: list[ApduObserver] = [observer] if observer is not None else []
        self.view = CardView()
        #: every exchange made by the last transmit (more than one in auto mode)
        self.last_exchanges: list[Exchange] = []
        self._clock = clock

    # ------------------------------------------------------------ the wire

    def add_observer(self, observer: ApduObserver) -> None:
        self.observers.append(observer)

    def remove_observer(self, observer: ApduObserver) -> None:
        if observer in self.observers:
            self.observers.remove(observer)

    def _exchange(self, command: bytes) -> bytes:
        started = self._clock()
        response = self.transport.transmit(command)
        duration = max(self._clock() - started, 0.0)
        self.last_exchanges.append(Exchange(command, response, started, duration))
        for obs in self.observers:
            obs.xfer(command, response, started, duration)
        return response

    def transmit_raw(self, command: bytes) -> bytes:
        """Send bytes exactly as given (even malformed ones); return the raw response."""
        self.last_exchanges = []
        response = self._exchange(command)
        self._track(command, response)
        return response

    def transmit_apdu(self, apdu: CommandApdu | bytes, *, mode: str | None = None) -> ResponseApdu:
        """Send one command APDU; in auto mode follow 61xx and 6Cxx.

        The returned response joins the data of every GET RESPONSE; the
        exchanges made are in :attr:`last_exchanges` (the first is the command
        as given).
        """
        raw = apdu.to_bytes() if isinstance(apdu, CommandApdu) else bytes(apdu)
        mode = mode or self.mode
        self.last_exchanges = []
        response = self._exchange(raw)
        if mode == "auto":
            response = self._follow(raw, response)
        self._track(raw, response)
        if len(response) < 2:
            raise ApduError(0, f"response of {len(response)} bytes has no status word")
        return ResponseApdu.parse(response)

    def _follow(self, command: bytes, response: bytes) -> bytes:
        """Apply the ISO 7816-3 T=0 style rules: 6Cxx resend, 61xx GET RESPONSE."""
        # bounded: a card answering 6Cxx forever must not hang the caller
        for _ in range(4):
            if len(response) != 2 or response[0] != 0x6C:
                break
            try:
                parsed = CommandApdu.parse(command)
            except Exception:
                break
            command = CommandApdu(
                parsed.cla, parsed.ins, parsed.p1, parsed.p2, parsed.data, response[1] or 256,
                parsed.extended,
            ).to_bytes()
            response = self._exchange(command)
        data = bytearray()
        for _ in range(256):
            if len(response) < 2 or response[-2] != 0x61:
                break
            data += response[:-2]
            cla = command[0] if command else 0
            response = self._exchange(bytes((cla & 0x03, INS_GET_RESPONSE, 0, 0, response[-1])))
        return bytes(data) + response if data else response

    def _track(self, command: bytes, response: bytes) -> None:
        """Keep :attr:`view` in step with what the card was told."""
        if len(command) < 4 or len(response) < 2:
            return
        sw = response[-2] << 8 | response[-1]
        ins, p1 = command[1], command[2]
        try:
            parsed = CommandApdu.parse(command)
        except Exception:
            return
        if ins == INS_SELECT and sw == SW.OK:
            if p1 == P1_SELECT_BY_AID:
                # selecting an application (even the current one) drops its
                # security state, as OpenSC >= 0.24's logout assumes
                self.view.application = parsed.data
                self.view.ef = None
                self.view.verified.clear()
            elif p1 == P1_SELECT_EF and len(parsed.data) == 2:
                self.view.ef = int.from_bytes(parsed.data, "big")
            return
        if ins == INS_SELECT:
            return  # a refused SELECT leaves the current DF and EF as they were
        pin = _pin_name(self.view.application, self.view.ef)
        if ins == INS_VERIFY and pin is not None and parsed.data:
            if sw == SW.OK:
                self.view.verified.add(pin)
            else:
                self.view.verified.discard(pin)

    def reset(self) -> bytes:
        """Warm-reset the card; the security state and current DF are gone."""
        atr = self.transport.reset()
        self.forget()
        for obs in self.observers:
            obs.reset(atr, "warm")
        return atr

    def forget(self) -> None:
        """Drop the tracked card state (after a power event made elsewhere)."""
        self.view = CardView()

    def atr(self) -> bytes:
        return self.transport.atr()

    # ------------------------------------------------------------ helpers

    def _send(self, apdu: CommandApdu, name: str, expect: tuple[int, ...] = (SW.OK,)) -> bytes:
        resp = self.transmit_apdu(apdu)
        if resp.sw not in expect:
            raise ApduError(resp.sw, name)
        return resp.data

    # ------------------------------------------------------------ SELECT

    def select_aid(self, aid: bytes) -> None:
        """SELECT an application by its AID (no FCI)."""
        self._send(CommandApdu(0x00, INS_SELECT, P1_SELECT_BY_AID, P2_NO_FCI, aid),
                   f"SELECT {aid.hex().upper()}")

    def select_jpki(self) -> None:
        self.select_aid(jpki.JPKI_AID)

    def select_helper(self) -> None:
        self.select_aid(jpki.HELPER_AID)

    def select_ef(self, fid: int) -> None:
        """SELECT an EF of the current application by its file identifier."""
        self._send(CommandApdu(0x00, INS_SELECT, P1_SELECT_EF, P2_NO_FCI, fid.to_bytes(2, "big")),
                   f"SELECT EF {fid:04X}")

    def _ensure_application(self, aid: bytes) -> None:
        if self.view.application != aid:
            self.select_aid(aid)

    # ------------------------------------------------------------ READ BINARY

    def read_binary(self, offset: int, ne: int) -> bytes:
        """READ BINARY of the current EF; ``ne`` 1..256 (256 is sent as Le=00)."""
        if not 0 <= offset <= 0x7FFF:
            raise ValueError(f"offset {offset} out of range 0..32767")
        return self._send(
            CommandApdu(0x00, INS_READ_BINARY, offset >> 8, offset & 0xFF, b"", ne),
            f"READ BINARY {offset:04X}",
        )

    def read_ef(self, length: int) -> bytes:
        """Read ``length`` bytes of the current EF from offset 0, in 256-byte chunks."""
        out = bytearray()
        while len(out) < length:
            chunk = self.read_binary(len(out), min(READ_CHUNK, length - len(out)))
            if not chunk:
                break
            out += chunk
        return bytes(out)

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
        self._ensure_application(jpki.JPKI_AID)
        self.select_ef(fid)
        header = self.read_binary(0, 4)
        total = der_length(header)
        return self.read_ef(total)

    def token_label(self) -> str:
        """The first 32 bytes of EF 0006, trimmed: ``JPKIAPICCTOKEN2`` on a My Number card."""
        self._ensure_application(jpki.JPKI_AID)
        self.select_ef(jpki.EF_TOKEN_INFO)
        return self.read_binary(0, 0x20).decode("ascii", "replace").rstrip(" \x00")

    def certificate_presence(self) -> bytes:
        """EF 0008: ``8F 8F 00`` when both certificates are on the card."""
        self._ensure_application(jpki.JPKI_AID)
        self.select_ef(jpki.EF_CERT_PRESENCE)
        return self.read_binary(0, 3)

    # ------------------------------------------------------------ PINs

    def _select_pin(self, which: str) -> None:
        try:
            aid, fid = jpki.PIN_EFS[which]
        except KeyError:
            raise ValueError(f"no PIN {which!r}: one of {', '.join(jpki.PIN_EFS)}") from None
        self._ensure_application(aid)
        self.select_ef(fid)

    def pin_status(self, which: str) -> int:
        """Tries left of a PIN (0 = blocked), by an empty VERIFY.

        The card answers 63Cx whether or not the PIN is verified. A card
        answering 9000 instead gets the policy's maximum (no counter given).
        """
        self._select_pin(which)
        resp = self.transmit_apdu(CommandApdu(0x00, INS_VERIFY, 0x00, P2_CURRENT_EF))
        if resp.sw & 0xFFF0 == 0x63C0:
            return resp.sw & 0x0F
        if resp.sw == SW.OK:
            return jpki.PIN_POLICIES[which].max_tries
        if resp.sw in (SW.REFERENCE_DATA_NOT_USABLE, SW.AUTH_METHOD_BLOCKED):
            return 0
        raise ApduError(resp.sw, f"PIN status {which}")

    def verify_pin(self, which: str, pin: str | bytes) -> None:
        """VERIFY a PIN; raises :class:`PinError` with the tries left when refused."""
        value = pin.encode("ascii") if isinstance(pin, str) else pin
        if not value:
            raise ValueError("an empty PIN asks for the status: use pin_status()")
        self._select_pin(which)
        resp = self.transmit_apdu(CommandApdu(0x00, INS_VERIFY, 0x00, P2_CURRENT_EF, value))
        self._check_pin_answer(resp.sw, f"VERIFY {which}")

    @staticmethod
    def _check_pin_answer(sw: int, name: str) -> None:
        if sw == SW.OK:
            return
        if sw & 0xFFF0 == 0x63C0:
            raise PinError(sw, sw & 0x0F, name)
        if sw in (SW.REFERENCE_DATA_NOT_USABLE, SW.AUTH_METHOD_BLOCKED):
            raise PinError(sw, 0, name)
        raise ApduError(sw, name)

    def change_pin(self, which: str, new: str | bytes, old: str | bytes | None = None) -> None:
        """CHANGE REFERENCE DATA ``00 24 01 80 Lc new``; the PIN must be verified first.

        With ``old`` given, VERIFY it first (as the card's own readers do).
        """
        if old is not None:
            self.verify_pin(which, old)
        value = new.encode("ascii") if isinstance(new, str) else new
        self._select_pin(which)
        resp = self.transmit_apdu(
            CommandApdu(0x00, INS_CHANGE_REFERENCE_DATA, P1_CHANGE_NEW_ONLY, P2_CURRENT_EF, value)
        )
        self._check_pin_answer(resp.sw, f"CHANGE REFERENCE DATA {which}")

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
        self._ensure_application(jpki.JPKI_AID)
        self.select_ef(fid)
        return self._send(
            CommandApdu(jpki.CLA_PROPRIETARY, jpki.INS_COMPUTE_SIGNATURE, scheme,
                        jpki.P2_CURRENT_KEY, data, 256),
            f"COMPUTE DIGITAL SIGNATURE {which}",
        )

    # ------------------------------------------------------------ helper application

    def _read_helper_object(self, fid: int) -> bytes:
        """Read a TLV object of the helper AP whole, learning its length from its header."""
        self._ensure_application(jpki.HELPER_AID)
        self.select_ef(fid)
        head = self.read_binary(0, 8)
        total = _tlv_total_length(head)
        if total <= len(head):
            return head[:total]
        return head + self._read_from(len(head), total - len(head))

    def _read_from(self, offset: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            chunk = self.read_binary(offset + len(out), min(READ_CHUNK, length - len(out)))
            if not chunk:
                break
            out += chunk
        return bytes(out)

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
    from jpki_sim.iso7816 import tlv

    return tlv.decode_helper_my_number(raw)


def decode_basic_info(raw: bytes) -> BasicInfo:
    """``FF 20 len { DF21 offsets, DF22 name, DF23 address, DF24 birth, DF25 sex }``."""
    from jpki_sim.iso7816 import tlv

    info = tlv.decode_helper_basic_info(raw)
    return BasicInfo(info["name"], info["address"], info["birthdate_text"], info["sex"])
