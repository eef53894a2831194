"""A generic ISO/IEC 7816-4 card: files, security status, PINs, command dispatch.

The engine knows nothing of JPKI. A profile (see :mod:`jpki_sim.profile`)
hands it an ATR, dedicated files with their elementary files, and handlers for
any proprietary commands; another card could be assembled the same way.

Rules this engine follows (see docs/protocol.md for the why):

* Applications (DFs) are selected by AID (``00 A4 04 xx``), EFs by FID under
  the current DF (``00 A4 02 xx``). Selecting an application, even the current
  one again, clears the whole security status (no PIN stays verified).
* READ BINARY reads transparent EFs: 15-bit offset or short-EF form, returns
  ``min(Ne, size - offset)`` bytes, offset at or past the end gives 6B00.
* PIN objects: the retry counter is decremented and persisted **before** the
  comparison, so a crash never gives a free try. An empty VERIFY always
  reports ``63Cx`` (never "already verified"). Wrong PIN ``63Cx`` with x the
  tries left, blocked ``6984``.
* Any exception escaping a handler is answered ``6F00``; nothing ever escapes
  :meth:`Card.process`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jpki_sim.errors import CardError, MalformedApdu
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.sw import SW, pin_status_sw
from jpki_sim.profiles.jpki.state import PinState

log = logging.getLogger(__name__)

_OK = b"\x90\x00"

# ISO 7816-4 instruction bytes the engine implements
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE_DATA = 0x24
INS_RESET_RETRY_COUNTER = 0x2C
INS_GET_DATA = 0xCA

P1_SELECT_MF_OR_FID = 0x00
P1_SELECT_EF_UNDER_DF = 0x02
P1_SELECT_DF_NAME = 0x04
#: P2 values of SELECT that ask for no data or FCI/FCP/FMD, first occurrence
SELECT_P2_ALLOWED = frozenset((0x00, 0x04, 0x08, 0x0C))

P2_CURRENT_EF = 0x80  # VERIFY/CHANGE/sign: "the key of the current EF"; 80|SFI names one


# ---------------------------------------------------------------- access rules


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use an EF: everyone, no one, or the holder of any of these PINs."""

    kind: str  # "always" | "never" | "pin"
    pins: tuple[int, ...] = ()

    def __str__(self) -> str:
        if self.kind == "pin":
            return "PIN " + " or ".join(f"{fid:04X}" for fid in self.pins)
        return self.kind


ALWAYS = Access("always")
NEVER = Access("never")


def pin_verified(*fids: int) -> Access:
    """Access granted when any of these PIN EFs (in the same DF) is verified."""
    return Access("pin", tuple(fids))


# ---------------------------------------------------------------- files


class ElementaryFile:
    """An EF of a DF. ``sfi`` is its short EF identifier (None: has none)."""

    def __init__(self, fid: int, *, read: Access = NEVER, sfi: int | None = None) -> None:
        self.fid = fid
        self.read = read
        self.sfi = sfi if sfi is not None else (fid if 1 <= fid <= 0x1E else None)


class TransparentEF(ElementaryFile):
    """A transparent (binary) EF. ``capacity`` pads the content with ``filler``.

    The padded content is built once here, so READ BINARY copies only the
    bytes it returns.
    """

    def __init__(
        self,
        fid: int,
        content: bytes,
        *,
        read: Access = ALWAYS,
        capacity: int | None = None,
        filler: int = 0xFF,
        sfi: int | None = None,
    ) -> None:
        super().__init__(fid, read=read, sfi=sfi)
        size = max(capacity or 0, len(content))
        self.content = bytes(content) + bytes((filler,)) * (size - len(content))

    @property
    def size(self) -> int:
        return len(self.content)


class PinObject:
    """A PIN (reference data) with its retry counter, kept in a :class:`PinState`.

    ``commit`` persists the state; it is called after every counter change and
    before any comparison result is acted upon.
    """

    def __init__(
        self,
        state: PinState,
        commit: Callable[[], None],
        *,
        check_format: Callable[[bytes], bool] = lambda _b: True,
    ) -> None:
        self.state = state
        self._commit = commit
        self.check_format = check_format

    @property
    def tries_left(self) -> int:
        """Tries left; 0 for a PIN that was never set (it cannot be verified)."""
        return self.state.tries_left if self.state.value is not None else 0

    @property
    def usable(self) -> bool:
        return self.state.value is not None and self.state.tries_left > 0

    def verify(self, candidate: bytes) -> bool:
        """Compare in constant time after spending a try; True when it matches.

        Callers check :attr:`usable` first.
        """
        st = self.state
        st.tries_left -= 1
        self._commit()  # the try is spent on disk before the answer is known
        reference = (st.value or "").encode()
        if hmac.compare_digest(candidate, reference):
            st.tries_left = st.max_tries
            self._commit()
            return True
        return False

    def change(self, new: bytes) -> None:
        self.state.value = new.decode("ascii")
        self.state.tries_left = self.state.max_tries
        self._commit()

    # administrative operations (the issuer's counter terminal, the shell's admin verbs)
    def block(self) -> None:
        self.state.tries_left = 0
        self._commit()

    def unblock(self, new_value: str | None = None) -> None:
        if new_value is not None:
            self.state.value = new_value
        self.state.tries_left = self.state.max_tries
        self._commit()


class PinEF(ElementaryFile):
    """An internal EF holding a PIN. Never readable."""

    def __init__(self, fid: int, pin: PinObject, *, sfi: int | None = None) -> None:
        super().__init__(fid, read=NEVER, sfi=sfi)
        self.pin = pin


class KeyEF(ElementaryFile):
    """An internal EF holding a private key. Never readable; ``use`` gates signing.

    ``key`` is whatever the profile's signing handler understands; the engine
    never looks inside it.
    """

    def __init__(self, fid: int, key: Any, *, use: Access, sfi: int | None = None) -> None:
        super().__init__(fid, read=NEVER, sfi=sfi)
        self.key = key
        self.use = use


class DedicatedFile:
    """An application DF with its EFs, selected by AID."""

    def __init__(self, aid: bytes, name: str, files: list[ElementaryFile]) -> None:
        self.aid = aid
        self.name = name
        self.files = {ef.fid: ef for ef in files}
        self.by_sfi = {ef.sfi: ef for ef in files if ef.sfi is not None}


# ---------------------------------------------------------------- the card

#: a command handler: (card, apdu) -> response data (SW 9000) or raises CardError
Handler = Callable[["Card", CommandApdu], bytes]


class Card:
    """An ISO 7816-4 card. :meth:`process` takes raw command bytes, returns the response."""

    def __init__(
        self,
        atr: bytes,
        applications: list[DedicatedFile],
        *,
        proprietary: dict[int, Handler] | None = None,
        data_objects: dict[int, bytes] | None = None,
        sm_refused_sw: int = SW.SECURE_MESSAGING_NOT_SUPPORTED,
    ) -> None:
        self._atr = atr
        self.applications = {df.aid: df for df in applications}
        #: handlers for CLA 8x, by INS
        self.proprietary = dict(proprietary or {})
        #: GET DATA objects answered at MF level (no application selected)
        self.data_objects = dict(data_objects or {})
        self.sm_refused_sw = sm_refused_sw
        self._iso: dict[int, Handler] = {
            INS_SELECT: Card._select,
            INS_READ_BINARY: Card._read_binary,
            INS_VERIFY: Card._verify,
            INS_CHANGE_REFERENCE_DATA: Card._change_reference_data,
            INS_RESET_RETRY_COUNTER: Card._reset_retry_counter,
            INS_GET_DATA: Card._get_data,
        }
        self.current_df: DedicatedFile | None = None
        self.current_ef: ElementaryFile | None = None
        #: verified PINs, as (application AID, PIN FID)
        self.verified: set[tuple[bytes, int]] = set()
        self.powered = True

    # ------------------------------------------------ power

    @property
    def atr(self) -> bytes:
        return self._atr

    def _clear_volatile(self) -> None:
        self.current_df = None
        self.current_ef = None
        self.verified.clear()

    def power_on(self) -> bytes:
        self._clear_volatile()
        self.powered = True
        return self._atr

    def power_off(self) -> None:
        self._clear_volatile()
        self.powered = False

    def reset(self) -> bytes:
        return self.power_on()

    # ------------------------------------------------ dispatch

    def process(self, raw: bytes) -> bytes:
        """One command APDU in, one response APDU out. Never raises."""
        try:
            if len(raw) < 4:
                raise MalformedApdu("command shorter than a header")
            cla = raw[0]
            if cla == 0xFF:
                return b"\x6e\x00"  # reserved for PPS, invalid as a class byte
            if cla & 0x03:
                return b"\x68\x81"
            if cla & 0x0C:
                sw = (
                    SW.SECURE_MESSAGING_NOT_SUPPORTED
                    if raw[1] == INS_SELECT
                    else self.sm_refused_sw
                )
                return sw.to_bytes(2, "big")
            if cla & 0x10:
                return b"\x68\x84"
            group = cla & 0xE0
            if group == 0x00:
                handler = self._iso.get(raw[1])
            elif group == 0x80:
                handler = self.proprietary.get(raw[1])
            else:
                return b"\x6e\x00"
            if handler is None:
                return b"\x6d\x00"
            apdu = CommandApdu.parse(raw)
            data = handler(self, apdu)
            return data + _OK if data else _OK
        except CardError as exc:
            return exc.sw.to_bytes(2, "big")
        except Exception:  # a bug must not take the card (or the bridge) down
            log.exception("internal error on APDU %s", bytes(raw).hex())
            return b"\x6f\x00"

    # ------------------------------------------------ helpers for handlers

    def is_satisfied(self, rule: Access, df: DedicatedFile) -> bool:
        if rule.kind == "always":
            return True
        if rule.kind == "pin":
            verified = self.verified
            return any((df.aid, fid) in verified for fid in rule.pins)
        return False

    def require(self, rule: Access, df: DedicatedFile) -> None:
        if not self.is_satisfied(rule, df):
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)

    def referenced_ef(self, p2: int) -> ElementaryFile:
        """The EF named by P2 of VERIFY-like commands: 80 = current, 80|SFI = by short id."""
        df = self.current_df
        if p2 == P2_CURRENT_EF:
            if df is None or self.current_ef is None:
                raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
            return self.current_ef
        if 0x81 <= p2 <= 0x9E:
            if df is None or (ef := df.by_sfi.get(p2 & 0x1F)) is None:
                raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
            return ef
        raise CardError(SW.INCORRECT_P1P2)

    def _pin_ef(self, p2: int) -> tuple[DedicatedFile, PinEF]:
        ef = self.referenced_ef(p2)
        if not isinstance(ef, PinEF):
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        assert self.current_df is not None
        return self.current_df, ef

    # ------------------------------------------------ ISO handlers

    def _select(self, apdu: CommandApdu) -> bytes:
        if apdu.p2 not in SELECT_P2_ALLOWED:
            raise CardError(SW.INCORRECT_P1P2)
        p1 = apdu.p1
        if p1 == P1_SELECT_DF_NAME:
            if not 1 <= len(apdu.data) <= 16:
                raise CardError(SW.WRONG_LENGTH)
            df = self.applications.get(apdu.data)
            if df is None:
                raise CardError(SW.FILE_NOT_FOUND)
            self.current_df = df
            self.current_ef = None
            self.verified.clear()
            return b""
        if p1 == P1_SELECT_EF_UNDER_DF:
            if len(apdu.data) != 2:
                raise CardError(SW.WRONG_LENGTH)
            if self.current_df is None:
                raise CardError(SW.FILE_NOT_FOUND)
            ef = self.current_df.files.get((apdu.data[0] << 8) | apdu.data[1])
            if ef is None:
                raise CardError(SW.FILE_NOT_FOUND)
            self.current_ef = ef
            return b""
        if p1 == P1_SELECT_MF_OR_FID:
            # The card has no usable MF: refused after reset, a no-op inside an application.
            if self.current_df is None:
                raise CardError(SW.INCORRECT_P1P2)
            return b""
        raise CardError(SW.INCORRECT_P1P2)

    def _read_binary(self, apdu: CommandApdu) -> bytes:
        if apdu.data or apdu.ne is None:
            raise CardError(SW.WRONG_LENGTH)
        p1 = apdu.p1
        if p1 & 0x80:
            if p1 & 0x60 or not p1 & 0x1F:
                raise CardError(SW.INCORRECT_P1P2)
            df = self.current_df
            ef = df.by_sfi.get(p1 & 0x1F) if df is not None else None
            if ef is None:
                raise CardError(SW.FILE_NOT_FOUND)
            offset = apdu.p2
        else:
            ef = self.current_ef
            if ef is None:
                raise CardError(SW.COMMAND_NOT_ALLOWED_NO_EF)
            offset = (p1 << 8) | apdu.p2
        df = self.current_df
        assert df is not None  # an EF is only ever current inside a DF
        self.require(ef.read, df)
        if not isinstance(ef, TransparentEF):
            raise CardError(SW.COMMAND_INCOMPATIBLE_WITH_FILE)
        content = ef.content
        if offset >= len(content):
            raise CardError(SW.WRONG_PARAMETERS)
        self.current_ef = ef  # a short-EF read selects the EF, once it succeeds
        return content[offset : offset + apdu.ne]

    def _verify(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x00:
            raise CardError(SW.INCORRECT_P1P2)
        df, ef = self._pin_ef(apdu.p2)
        pin = ef.pin
        if not apdu.data:
            # retry query: always 63Cx, even when verified (clients rely on it)
            raise CardError(pin_status_sw(pin.tries_left))
        if not pin.usable:
            raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
        key = (df.aid, ef.fid)
        if pin.verify(apdu.data):
            self.verified.add(key)
            return b""
        self.verified.discard(key)
        raise CardError(pin_status_sw(pin.tries_left))

    def _change_reference_data(self, apdu: CommandApdu) -> bytes:
        if apdu.p1 != 0x01:  # only "new reference data, old one verified before"
            raise CardError(SW.INCORRECT_P1P2)
        df, ef = self._pin_ef(apdu.p2)
        if not apdu.data:
            raise CardError(SW.WRONG_LENGTH)
        if not ef.pin.usable:
            raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
        if (df.aid, ef.fid) not in self.verified:
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
        if not ef.pin.check_format(apdu.data):
            raise CardError(SW.WRONG_PARAMETERS_IN_DATA)
        ef.pin.change(apdu.data)
        return b""

    def _reset_retry_counter(self, apdu: CommandApdu) -> bytes:
        # Only the municipal terminal, after its own authentication, may reset a
        # counter; that authentication is not emulated, so the command is refused.
        raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)

    def _get_data(self, apdu: CommandApdu) -> bytes:
        if self.current_df is None:
            value = self.data_objects.get(apdu.p1p2)
            if value is not None:
                return value
        raise CardError(SW.REFERENCE_DATA_NOT_FOUND)

    # ------------------------------------------------ introspection (shell, issuer)

    def find_pin(self, aid: bytes, fid: int) -> PinObject:
        ef = self.applications[aid].files[fid]
        if not isinstance(ef, PinEF):
            raise KeyError(f"{fid:04X} is not a PIN")
        return ef.pin
