"""The card's file system: access rules, elementary files, dedicated files (applications).

What a card holds is plain data built by a profile; the engine
(:mod:`jpki_sim.card.engine`) walks it. Building a DF refuses two EFs with one
file identifier or one short EF identifier, so a profile mistake shows when the
card is built, not as a wrong answer later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jpki_sim.card.pins import RetryCounter

#: short EF identifiers are 1..30 (ISO 7816-4 5.3.1.1)
SFI_MIN = 0x01
SFI_MAX = 0x1E


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
    """An EF of a DF. ``sfi`` is its short EF identifier (None: has none).

    ``fci`` is what SELECT with P2=00 returns for it (None: nothing).
    """

    __slots__ = ("fid", "read", "sfi", "fci")

    def __init__(
        self,
        fid: int,
        *,
        read: Access = NEVER,
        sfi: int | None = None,
        fci: bytes | None = None,
    ) -> None:
        self.fid = fid
        self.read = read
        self.sfi = sfi if sfi is not None else (fid if SFI_MIN <= fid <= SFI_MAX else None)
        self.fci = fci


class TransparentEF(ElementaryFile):
    """A transparent (binary) EF. ``capacity`` pads the content with ``filler``.

    The padded content is built once here, so READ BINARY copies only the
    bytes it returns.
    """

    __slots__ = ("content",)

    def __init__(
        self,
        fid: int,
        content: bytes,
        *,
        read: Access = ALWAYS,
        capacity: int | None = None,
        filler: int = 0xFF,
        sfi: int | None = None,
        fci: bytes | None = None,
    ) -> None:
        super().__init__(fid, read=read, sfi=sfi, fci=fci)
        size = max(capacity or 0, len(content))
        self.content = bytes(content) + bytes((filler,)) * (size - len(content))

    @property
    def size(self) -> int:
        return len(self.content)


class RecordEF(ElementaryFile):
    """A record-structured EF (linear, variable-size records), read with READ RECORD.

    Records are numbered from 1. An empty record is kept as ``b""`` (it exists
    and reads as no data).
    """

    __slots__ = ("records",)

    def __init__(
        self,
        fid: int,
        records: Sequence[bytes],
        *,
        read: Access = ALWAYS,
        sfi: int | None = None,
        fci: bytes | None = None,
    ) -> None:
        super().__init__(fid, read=read, sfi=sfi, fci=fci)
        self.records = tuple(bytes(r) for r in records)

    def record(self, number: int) -> bytes | None:
        """Record ``number`` (1-based), None when the EF has no such record."""
        if 1 <= number <= len(self.records):
            return self.records[number - 1]
        return None


#: what a key does for INTERNAL AUTHENTICATE: the challenge in, the answer out
#: (it may raise CardError, e.g. 6700 for a challenge it does not take)
Authenticator = Callable[[bytes], bytes]


class PinEF(ElementaryFile):
    """An internal EF holding a PIN. Never readable.

    ``reference`` is the PIN's reference number for cards that address PINs by
    number in P2 (ISO 7816-4: ``P2 = 80 | n``); None for cards that address the
    current EF.
    """

    __slots__ = ("pin", "reference")

    def __init__(
        self, fid: int, pin: RetryCounter, *, sfi: int | None = None, reference: int | None = None
    ) -> None:
        super().__init__(fid, read=NEVER, sfi=sfi)
        self.pin = pin
        self.reference = reference


class KeyEF(ElementaryFile):
    """An internal EF holding a private key. Never readable; ``use`` gates its use.

    ``key`` is whatever the profile's handlers understand; the engine never
    looks inside it. ``authenticate`` is what the key answers to INTERNAL
    AUTHENTICATE (None: the key does not take that command); the profile plugs
    it in, the engine only calls it.
    """

    __slots__ = ("key", "use", "reference", "authenticate")

    def __init__(
        self,
        fid: int,
        key: Any,
        *,
        use: Access,
        sfi: int | None = None,
        reference: int | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        super().__init__(fid, read=NEVER, sfi=sfi)
        self.key = key
        self.use = use
        self.reference = reference
        self.authenticate = authenticate


class DedicatedFile:
    """An application DF with its EFs, selected by AID. ``fci``: SELECT P2=00's answer."""

    def __init__(
        self,
        aid: bytes,
        name: str,
        files: Iterable[ElementaryFile],
        *,
        fci: bytes | None = None,
    ) -> None:
        if not 1 <= len(aid) <= 16:
            raise ValueError(f"application {name}: an AID has 1 to 16 bytes, not {len(aid)}")
        self.aid = bytes(aid)
        self.name = name
        self.fci = fci
        self.files: dict[int, ElementaryFile] = {}
        self.by_sfi: dict[int, ElementaryFile] = {}
        for ef in files:
            if ef.fid in self.files:
                raise ValueError(f"application {name}: two EFs with file identifier {ef.fid:04X}")
            self.files[ef.fid] = ef
            if ef.sfi is not None:
                if ef.sfi in self.by_sfi:
                    raise ValueError(
                        f"application {name}: two EFs with short identifier {ef.sfi:02X}"
                    )
                self.by_sfi[ef.sfi] = ef
