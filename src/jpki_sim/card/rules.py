"""The choices a card makes where ISO 7816-4 leaves room: what a profile picks per card.

A :class:`CardRules` is handed to :class:`~jpki_sim.card.engine.Card` by the
profile that builds the card; the engine follows it and knows no card. The
defaults are those of JICSAP-family cards (the My Number card is one), each
with the reason in docs/protocol.md.

Random numbers for GET CHALLENGE come from a :data:`ChallengeSource`: the
operating system's CSPRNG by default (:func:`system_random`), or a seeded,
reproducible stream (:func:`seeded_random`) when a test asks for one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from jpki_sim.iso7816.sw import SW

#: n -> n random bytes (n is 1..256 for GET CHALLENGE)
ChallengeSource = Callable[[int], bytes]


def system_random(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(n)


def seeded_random(seed: int | bytes | str) -> ChallengeSource:
    """A reproducible source: SHA-256 over (seed, block counter), as a stream.

    The same seed gives the same bytes in the same order, so a test can state
    exact challenges; different seeds give unrelated streams. It never
    returns to an earlier position, so two draws of one stream only repeat by
    the chance SHA-256 outputs collide.
    """
    if isinstance(seed, int):
        key = seed.to_bytes((seed.bit_length() + 8) // 8, "big", signed=True)
    elif isinstance(seed, str):
        key = seed.encode()
    else:
        key = bytes(seed)
    key = hashlib.sha256(b"jpki-sim challenge seed\x00" + key).digest()
    buffer = bytearray()
    block = 0

    def draw(n: int) -> bytes:
        nonlocal block
        while len(buffer) < n:
            buffer.extend(hashlib.sha256(key + block.to_bytes(8, "big")).digest())
            block += 1
        out = bytes(buffer[:n])
        del buffer[:n]
        return out

    return draw


@dataclass(frozen=True, slots=True)
class CardRules:
    """How a card answers where the standard lets cards differ."""

    #: SELECT of the application that is already current keeps the security
    #: status; selecting another one clears it (JICSAP 5.1.3 rules 2 and 3).
    #: False: every SELECT of an application clears it.
    reselect_keeps_status: bool = True
    #: a warm reset restarts the card as power-on does (contact cards). False:
    #: the reset never reaches the chip, so nothing volatile changes (what a
    #: contactless reader's "reset" amounts to)
    reset_restarts: bool = True
    #: ``00 A4 00 00`` (select the MF) with no application current
    select_mf_at_mf: SW = SW.INCORRECT_P1P2
    #: ... and with an application current: None answers 9000 and changes nothing
    select_mf_in_application: SW | None = None
    #: SELECT with P1=00 naming 3F00 (the MF) by its file identifier
    select_mf_by_fid: SW = SW.FILE_NOT_FOUND
    #: GET CHALLENGE in extended form
    challenge_extended: SW = SW.CONDITIONS_OF_USE_NOT_SATISFIED
    #: the longest challenge GET CHALLENGE gives (short Le 00 = 256)
    challenge_max: int = 256
    #: GET DATA / READ RECORD / INTERNAL AUTHENTICATE whose Le is shorter than
    #: the answer: refused (the card does not say the length, as 6Cxx would)
    le_too_short: SW = SW.WRONG_LENGTH
    #: READ RECORD(S) ``P2 = xxxxx101`` (all records from P1 to the last)
    records_to_end: bool = True


#: ISO 7816-4 as JICSAP-family cards read it (the engine's default)
DEFAULT_RULES = CardRules()
