"""A :class:`~jpki_sim.transport.Transport` over PC/SC (pyscard), for any reader.

It talks to whatever card sits in the reader: the emulator behind vpcd or a
real My Number card in a USB reader. Nothing here assumes the emulator.

pyscard is an optional dependency (``pip install 'jpki-sim[pcsc]'``); it is
imported on first use and its absence, a stopped pcscd, a missing reader or
an empty reader each give a :class:`PcscError` with one line saying what to do.
"""

from __future__ import annotations

import time
from types import ModuleType, TracebackType
from typing import Any

from jpki_sim.errors import JpkiSimError

PYSCARD_MISSING = (
    "pyscard is not installed: pip install 'jpki-sim[pcsc]' "
    "(building it needs gcc and libpcsclite-dev; see tools/setup.sh)"
)
PCSCD_NOT_RUNNING = (
    "pcscd is not running: start it with `sudo pcscd -f &` or let `sudo jpki-sim serve` "
    "start it (`jpki-sim doctor` checks the setup)"
)


class PcscError(JpkiSimError):
    """PC/SC is unavailable or refused an operation; the message says what to do."""

    def __init__(self, message: str, code: int | None = None) -> None:
        self.code = code
        super().__init__(message)


class NoCardError(PcscError):
    """The reader is empty (or the card was removed)."""


_scard_module: ModuleType | None = None


def scard() -> ModuleType:
    """pyscard's low-level module, or PcscError saying how to install it."""
    global _scard_module
    if _scard_module is None:
        try:
            import smartcard.scard as module
        except ImportError:
            raise PcscError(PYSCARD_MISSING) from None
        _scard_module = module
    return _scard_module


def _error(code: int, what: str, reader: str | None = None) -> PcscError:
    s = scard()
    where = f" '{reader}'" if reader else ""
    if code in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED):
        return PcscError(PCSCD_NOT_RUNNING, code)
    if code == s.SCARD_E_NO_READERS_AVAILABLE:
        return PcscError(
            "pcscd sees no reader: plug in a reader, or install the vpcd driver "
            "(apt-get install vsmartcard-vpcd) and restart pcscd",
            code,
        )
    if code in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD):
        return NoCardError(
            f"no card in reader{where}: insert one or start `jpki-sim serve`", code
        )
    if code == s.SCARD_E_UNKNOWN_READER:
        return PcscError(f"no such reader{where} (see `jpki-sim doctor`)", code)
    if code == s.SCARD_E_SHARING_VIOLATION:
        return PcscError(f"reader{where} is in exclusive use by another program", code)
    if code == s.SCARD_W_UNRESPONSIVE_CARD:
        return PcscError(f"the card in reader{where} does not answer", code)
    message = s.SCardGetErrorMessage(code).strip().rstrip(".")
    return PcscError(f"{what}{where} failed: {message} (0x{code & 0xFFFFFFFF:08X})", code)


class Context:
    """An established PC/SC context (one per transport or query)."""

    def __init__(self) -> None:
        s = scard()
        code, handle = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "connecting to pcscd")
        self.handle: Any = handle

    def readers(self) -> list[str]:
        s = scard()
        code, names = s.SCardListReaders(self.handle, [])
        if code == s.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "listing readers")
        return list(names)

    def states(self, readers: list[str] | None = None) -> list[tuple[str, int, bytes]]:
        """(reader, state flags, ATR) for each reader, without waiting."""
        s = scard()
        names = self.readers() if readers is None else readers
        if not names:
            return []
        code, states = s.SCardGetStatusChange(
            self.handle, 0, [(name, s.SCARD_STATE_UNAWARE) for name in names]
        )
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "reading reader states")
        return [(name, flags, bytes(atr)) for name, flags, atr in states]

    def release(self) -> None:
        if self.handle is not None:
            scard().SCardReleaseContext(self.handle)
            self.handle = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def list_readers() -> list[str]:
    with Context() as ctx:
        return ctx.readers()


def reader_status() -> list[tuple[str, bool, bytes]]:
    """(reader, card present, ATR) for every reader pcscd knows."""
    s = scard()
    with Context() as ctx:
        return [
            (name, bool(flags & s.SCARD_STATE_PRESENT), atr)
            for name, flags, atr in ctx.states()
        ]


def wait_for_card(reader: str, present: bool = True, timeout: float = 5.0) -> bool:
    """Wait until ``reader`` shows a card (or none, ``present=False``); False on timeout.

    Uses SCardGetStatusChange, so it returns as soon as pcscd's poll notices.
    A reader that does not exist yet (pcscd still starting) is waited for too.
    """
    s = scard()
    deadline = time.monotonic() + timeout
    with Context() as ctx:
        while True:
            remaining = deadline - time.monotonic()
            if reader in ctx.readers():
                (_, flags, _atr), = ctx.states([reader])
                if bool(flags & s.SCARD_STATE_PRESENT) == present and not (
                    present and flags & s.SCARD_STATE_MUTE
                ):
                    return True
                if remaining <= 0:
                    return False
                code, _ = s.SCardGetStatusChange(
                    ctx.handle, int(min(remaining, 1.0) * 1000), [(reader, flags)]
                )
                if code not in (s.SCARD_S_SUCCESS, s.SCARD_E_TIMEOUT):
                    raise _error(code, "waiting for", reader)
            else:
                if remaining <= 0:
                    return False
                time.sleep(min(remaining, 0.05))


def resolve_reader(spec: str | int | None, readers: list[str]) -> str:
    """Pick a reader by index, exact name or unique substring (None: the first)."""
    if not readers:
        raise _error(scard().SCARD_E_NO_READERS_AVAILABLE, "listing readers")
    if spec is None:
        return readers[0]
    if isinstance(spec, int) or spec.isdigit():
        index = int(spec)
        if not 0 <= index < len(readers):
            raise PcscError(
                f"no reader number {index}: pcscd has {len(readers)} "
                f"({', '.join(repr(r) for r in readers)})"
            )
        return readers[index]
    if spec in readers:
        return spec
    matches = [r for r in readers if spec.lower() in r.lower()]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(repr(r) for r in readers)
    if not matches:
        raise PcscError(f"no reader matches {spec!r}; readers: {known}")
    raise PcscError(f"{spec!r} matches several readers ({', '.join(map(repr, matches))})")


class PcscTransport:
    """A card in a PC/SC reader, as a :class:`~jpki_sim.transport.Transport`.

    ``reader``: index, exact name or unique substring; None picks the first
    reader holding a card. ``protocol``: "T1", "T0" or "any". On T=0 the
    transport does the ISO 7816-3 response handling itself (GET RESPONSE on
    61xx, repeat with the right Le on 6Cxx), since pcsc-lite passes TPDUs as
    they are; on T=1 the raw response is returned.
    """

    def __init__(
        self,
        reader: str | int | None = None,
        *,
        protocol: str = "any",
        exclusive: bool = False,
    ) -> None:
        s = scard()
        protocols = {
            "ANY": s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1,
            "T0": s.SCARD_PROTOCOL_T0,
            "T1": s.SCARD_PROTOCOL_T1,
        }
        key = protocol.upper().replace("=", "")
        if key not in protocols:
            raise PcscError(f"unknown protocol {protocol!r}: use T0, T1 or any")
        self._protocols = protocols[key]
        self._share = s.SCARD_SHARE_EXCLUSIVE if exclusive else s.SCARD_SHARE_SHARED
        self._ctx = Context()
        self._card: Any = None
        try:
            names = self._ctx.readers()
            if reader is None:
                with_card = [n for n, flags, _ in self._ctx.states(names)
                             if flags & s.SCARD_STATE_PRESENT]
                self.reader = with_card[0] if with_card else resolve_reader(None, names)
            else:
                self.reader = resolve_reader(reader, names)
            code, card, active = s.SCardConnect(
                self._ctx.handle, self.reader, self._share, self._protocols
            )
            if code != s.SCARD_S_SUCCESS:
                raise _error(code, "connecting to the card in", self.reader)
            self._card = card
            self._active = active
        except BaseException:
            self._ctx.release()
            raise
        self.name = self.reader
        self._atr = self._read_atr()

    # ------------------------------------------------------------ Transport

    @property
    def protocol(self) -> str:
        return "T=0" if self._active == scard().SCARD_PROTOCOL_T0 else "T=1"

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 2:
            # vpcd takes a 1-byte message for a power event and never answers it,
            # which hangs the reader slot: refuse it here (the card would say 6700).
            raise PcscError(
                f"command APDU of {len(apdu)} byte(s) is too short to send through a reader"
            )
        resp = self._transmit_once(apdu)
        if self._active == scard().SCARD_PROTOCOL_T0 and len(resp) == 2:
            resp = self._t0_response(apdu, resp)
        return resp

    def atr(self) -> bytes:
        return self._atr

    def reset(self) -> bytes:
        """Warm reset (the card loses its security state); returns the ATR."""
        return self._reconnect(scard().SCARD_RESET_CARD)

    def power_cycle(self) -> bytes:
        """Power the card down and up again (cold reset); returns the ATR."""
        return self._reconnect(scard().SCARD_UNPOWER_CARD)

    def close(self) -> None:
        s = scard()
        if self._card is not None:
            s.SCardDisconnect(self._card, s.SCARD_LEAVE_CARD)
            self._card = None
        self._ctx.release()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PcscTransport({self.reader!r})"

    # ------------------------------------------------------------ internals

    def _transmit_once(self, apdu: bytes) -> bytes:
        s = scard()
        if self._card is None:
            raise PcscError(f"reader '{self.reader}' is closed")
        code, resp = s.SCardTransmit(self._card, self._active, list(apdu))
        if code == s.SCARD_W_RESET_CARD:
            # another program reset the card; reconnect and let the card itself
            # show that the security state is gone (6982 and the like)
            self._reconnect(s.SCARD_LEAVE_CARD)
            code, resp = s.SCardTransmit(self._card, self._active, list(apdu))
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "transmitting to", self.reader)
        if len(resp) < 2:
            raise PcscError(f"reader '{self.reader}' returned a {len(resp)}-byte response")
        return bytes(resp)

    def _t0_response(self, apdu: bytes, resp: bytes) -> bytes:
        data = b""
        for _ in range(256):  # bound the loop against a card that never ends
            sw1, sw2 = resp[-2], resp[-1]
            if sw1 == 0x6C:
                resp = self._transmit_once(apdu[:4] + bytes([sw2]))
            elif sw1 == 0x61:
                data += resp[:-2]
                cla = apdu[0] & 0x03  # GET RESPONSE keeps the logical channel
                resp = self._transmit_once(bytes([cla, 0xC0, 0x00, 0x00, sw2]))
            else:
                return data + resp
        raise PcscError(f"the card in '{self.reader}' never finished its response")

    def _reconnect(self, disposition: int) -> bytes:
        s = scard()
        code, active = s.SCardReconnect(self._card, self._share, self._protocols, disposition)
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "resetting the card in", self.reader)
        self._active = active
        self._atr = self._read_atr()
        return self._atr

    def _read_atr(self) -> bytes:
        s = scard()
        code, _name, _state, _proto, atr = s.SCardStatus(self._card)
        if code != s.SCARD_S_SUCCESS:
            raise _error(code, "reading the ATR in", self.reader)
        return bytes(atr)
