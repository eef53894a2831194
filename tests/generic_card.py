"""A card profile that is not JPKI: a generic ISO 7816 card of the tests' own.

It proves the profile seam (docs/architecture.md, "Adding a card profile"): one
application, one PIN addressed by P2=81 (ISO 7816-4's "specific reference
number 1", no SELECT of a PIN EF), one EF that needs it, one free EF, and one
instruction of its own (``80 EE``: the data back, reversed, once the PIN is
verified). Everything the project does with a card (serve, apdu, shell, vectors,
card issue, the pytest plugin) gets it from the registry, with no engine change.

Registered from the tests with ``registry.register(PROFILE)``, and for
subprocesses through ``JPKI_SIM_PROFILES=generic_card:PROFILE`` with this
folder on PYTHONPATH.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from typing import Any

from jpki_sim.card.engine import Card, by_reference_number
from jpki_sim.card.files import ALWAYS, DedicatedFile, PinEF, TransparentEF, pin_verified
from jpki_sim.card.pins import PinState, RetryCounter
from jpki_sim.card.store import CardStore
from jpki_sim.errors import CardFileError
from jpki_sim.iso7816.apdu import CommandApdu
from jpki_sim.iso7816.errors import CardError
from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.base import FileRef, PinPolicy, PinRef, Profile
from jpki_sim.shell.registry import Outcome, ShellArgParser, VerbSet

NAME = "generic"
AID = bytes.fromhex("F06A73696D01")  # F0: a proprietary, unregistered AID
ATR = bytes.fromhex("3B8080010101")
EF_SECRET = 0x0001
EF_PUBLIC = 0x0002
EF_PIN = 0x0010
PIN_REFERENCE = 1  # VERIFY 00 20 00 81
INS_MIRROR = 0xEE
SECRET = b"generic card secret"
PUBLIC = b"hello from a card that is not JPKI"
DEFAULT_PIN = "123456"
POLICY = PinPolicy("user PIN", 6, 8, 3, r"[0-9]{6,8}", "6 to 8 digits")


@dataclass
class GenericState:
    pins: dict[str, PinState]
    secret: bytes


class GenericCodec:
    profile = NAME

    def decode(self, doc: dict[str, Any]) -> GenericState:
        try:
            pin = doc["pins"]["user"]
            value, tries, most = pin["value"], pin["tries_left"], pin["max_tries"]
            secret = bytes.fromhex(doc["secret"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CardFileError(f"not a generic card ({exc})") from None
        if not isinstance(value, str) or not isinstance(tries, int) or not 0 <= tries <= most:
            raise CardFileError("the user PIN is malformed")
        return GenericState({"user": PinState(value, tries, most)}, secret)

    def encode(self, state: GenericState) -> dict[str, Any]:
        return {"pins": {"user": state.pins["user"].to_json()}, "secret": state.secret.hex()}


def new_state(pin: str = DEFAULT_PIN, tries: int = 3) -> GenericState:
    return GenericState({"user": PinState(pin, tries, POLICY.max_tries)}, SECRET)


def mirror(card: Card, apdu: CommandApdu) -> bytes:
    """``80 EE 00 00 Lc data Le``: the data reversed, with the PIN verified."""
    if apdu.p1p2 != 0:
        raise CardError(SW.INCORRECT_P1P2)
    if not apdu.data:
        raise CardError(SW.WRONG_LENGTH)
    df = card.current_df
    if df is None:
        raise CardError(SW.CONDITIONS_OF_USE_NOT_SATISFIED)
    card.require(pin_verified(EF_PIN), df)
    return apdu.data[::-1]


def build(store: CardStore[GenericState], *, atr: bytes | None = None) -> Card:
    counter = RetryCounter(lambda: store.state.pins["user"], store,
                           check_format=POLICY.accepts, name="user")
    app = DedicatedFile(AID, "app", [
        TransparentEF(EF_SECRET, store.state.secret, read=pin_verified(EF_PIN)),
        TransparentEF(EF_PUBLIC, PUBLIC, read=ALWAYS),
        PinEF(EF_PIN, counter, reference=PIN_REFERENCE),
    ])
    return Card(
        atr or ATR,
        [app],
        instructions={instruction_key(CLA_PROPRIETARY, INS_MIRROR): mirror},
        references=by_reference_number,
    )


# ---------------------------------------------------------------- upper-layer parts (hooks)


class Presets:
    """The profile's named starting cards."""

    _TRIES = {"default": 3, "blocked": 0}

    def names(self) -> list[str]:
        return list(self._TRIES)

    def describe(self, name: str) -> str:
        return f"a generic card, user PIN with {self._TRIES[name]} tries"

    def reference_date(self, name: str) -> date:
        return date(2026, 1, 1)

    def state(self, name: str) -> GenericState:
        return copy.deepcopy(new_state(tries=self._TRIES[name]))

    def pin_value(self, pin: str) -> str:
        return DEFAULT_PIN


PRESETS = Presets()


def presets() -> Presets:
    return PRESETS


def provision(**_options: Any) -> GenericState:
    return new_state()


VERBS = VerbSet()


def _mirror_setup(p: ShellArgParser) -> None:
    p.add_argument("text", help="text the card sends back reversed")


@VERBS.command("mirror", "send text to the card's own instruction 80 EE (PIN needed)",
               setup=_mirror_setup)
def do_mirror(shell: Any, args: Any) -> Outcome:
    data = args.text.encode()
    apdu = CommandApdu(CLA_PROPRIETARY, INS_MIRROR, 0, 0, data, 256)
    resp = shell.client.transmit_apdu(apdu)
    text = resp.data.decode("utf-8", "replace")
    shell.print(f"mirrored: {text}")
    return Outcome(resp.sw, text)


PROFILE = Profile(
    name=NAME,
    summary="a generic ISO 7816 test card: one application, one PIN by P2=81, one own INS",
    atrs={"default": ATR},
    applications={"app": AID},
    state=GenericCodec(),
    build=build,
    pins={"user": PinRef("user", "app", EF_PIN, POLICY, p2=0x80 | PIN_REFERENCE, select=False)},
    files={"secret": FileRef("secret", "app", EF_SECRET),
           "public": FileRef("public", "app", EF_PUBLIC)},
    sw_meanings={},
    hooks={
        "presets": "generic_card:presets",
        "provision": "generic_card:provision",
        "shell": "generic_card",
    },
)
