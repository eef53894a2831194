"""A generic ISO/IEC 7816-4 card: files, security status, PINs, command dispatch.

The engine knows no particular card. A profile (:mod:`jpki_sim.profiles`) hands
it an ATR, dedicated files with their elementary files, the rule by which P2
names a PIN or key, the data objects GET DATA answers, the choices of
:class:`~jpki_sim.card.rules.CardRules`, and handlers for any instruction of its
own (or in place of an interindustry one); another card is assembled the same way.

Rules this engine follows (see docs/protocol.md for the why):

* Applications (DFs) are selected by AID (``00 A4 04 xx``), EFs by FID under
  the current DF (``00 A4 02 xx``). The security status belongs to the current
  DF: selecting another DF clears it, re-selecting the current one keeps it
  (``rules.reselect_keeps_status``; False: any SELECT of a DF clears it).
  Names in ``mf_names`` (a card manager's AID) make the MF level current again.
  SELECT with P2=00 returns the FCI the profile gave the file, if any.
* READ BINARY reads transparent EFs: 15-bit offset or short-EF form, returns
  ``min(Ne, size - offset)`` bytes, offset at or past the end gives 6B00.
  READ RECORD, GET DATA, GET CHALLENGE and INTERNAL AUTHENTICATE are in
  :mod:`jpki_sim.card.commands`.
* PINs follow the one retry-counter rule of :mod:`jpki_sim.card.pins`: the try
  is spent and saved **before** the comparison. An empty VERIFY always reports
  ``63Cx`` (never "already verified"). Wrong PIN ``63Cx`` with x the tries
  left, blocked ``6984``.
* Power-off and power-on clear the volatile state (current DF and EF, security
  status); a warm reset does too unless ``rules.reset_restarts`` is False.
* Any exception escaping a handler is answered ``6F00``; nothing ever escapes
  :meth:`Card.process`, and nothing of the command is logged (it may hold a PIN).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from jpki_sim.card import commands
from jpki_sim.card.files import (
    ALWAYS,
    Access,
    DedicatedFile,
    ElementaryFile,
    KeyEF,
    PinEF,
    RecordEF,
    TransparentEF,
)
from jpki_sim.card.pins import Attempt, RetryCounter
from jpki_sim.card.rules import DEFAULT_RULES, CardRules, ChallengeSource, system_random
from jpki_sim.iso7816 import ins as I
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError, MalformedApdu
from jpki_sim.iso7816.ins import INS, instruction_key
from jpki_sim.iso7816.sw import SW, pin_status_sw

log = logging.getLogger(__name__)

#: a command handler: (card, apdu) -> response data (SW 9000), or raises CardError
Handler = Callable[["Card", CommandApdu], bytes]
#: how P2 of VERIFY-like commands (and a profile's own key commands) names an EF
ReferenceRule = Callable[["Card", int], ElementaryFile]

_OK = SW.OK.to_bytes(2, "big")
#: the MF's file identifier (ISO 7816-4 5.3.1.1)
MF_FID = b"\x3f\x00"


def _sw_bytes(sw: SW) -> bytes:
    return sw.to_bytes(2, "big")


# every fixed answer of process(), encoded once
_CLA_NOT_SUPPORTED = _sw_bytes(SW.CLA_NOT_SUPPORTED)
_CHANNEL_NOT_SUPPORTED = _sw_bytes(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
_SM_NOT_SUPPORTED = _sw_bytes(SW.SECURE_MESSAGING_NOT_SUPPORTED)
_CHAINING_NOT_SUPPORTED = _sw_bytes(SW.COMMAND_CHAINING_NOT_SUPPORTED)
_INS_NOT_SUPPORTED = _sw_bytes(SW.INS_NOT_SUPPORTED)
_NO_PRECISE_DIAGNOSIS = _sw_bytes(SW.NO_PRECISE_DIAGNOSIS)
_SW_BYTES = {sw: _sw_bytes(sw) for sw in SW}


# ---------------------------------------------------------------- P2 reference rules


def by_current_ef(card: Card, p2: int) -> ElementaryFile:
    """JICSAP's rule: P2=80 is the current EF, ``80|SFI`` names an EF of the current DF."""
    df = card.current_df
    if p2 == I.P2_SPECIFIC_REFERENCE:
        if df is None or card.current_ef is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        return card.current_ef
    if I.P2_SPECIFIC_REFERENCE < p2 <= I.P2_SPECIFIC_REFERENCE | 0x1E:
        if df is None or (ef := df.by_sfi.get(p2 & I.SFI_BITS)) is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        return ef
    raise CardError(SW.INCORRECT_P1P2)


def by_reference_number(card: Card, p2: int) -> ElementaryFile:
    """ISO 7816-4's rule: ``P2 = 80 | n`` is PIN or key number n of the current DF."""
    if not p2 & I.P2_SPECIFIC_REFERENCE or p2 & 0x60:
        raise CardError(SW.INCORRECT_P1P2)
    df = card.current_df
    number = p2 & I.P2_REFERENCE_NUMBER_BITS
    if df is not None:
        for ef in df.files.values():
            if isinstance(ef, (PinEF, KeyEF)) and ef.reference == number:
                return ef
    raise CardError(SW.REFERENCE_DATA_NOT_FOUND)


# ---------------------------------------------------------------- the card


class Card:
    """An ISO 7816-4 card. :meth:`process` takes raw command bytes, returns the response."""

    def __init__(
        self,
        atr: bytes,
        applications: Iterable[DedicatedFile],
        *,
        instructions: Mapping[int, Handler] | None = None,
        references: ReferenceRule = by_current_ef,
        data_objects: Mapping[int, bytes] | None = None,
        data_objects_anywhere: Mapping[int, bytes] | None = None,
        sm_refused_sw: SW = SW.SECURE_MESSAGING_NOT_SUPPORTED,
        rules: CardRules = DEFAULT_RULES,
        random: ChallengeSource = system_random,
        mf_names: Iterable[bytes] = (),
    ) -> None:
        self._atr = atr
        self.applications: dict[bytes, DedicatedFile] = {}
        for df in applications:
            if df.aid in self.applications:
                raise ValueError(f"two applications with AID {df.aid.hex().upper()}")
            self.applications[df.aid] = df
        #: handlers by :func:`~jpki_sim.iso7816.ins.instruction_key`: the
        #: interindustry ones, then the profile's (added or in their place)
        self.instructions: dict[int, Handler] = {**ISO_INSTRUCTIONS, **(instructions or {})}
        self.references = references
        #: GET DATA objects answered at MF level (no application selected)
        self.data_objects = dict(data_objects or {})
        #: GET DATA objects answered whatever is selected
        self.data_objects_anywhere = dict(data_objects_anywhere or {})
        self.sm_refused = _SW_BYTES[sm_refused_sw]
        self.rules = rules
        #: where GET CHALLENGE's bytes come from (a CSPRNG unless a test seeds one)
        self.random = random
        #: DF names whose SELECT makes the MF level current again (no application)
        self.mf_names = frozenset(bytes(n) for n in mf_names)
        for name in self.mf_names:
            if name in self.applications:
                raise ValueError(f"{name.hex().upper()} is both an application and an MF name")
        self.current_df: DedicatedFile | None = None
        self.current_ef: ElementaryFile | None = None
        #: verified PINs, as (application AID, PIN FID)
        self.verified: set[tuple[bytes, int]] = set()
        #: the last GET CHALLENGE answer of this session (None after power events)
        self.last_challenge: bytes | None = None
        self.powered = True

    # ------------------------------------------------ power

    @property
    def atr(self) -> bytes:
        return self._atr

    def _clear_volatile(self) -> None:
        self.current_df = None
        self.current_ef = None
        self.verified.clear()
        self.last_challenge = None

    def power_on(self) -> bytes:
        self._clear_volatile()
        self.powered = True
        return self._atr

    def power_off(self) -> None:
        self._clear_volatile()
        self.powered = False

    def reset(self) -> bytes:
        """A warm reset: a restart as power-on, unless the card's rules say it never arrives."""
        if self.rules.reset_restarts or not self.powered:
            return self.power_on()
        return self._atr

    def enter_df(self, df: DedicatedFile | None) -> None:
        """Make ``df`` (None: the MF level) current, with the security-status rule."""
        if df is not self.current_df or not self.rules.reselect_keeps_status:
            self.verified.clear()
        self.current_df = df
        self.current_ef = None

    # ------------------------------------------------ dispatch

    def process(self, raw: bytes) -> bytes:
        """One command APDU in, one response APDU out. Never raises."""
        try:
            if len(raw) < 4:
                raise MalformedApdu("command shorter than a header")
            cla = raw[0]
            if cla == I.CLA_INTERINDUSTRY or cla == I.CLA_PROPRIETARY:
                # the plain classes (no channel, SM or chaining bits): the CLA byte is
                # its own group, straight to the table
                handler = self.instructions.get((cla << 8) | raw[1])
                if handler is None:
                    return _INS_NOT_SUPPORTED
                data = handler(self, CommandApdu.parse(raw))
                return data + _OK if data else _OK
            if cla == I.CLA_INVALID:
                return _CLA_NOT_SUPPORTED
            if cla & I.CLA_CHANNEL_BITS or cla & 0xC0 == I.CLA_FURTHER_INTERINDUSTRY:
                # channels 1-3, or 4-19 (further interindustry classes): only channel 0
                return _CHANNEL_NOT_SUPPORTED
            if cla & I.CLA_SECURE_MESSAGING_BITS:
                return _SM_NOT_SUPPORTED if raw[1] == INS.SELECT else self.sm_refused
            if cla & I.CLA_CHAINING_BIT:
                return _CHAINING_NOT_SUPPORTED
            group = cla & I.CLA_GROUP_BITS
            if group != I.CLA_INTERINDUSTRY and group != I.CLA_PROPRIETARY:
                return _CLA_NOT_SUPPORTED
            handler = self.instructions.get((group << 8) | raw[1])
            if handler is None:
                return _INS_NOT_SUPPORTED
            data = handler(self, CommandApdu.parse(raw))
            return data + _OK if data else _OK
        except CardError as exc:
            return _SW_BYTES.get(exc.sw) or exc.sw.to_bytes(2, "big")
        except Exception as exc:  # a bug must not take the card (or the bridge) down
            # only the header: the data may be a PIN
            header = bytes(raw[:4]).hex().upper()
            log.error("internal error on a command %s: %s", header, type(exc).__name__)
            return _NO_PRECISE_DIAGNOSIS

    # ------------------------------------------------ helpers for handlers

    def is_satisfied(self, rule: Access, df: DedicatedFile) -> bool:
        kind = rule.kind
        if kind == "always":
            return True
        if kind == "pin":
            verified = self.verified
            if verified:
                aid = df.aid
                for fid in rule.pins:  # a loop, not any(): on every protected read
                    if (aid, fid) in verified:
                        return True
        return False

    def require(self, rule: Access, df: DedicatedFile) -> None:
        if not self.is_satisfied(rule, df):
            raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)

    def referenced_key(self, p2: int) -> tuple[DedicatedFile, KeyEF]:
        """The key EF P2 names (6A88 when it names something else), with its DF."""
        ef = self.references(self, p2)
        if not isinstance(ef, KeyEF) or self.current_df is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        return self.current_df, ef

    def referenced_pin(self, p2: int) -> tuple[DedicatedFile, PinEF]:
        """The PIN EF P2 names (6A88 when it names something else), with its DF."""
        ef = self.references(self, p2)
        if not isinstance(ef, PinEF) or self.current_df is None:
            raise CardError(SW.REFERENCE_DATA_NOT_FOUND)
        return self.current_df, ef

    # ------------------------------------------------ introspection (shell, issuer)

    def find_pin(self, aid: bytes, fid: int) -> RetryCounter:
        ef = self.applications[aid].files[fid]
        if not isinstance(ef, PinEF):
            raise KeyError(f"{fid:04X} is not a PIN")
        return ef.pin


# ---------------------------------------------------------------- interindustry handlers


def select(card: Card, apdu: CommandApdu) -> bytes:
    p2 = apdu.p2
    if p2 & I.P2_SELECT_OCCURRENCE_BITS:
        raise CardError(SW.INCORRECT_P1P2)
    wants_data = (p2 & I.P2_SELECT_RETURN_BITS) != I.P2_SELECT_NO_DATA
    p1 = apdu.p1
    if p1 == I.P1_SELECT_BY_DF_NAME:
        if not 1 <= len(apdu.data) <= 16:
            raise CardError(SW.WRONG_LENGTH)
        df = card.applications.get(apdu.data)
        if df is None:
            if apdu.data in card.mf_names:
                card.enter_df(None)
                return b""
            raise CardError(SW.FILE_NOT_FOUND)
        card.enter_df(df)
        return (df.fci or b"") if wants_data else b""
    if p1 == I.P1_SELECT_EF_UNDER_DF:
        return _select_ef(card, apdu.data, wants_data)
    if p1 == I.P1_SELECT_MF_DF_EF:
        rules = card.rules
        if apdu.data:
            if apdu.data == MF_FID:
                raise CardError(rules.select_mf_by_fid)
            # another FID: an EF of the current DF, as with P1=02
            return _select_ef(card, apdu.data, wants_data)
        # ``00 A4 00 xx`` with no data: the MF. Refused after reset, by default a
        # no-op inside an application (the real card's answer, which changes nothing)
        if card.current_df is None:
            raise CardError(rules.select_mf_at_mf)
        if rules.select_mf_in_application is not None:
            raise CardError(rules.select_mf_in_application)
        return b""
    raise CardError(SW.INCORRECT_P1P2)


def _select_ef(card: Card, fid: bytes, wants_data: bool) -> bytes:
    """Make the EF ``fid`` of the current DF current; its FCI when asked."""
    if len(fid) != 2:
        raise CardError(SW.WRONG_LENGTH)
    if card.current_df is None:
        raise CardError(SW.FILE_NOT_FOUND)
    ef = card.current_df.files.get((fid[0] << 8) | fid[1])
    if ef is None:
        raise CardError(SW.FILE_NOT_FOUND)
    card.current_ef = ef
    return (ef.fci or b"") if wants_data else b""


def read_binary(card: Card, apdu: CommandApdu) -> bytes:
    if apdu.data or apdu.ne is None:
        raise CardError(SW.WRONG_LENGTH)
    p1 = apdu.p1
    if p1 & I.P1_READ_BINARY_SFI:
        if p1 & 0x60 or not p1 & I.SFI_BITS:
            raise CardError(SW.INCORRECT_P1P2)
        df = card.current_df
        ef = df.by_sfi.get(p1 & I.SFI_BITS) if df is not None else None
        if ef is None:
            raise CardError(SW.FILE_NOT_FOUND)
        offset = apdu.p2
    else:
        ef = card.current_ef
        if ef is None:
            raise CardError(SW.COMMAND_NOT_ALLOWED_NO_EF)
        offset = (p1 << 8) | apdu.p2
    df = card.current_df
    assert df is not None  # an EF is only ever current inside a DF
    rule = ef.read
    if rule is not ALWAYS and not card.is_satisfied(rule, df):
        raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
    if not isinstance(ef, TransparentEF):
        raise CardError(SW.COMMAND_INCOMPATIBLE_WITH_FILE)  # a record EF, key or PIN
    content = ef.content
    if offset >= len(content):
        raise CardError(SW.WRONG_PARAMETERS)
    card.current_ef = ef  # a short-EF read selects the EF, once it succeeds
    return content[offset : offset + apdu.ne]


def verify(card: Card, apdu: CommandApdu) -> bytes:
    if apdu.p1 != I.P1_VERIFY:
        raise CardError(SW.INCORRECT_P1P2)
    df, ef = card.referenced_pin(apdu.p2)
    pin = ef.pin
    if not apdu.data:
        # retry query: always 63Cx, even when verified (clients rely on it)
        raise CardError(pin_status_sw(pin.tries_left))
    if not pin.usable:
        raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
    key = (df.aid, ef.fid)
    outcome = pin.attempt(apdu.data)
    if outcome is Attempt.VERIFIED:
        card.verified.add(key)
        return b""
    card.verified.discard(key)
    if outcome is Attempt.UNUSABLE:  # another process blocked it meanwhile
        raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
    raise CardError(pin_status_sw(pin.tries_left))


def change_reference_data(card: Card, apdu: CommandApdu) -> bytes:
    if apdu.p1 != I.P1_CHANGE_NEW_ONLY:  # only "new value, old one verified before"
        raise CardError(SW.INCORRECT_P1P2)
    return change_verified_pin(card, apdu)


def change_verified_pin(card: Card, apdu: CommandApdu) -> bytes:
    """Give the PIN P2 names the value in the data, its current value verified before:
    6700 no data, 6984 blocked, 6982 not verified in this session, 6A80 a value of the
    wrong form. CHANGE REFERENCE DATA's rule, for a profile's own change commands too."""
    df, ef = card.referenced_pin(apdu.p2)
    if not apdu.data:
        raise CardError(SW.WRONG_LENGTH)
    if not ef.pin.usable:
        raise CardError(SW.REFERENCE_DATA_NOT_USABLE)
    if (df.aid, ef.fid) not in card.verified:
        raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)
    if not ef.pin.accepts(apdu.data):
        raise CardError(SW.WRONG_PARAMETERS_IN_DATA)
    ef.pin.change(apdu.data)
    return b""


def reset_retry_counter(card: Card, apdu: CommandApdu) -> bytes:
    # Only the issuer's terminal, after its own authentication, may reset a
    # counter; that authentication is not emulated, so the command is refused.
    raise CardError(SW.SECURITY_STATUS_NOT_SATISFIED)


#: the interindustry instructions every card has unless its profile replaces them
ISO_INSTRUCTIONS: dict[int, Handler] = {
    instruction_key(I.CLA_INTERINDUSTRY, ins): handler
    for ins, handler in (
        (INS.SELECT, select),
        (INS.READ_BINARY, read_binary),
        (INS.VERIFY, verify),
        (INS.CHANGE_REFERENCE_DATA, change_reference_data),
        (INS.RESET_RETRY_COUNTER, reset_retry_counter),
        (INS.READ_RECORD, commands.read_record),
        (INS.GET_DATA, commands.get_data),
        (INS.GET_CHALLENGE, commands.get_challenge),
        (INS.INTERNAL_AUTHENTICATE, commands.internal_authenticate),
    )
}

__all__ = [
    "ALWAYS",
    "Access",
    "Card",
    "CardRules",
    "DedicatedFile",
    "ElementaryFile",
    "Handler",
    "ISO_INSTRUCTIONS",
    "KeyEF",
    "PinEF",
    "RecordEF",
    "ReferenceRule",
    "TransparentEF",
    "by_current_ef",
    "by_reference_number",
    "change_verified_pin",
]
