"""What the counter writes onto the chip besides the JPKI application.

The card serial (15 digits, unique among the cards of one test CA), the
issuing municipality, the ATR variant and token label a tester picked, the
共通AP's INTERNAL AUTHENTICATE key (a new RSA-2048 key per card, from the same
key source as the JPKI keys), and the four holder secrets with the PIN keys
each is written to. The MF level's CV certificates come from the test CV CA
with the 券面 applications (:mod:`jpki_sim.issuer.kenmen`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.card.pins import PinState
from jpki_sim.errors import UserError
from jpki_sim.issuer.keystock import private_pem
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki import municipality as towns
from jpki_sim.profiles.jpki.state import CardState, ChipInfo, Municipality

# ---------------------------------------------------------------- the chip's facts


def municipality(code: str | None, name: str | None = None) -> Municipality:
    """The issuing municipality: a known code names itself; another needs its name."""
    chosen = code or towns.DEFAULT_CODE
    try:
        towns.check_code(chosen)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    known = towns.name_of(chosen)
    if name is not None and not name.strip():
        raise UserError("the municipality's name is empty")
    if name is None and known is None:
        raise UserError(f"municipality {chosen} is not one jpki-sim knows by name: give its "
                        "name too (--municipality-name)")
    return Municipality(chosen, name if name is not None else known or "")


def check_variant(atr: str | None, token_label: str | None) -> tuple[str, str]:
    """The ATR variant (a name of the profile's, or the ATR in hex) and token label."""
    from jpki_sim.profiles.jpki.profile import PROFILE

    variant = atr or "contact"
    if variant not in jpki.ATRS:
        variant = PROFILE.atr(variant).hex().upper()  # UserError for neither name nor hex
    label = token_label or jpki.TOKEN_LABEL
    if label not in jpki.TOKEN_LABELS:
        raise UserError(f"token label must be one of {', '.join(jpki.TOKEN_LABELS)}, "
                        f"got {label!r}")
    return variant, label




def new_chip(
    ca: Any,
    issued: date,
    *,
    keys: Callable[[], rsa.RSAPrivateKey],
    town: Municipality,
    atr: str | None = None,
    token_label: str | None = None,
) -> ChipInfo:
    """The chip facts of a new card issued by ``ca`` (a TestCA) on ``issued``."""
    variant, label = check_variant(atr, token_label)
    return ChipInfo(
        serial=ca.allocate_card_serial(issued.isoformat()),
        municipality=town,
        atr=variant,
        token_label=label,
        internal_auth_key=private_pem(keys()).decode(),
    )


# ---------------------------------------------------------------- the four holder secrets


def pin_values(given: Mapping[str, str] | None) -> dict[str, str]:
    """PIN key values from what the holder chose: ``juki`` goes to both 001C keys.

    Values of the 照合番号 keys are ignored (the issuer derives them).

    A value for ``common`` alone (a card whose two keys were changed apart,
    renewed with both kept) wins over the shared one.
    """
    out = dict(jpki.DEFAULT_PINS)
    for name, value in (given or {}).items():
        if name in jpki.CODE_POLICIES:
            continue  # a 照合番号 is what the card face shows, not the holder's choice
        for key in jpki.HOLDER_SECRETS.get(name, (name,)):
            out[key] = value
    if given and "common" in given:
        out["common"] = given["common"]
    return out


def initial_pins(values: Mapping[str, str], *, auth: bool, sign: bool) -> dict[str, PinState]:
    """Full counters; a PIN whose certificate is absent is never set."""
    present = {"auth": auth, "sign": sign}
    pins: dict[str, PinState] = {}
    for name, policy in jpki.PIN_POLICIES.items():
        value = values[name] if present.get(name, True) else None
        pins[name] = PinState(value, policy.max_tries, policy.max_tries)
    return pins


def reset_keys(which: str) -> tuple[str, ...]:
    """The PIN keys the counter resets for holder secret, code (or key) ``which``."""
    if which in jpki.HOLDER_SECRETS:
        return jpki.HOLDER_SECRETS[which]
    if which in jpki.CODES:
        return jpki.CODES[which]
    if which in jpki.VERIFY_POLICIES:
        return (which,)
    raise UserError(f"no PIN called {which!r} ({', '.join([*jpki.HOLDER_SECRETS, *jpki.CODES])})")


def status(state: CardState) -> dict[str, Any]:
    """The chip's part of ``card status --json`` (``"chip"``)."""
    info = state.info
    return {
        "serial": info.serial,
        "municipality": {"code": info.municipality.code, "name": info.municipality.name},
        "expires": state.expires.isoformat(),
        "atr": info.atr,
        "token_label": info.token_label,
        "internal_auth_key": info.internal_auth_key is not None,
        "cv_certificates": sorted(f"{t:04X}" for t in info.cv_certificates),
        # the 券面 applications (helper EF 0003-0007, the surface AP) are on the card
        "kenmen": state.kenmen is not None,
    }
