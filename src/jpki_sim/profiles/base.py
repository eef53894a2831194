"""What a card profile is: the whole definition of one kind of card.

A :class:`Profile` is mostly data: its applications and files by name, its
ATRs, its PINs (where they live and how commands address them), the status
words of its own, which commands carry secrets, its state schema, and the
function that assembles the engine card from a stored state.

Parts that belong to higher layers (issuing a card with a test CA, the shell's
verbs for it, named starting states for vectors and fixtures, the checks its
vectors use) are named as **hooks**: ``"module:attribute"`` strings, resolved
only when a front end asks (:meth:`Profile.hook`). That keeps every import of
the profiles layer pointing down, as entry points do for plug-ins, while one
object still says everything about the card. docs/architecture.md walks
through adding a profile.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from jpki_sim.errors import UserError
from jpki_sim.iso7816.client import CHANGE_REFERENCE_DATA, CardClient, PinAddress
from jpki_sim.iso7816.ins import CLA_INTERINDUSTRY, INS, instruction_key

if TYPE_CHECKING:
    from jpki_sim.card.engine import Card
    from jpki_sim.card.store import StateCodec
    from jpki_sim.iso7816.transport import Transport

#: what VERIFY's P2 is, per convention
P2_CURRENT_EF = 0x80


@dataclass(frozen=True)
class PinPolicy:
    """The form and retry limit of one PIN."""

    label: str
    min_len: int
    max_len: int
    max_tries: int
    pattern: str
    #: how to say the form to a user ("exactly 4 digits")
    form: str = ""

    def check(self, pin: str) -> None:
        """Raise ValueError with a user-facing message when ``pin`` has the wrong form."""
        if not re.fullmatch(self.pattern, pin) or not self.min_len <= len(pin) <= self.max_len:
            raise ValueError(f"{self.label} must be {self.describe()}")

    def accepts(self, raw: bytes) -> bool:
        try:
            self.check(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return False
        return True

    def describe(self) -> str:
        if self.form:
            return self.form
        if self.min_len == self.max_len:
            return f"exactly {self.min_len} characters"
        return f"{self.min_len} to {self.max_len} characters"


@dataclass(frozen=True)
class PinRef:
    """Where a PIN lives and how a client addresses it.

    ``select`` True: the client SELECTs the PIN's EF, then sends ``p2``
    (typically 80, "the current EF"); False: ``p2`` names it alone. ``change``
    is the command (CLA, INS, P1) that sets a new value.
    """

    name: str
    application: str
    fid: int
    policy: PinPolicy
    p2: int = P2_CURRENT_EF
    select: bool = True
    change: tuple[int, int, int] = CHANGE_REFERENCE_DATA


@dataclass(frozen=True)
class FileRef:
    """A named EF of a named application, for the shell and traces."""

    name: str
    application: str
    fid: int


class Presets(Protocol):
    """A profile's named starting cards (its ``presets`` hook returns one).

    Vectors name the preset they start from; the pytest plugin's fixtures make
    fresh cards of them.
    """

    def names(self) -> list[str]: ...

    def describe(self, name: str) -> str: ...

    def reference_date(self, name: str) -> date:
        """The date vectors of this preset play at unless they name one."""
        ...

    def state(self, name: str) -> Any:
        """A fresh private copy of the preset's card state."""
        ...

    def pin_value(self, pin: str) -> str:
        """The value the presets give PIN ``pin`` (``{pin:NAME}`` of a PIN never set)."""
        ...


#: the interindustry instructions whose data are secrets (PINs): masked in every trace and log
ISO_SECRET_INSTRUCTIONS = frozenset(
    instruction_key(CLA_INTERINDUSTRY, ins)
    for ins in (INS.VERIFY, INS.CHANGE_REFERENCE_DATA, INS.RESET_RETRY_COUNTER)
)


@dataclass(frozen=True)
class Profile:
    """One kind of card, completely."""

    name: str
    summary: str
    #: named ATRs; the first is the card's default
    atrs: Mapping[str, bytes]
    #: application name -> AID
    applications: Mapping[str, bytes]
    #: the state schema of its card files
    state: StateCodec[Any]
    #: assemble the engine card for a stored state (changes are written through the store)
    build: Callable[..., Card]
    pins: Mapping[str, PinRef] = field(default_factory=dict)
    #: EFs by name (for ``select`` and completion in the shell)
    files: Mapping[str, FileRef] = field(default_factory=dict)
    #: status words of its own, with their meanings
    sw_meanings: Mapping[int, str] = field(default_factory=dict)
    #: instruction keys (class group, INS) whose data carry secrets, besides ISO's
    secret_instructions: frozenset[int] = frozenset()
    #: upper-layer parts, as "module:attribute" (see the module docstring). Known names:
    #: "client" (the client class for the shell), "provision" (issue a new card),
    #: "presets" (named starting states), "shell" (a module registering verbs),
    #: "vector_checks" (a module registering vector checks)
    hooks: Mapping[str, str] = field(default_factory=dict)

    @property
    def default_atr(self) -> bytes:
        return next(iter(self.atrs.values()))

    def atr(self, name_or_hex: str | None) -> bytes:
        """An ATR by variant name or as hex (any bytes a tester wants); None: the default."""
        if name_or_hex is None:
            return self.default_atr
        if name_or_hex in self.atrs:
            return self.atrs[name_or_hex]
        try:
            raw = bytes.fromhex(name_or_hex.replace(":", "").replace(" ", ""))
        except ValueError:
            raise UserError(
                f"no ATR {name_or_hex!r} for the {self.name} card: one of "
                f"{', '.join(self.atrs)}, or hex bytes"
            ) from None
        if not 2 <= len(raw) <= 33:
            raise UserError(f"an ATR has 2 to 33 bytes, not {len(raw)}")
        return raw

    def is_secret(self, command: bytes) -> bool:
        """True when the data of this command carry a secret (a PIN) and must be masked."""
        if len(command) < 5:
            return False
        key = instruction_key(command[0] & 0x80, command[1])
        return key in ISO_SECRET_INSTRUCTIONS or key in self.secret_instructions

    def application_name(self, aid: bytes | None) -> str | None:
        if aid is None:
            return None
        for name, value in self.applications.items():
            if value == aid:
                return name
        return aid.hex().upper()

    def pin(self, name: str) -> PinRef:
        try:
            return self.pins[name]
        except KeyError:
            raise UserError(
                f"the {self.name} card has no PIN {name!r} (its PINs: {', '.join(self.pins)})"
            ) from None

    def pin_addresses(self) -> dict[str, PinAddress]:
        """Where each PIN is, for a client: its application's AID, its EF, its P2."""
        return {
            name: PinAddress(
                self.applications[ref.application], ref.fid, ref.policy.max_tries, ref.p2,
                ref.select, ref.change,
            )
            for name, ref in self.pins.items()
        }

    def client(self, transport: Transport, **options: Any) -> CardClient:
        """A client of this card: the profile's own (``client`` hook) or a generic one."""
        if self.has_hook("client"):
            made: CardClient = self.hook("client")(transport, **options)
            return made
        return CardClient(
            transport, applications=self.applications, pins=self.pin_addresses(), **options
        )

    def has_hook(self, name: str) -> bool:
        return name in self.hooks

    def hook(self, name: str) -> Any:
        """Resolve an upper-layer part named in :attr:`hooks` (UserError when it has none)."""
        target = self.hooks.get(name)
        if target is None:
            raise UserError(f"the {self.name} card profile has no {name} part")
        module, _, attr = target.partition(":")
        obj: Any = importlib.import_module(module)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
        return obj


