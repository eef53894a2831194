"""A client of any ISO 7816-4 card, in the standard's own operations.

:class:`CardClient` sits on any :class:`~jpki_sim.iso7816.transport.Transport`
(the in-process card, a PC/SC reader, a replayed trace). Two layers:
:meth:`CardClient.transmit_apdu` exchanges one command (following 61xx / 6Cxx
in ``auto`` mode and reporting every exchange it made to its observers), and
the operations above it (SELECT, READ BINARY, VERIFY, CHANGE REFERENCE DATA)
raise :class:`~jpki_sim.iso7816.errors.ApduError` / ``PinError`` on any status
word they did not expect. A card profile gives the names: its applications and
where each PIN lives (:class:`PinAddress`); a profile's own client (e.g.
:class:`jpki_sim.profiles.jpki.client.JpkiClient`) adds the card's operations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from jpki_sim.iso7816.apdu import CommandApdu, ResponseApdu
from jpki_sim.iso7816.errors import ApduError, PinError
from jpki_sim.iso7816.ins import (
    INS,
    P1_CHANGE_NEW_ONLY,
    P1_SELECT_BY_DF_NAME,
    P1_SELECT_EF_UNDER_DF,
    P1_VERIFY,
    P2_RECORD_NUMBER_IN_P1,
    P2_RECORD_SFI_SHIFT,
    P2_SELECT_NO_DATA,
    P2_SPECIFIC_REFERENCE,
)
from jpki_sim.iso7816.sw import SW, tries_left
from jpki_sim.iso7816.transport import Transport

#: the chunk to read EFs in (OpenSC's default max_recv_size)
READ_CHUNK = 256
#: a card answering 6Cxx forever must not hang the caller
MAX_WRONG_LE_RETRIES = 4
MAX_GET_RESPONSES = 256


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


#: how a PIN is changed after a VERIFY of its old value: CLA, INS, P1 (P2 as for VERIFY).
#: ISO CHANGE REFERENCE DATA with "new value only" by default
CHANGE_REFERENCE_DATA = (0x00, INS.CHANGE_REFERENCE_DATA, P1_CHANGE_NEW_ONLY)


@dataclass(frozen=True, slots=True)
class PinAddress:
    """Where a PIN is and how to address it: SELECT its EF then P2 (or P2 alone).

    ``change`` is the command that sets a new value (CLA, INS, P1), for cards
    that change some PINs with a command of their own.
    """

    aid: bytes
    fid: int
    max_tries: int
    p2: int = P2_SPECIFIC_REFERENCE
    select: bool = True
    change: tuple[int, int, int] = CHANGE_REFERENCE_DATA


@dataclass
class CardView:
    """What the client believes about the card's volatile state.

    Derived from the commands it sent and their answers: a card does not report
    its security state (an empty VERIFY always answers 63Cx), so this is the
    bookkeeping a middleware driver does. Cleared by a reset.
    """

    application: bytes | None = None
    ef: int | None = None
    verified: set[str] = field(default_factory=set)
    names: Mapping[bytes, str] = field(default_factory=dict)

    @property
    def application_name(self) -> str | None:
        if self.application is None:
            return None
        return self.names.get(self.application, self.application.hex().upper())


class CardClient:
    """A card through one transport.

    ``mode`` is ``"transparent"`` (send exactly what was asked, report 61xx /
    6Cxx as they come) or ``"auto"`` (follow 61xx with GET RESPONSE and 6Cxx by
    resending with the Le the card named). ``applications`` and ``pins`` are
    the card's names (from its profile).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        mode: str = "auto",
        observer: ApduObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        applications: Mapping[str, bytes] | None = None,
        pins: Mapping[str, PinAddress] | None = None,
    ) -> None:
        if mode not in ("auto", "transparent"):
            raise ValueError(f"mode must be 'auto' or 'transparent', not {mode!r}")
        self.transport = transport
        self.mode = mode
        self.observers: list[ApduObserver] = [observer] if observer is not None else []
        self.applications: dict[str, bytes] = dict(applications or {})
        self.pins: dict[str, PinAddress] = dict(pins or {})
        self._app_names = {aid: name for name, aid in self.applications.items()}
        self.view = CardView(names=self._app_names)
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
        for _ in range(MAX_WRONG_LE_RETRIES):
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
        for _ in range(MAX_GET_RESPONSES):
            if len(response) < 2 or response[-2] != 0x61:
                break
            data += response[:-2]
            cla = command[0] if command else 0
            response = self._exchange(bytes((cla & 0x03, INS.GET_RESPONSE, 0, 0, response[-1])))
        return bytes(data) + response if data else response

    def _pin_at(self, application: bytes | None, ef: int | None, p2: int) -> str | None:
        for name, where in self.pins.items():
            if where.aid != application:
                continue
            if (where.select and ef == where.fid and p2 == where.p2) or (
                not where.select and p2 == where.p2
            ):
                return name
        return None

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
        if ins == INS.SELECT and sw == SW.OK:
            if p1 == P1_SELECT_BY_DF_NAME:
                # selecting another application drops the security state; the
                # current one again keeps it (JICSAP 5.1.3 rules 2 and 3)
                if parsed.data != self.view.application:
                    self.view.verified.clear()
                self.view.application = parsed.data
                self.view.ef = None
            elif p1 == P1_SELECT_EF_UNDER_DF and len(parsed.data) == 2:
                self.view.ef = int.from_bytes(parsed.data, "big")
            return
        if ins == INS.SELECT:
            return  # a refused SELECT leaves the current DF and EF as they were
        pin = self._pin_at(self.view.application, self.view.ef, parsed.p2)
        if ins == INS.VERIFY and pin is not None and parsed.data:
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
        self.view = CardView(names=self._app_names)

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
        self._send(CommandApdu(0x00, INS.SELECT, P1_SELECT_BY_DF_NAME, P2_SELECT_NO_DATA, aid),
                   f"SELECT {aid.hex().upper()}")

    def select_application(self, name: str) -> None:
        try:
            aid = self.applications[name]
        except KeyError:
            known = ", ".join(self.applications)
            raise ValueError(f"no application {name!r}: one of {known}") from None
        self.select_aid(aid)

    def select_ef(self, fid: int) -> None:
        """SELECT an EF of the current application by its file identifier."""
        self._send(
            CommandApdu(0x00, INS.SELECT, P1_SELECT_EF_UNDER_DF, P2_SELECT_NO_DATA,
                        fid.to_bytes(2, "big")),
            f"SELECT EF {fid:04X}",
        )

    def ensure_application(self, aid: bytes) -> None:
        if self.view.application != aid:
            self.select_aid(aid)

    # ------------------------------------------------------------ READ BINARY

    def read_binary(self, offset: int, ne: int) -> bytes:
        """READ BINARY of the current EF; ``ne`` 1..256 (256 is sent as Le=00)."""
        if not 0 <= offset <= 0x7FFF:
            raise ValueError(f"offset {offset} out of range 0..32767")
        return self._send(
            CommandApdu(0x00, INS.READ_BINARY, offset >> 8, offset & 0xFF, b"", ne),
            f"READ BINARY {offset:04X}",
        )

    def read_from(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the current EF from ``offset``, in 256-byte chunks."""
        out = bytearray()
        while len(out) < length:
            chunk = self.read_binary(offset + len(out), min(READ_CHUNK, length - len(out)))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def read_ef(self, length: int) -> bytes:
        """Read ``length`` bytes of the current EF from offset 0, in 256-byte chunks."""
        return self.read_from(0, length)

    # ------------------------------------------------------------ records, data, challenges

    def read_record(self, number: int, sfi: int | None = None, ne: int = READ_CHUNK) -> bytes:
        """READ RECORD ``00 B2 number P2 Le``: of the current EF, or of short EF id ``sfi``."""
        if not 1 <= number <= 0xFF:
            raise ValueError(f"record number {number} out of range 1..255")
        if sfi is not None and not 1 <= sfi <= 30:
            raise ValueError(f"short EF identifier {sfi} out of range 1..30")
        p2 = ((sfi or 0) << P2_RECORD_SFI_SHIFT) | P2_RECORD_NUMBER_IN_P1
        where = f" of SFI {sfi:02X}" if sfi else ""
        return self._send(CommandApdu(0x00, INS.READ_RECORD, number, p2, b"", ne),
                          f"READ RECORD {number}{where}")

    def get_data(self, tag: int) -> bytes:
        """GET DATA of ``tag``; a 6700 to the short Le is asked again with an extended one.

        (A large object does not fit a short Le, and cards refuse it rather than
        tell the length; that costs one more exchange for the large ones only.)
        """
        short = CommandApdu(0x00, INS.GET_DATA, tag >> 8, tag & 0xFF, b"", READ_CHUNK)
        resp = self.transmit_apdu(short)
        if resp.sw == SW.WRONG_LENGTH:
            resp = self.transmit_apdu(
                CommandApdu(0x00, INS.GET_DATA, tag >> 8, tag & 0xFF, b"", 65536))
        if resp.sw != SW.OK:
            raise ApduError(resp.sw, f"GET DATA {tag:04X}")
        return resp.data

    def get_challenge(self, n: int = 8) -> bytes:
        """GET CHALLENGE ``00 84 00 00 Le``: ``n`` (1..256) random bytes from the card."""
        if not 1 <= n <= 256:
            raise ValueError(f"a challenge is 1 to 256 bytes, not {n}")
        data = self._send(CommandApdu(0x00, INS.GET_CHALLENGE, 0, 0, b"", n), "GET CHALLENGE")
        if len(data) != n:
            raise ApduError(SW.OK, f"GET CHALLENGE: {len(data)} bytes, asked for {n}")
        return data

    def internal_authenticate(self, p2: int, challenge: bytes, ne: int = READ_CHUNK) -> bytes:
        """INTERNAL AUTHENTICATE ``00 88 00 P2 Lc challenge Le``: the key P2 names answers."""
        return self._send(
            CommandApdu(0x00, INS.INTERNAL_AUTHENTICATE, 0, p2, challenge, ne),
            f"INTERNAL AUTHENTICATE {p2:02X}",
        )

    # ------------------------------------------------------------ PINs

    def pin_address(self, which: str) -> PinAddress:
        try:
            return self.pins[which]
        except KeyError:
            raise ValueError(f"no PIN {which!r}: one of {', '.join(self.pins)}") from None

    def _select_pin(self, which: str) -> PinAddress:
        where = self.pin_address(which)
        self.ensure_application(where.aid)
        if where.select:
            self.select_ef(where.fid)
        return where

    def pin_status(self, which: str) -> int:
        """Tries left of a PIN (0 = blocked), by an empty VERIFY.

        A card answers 63Cx whether or not the PIN is verified. A card
        answering 9000 instead gets the PIN's maximum (no counter given).
        """
        where = self._select_pin(which)
        resp = self.transmit_apdu(CommandApdu(0x00, INS.VERIFY, P1_VERIFY, where.p2))
        left = tries_left(resp.sw)
        if left is not None:
            return left
        if resp.sw == SW.OK:
            return where.max_tries
        if resp.sw in (SW.REFERENCE_DATA_NOT_USABLE, SW.AUTH_METHOD_BLOCKED):
            return 0
        raise ApduError(resp.sw, f"PIN status {which}")

    def verify_pin(self, which: str, pin: str | bytes) -> None:
        """VERIFY a PIN; raises :class:`PinError` with the tries left when refused."""
        value = pin.encode("ascii") if isinstance(pin, str) else pin
        if not value:
            raise ValueError("an empty PIN asks for the status: use pin_status()")
        where = self._select_pin(which)
        resp = self.transmit_apdu(CommandApdu(0x00, INS.VERIFY, P1_VERIFY, where.p2, value))
        self.check_pin_answer(resp.sw, f"VERIFY {which}")

    @staticmethod
    def check_pin_answer(sw: int, name: str) -> None:
        if sw == SW.OK:
            return
        left = tries_left(sw)
        if left is not None:
            raise PinError(sw, left, name)
        if sw in (SW.REFERENCE_DATA_NOT_USABLE, SW.AUTH_METHOD_BLOCKED):
            raise PinError(sw, 0, name)
        raise ApduError(sw, name)

    def change_pin(self, which: str, new: str | bytes, old: str | bytes | None = None) -> None:
        """Set a new PIN value; the PIN must be verified first.

        CHANGE REFERENCE DATA ``00 24 01 P2 Lc new``, or the command the PIN's
        address names. With ``old`` given, VERIFY it first (as a card's own
        readers do).
        """
        if old is not None:
            self.verify_pin(which, old)
        value = new.encode("ascii") if isinstance(new, str) else new
        where = self._select_pin(which)
        cla, ins, p1 = where.change
        resp = self.transmit_apdu(CommandApdu(cla, ins, p1, where.p2, value))
        name = "CHANGE REFERENCE DATA" if (cla, ins) == (0x00, INS.CHANGE_REFERENCE_DATA) else (
            f"{cla:02X} {ins:02X} (change)")
        self.check_pin_answer(resp.sw, f"{name} {which}")


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
