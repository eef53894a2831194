"""Admin verbs: what only an emulated card allows (power, the card clock, PIN counters).

They act on the card state through the one retry-counter rule
(:class:`jpki_sim.card.pins.RetryCounter`), as the issuer's counter terminal
would; the chip sees the change at once, since it reads the same state.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import TYPE_CHECKING

from jpki_sim.shell import render
from jpki_sim.shell.registry import Outcome, ShellArgParser, ShellError, command
from jpki_sim.shell.verbs import pin_ref

if TYPE_CHECKING:
    from jpki_sim.shell.session import Shell


def _pin_names(shell: Shell) -> list[str]:
    return list(shell.profile.pins)


# ================================================================ admin verbs (emulated)


def _power_setup(p: ShellArgParser) -> None:
    p.add_argument("state", choices=("on", "off"))


@command("power", "power the emulated card off or on (a cold reset)", card=False, admin=True,
         setup=_power_setup, positional=[("on", "off")])
def do_power(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    target = shell.target
    if args.state == "off":
        target.power_off()
        shell.client.forget()
        if shell.trace is not None:
            shell.trace.power_off()
        shell.print("card powered off")
        return None
    atr = target.power_on()
    shell.client.forget()
    if shell.trace is not None:
        shell.trace.reset(atr, "cold")
    shell.print(f"card powered on, ATR {render.spaced(atr)}")
    return Outcome(None, atr.hex().upper())


def _clock_setup(p: ShellArgParser) -> None:
    p.add_argument("action", nargs="?", choices=("set", "now"))
    p.add_argument("date", nargs="?", help="YYYY-MM-DD")


@command("clock", "show the card clock, 'clock set YYYY-MM-DD', or 'clock now'", card=False,
         setup=_clock_setup, positional=[("set", "now")])
def do_clock(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    target = shell.target
    if args.action == "set":
        if not args.date:
            raise ShellError("clock set: a date YYYY-MM-DD is needed")
        try:
            target.clock_date = date.fromisoformat(args.date)
        except ValueError:
            raise ShellError(f"clock set: {args.date!r} is not a YYYY-MM-DD date") from None
    elif args.action == "now":
        target.clock_date = None
    elif args.date:
        raise ShellError("clock: use 'clock set YYYY-MM-DD'")
    day = target.today().isoformat()
    shell.print(f"card clock {day}" + ("" if target.clock_date else " (machine clock)"))
    return Outcome(None, day)


def _pin_admin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", help="a PIN of the card")


@command("block-pin", "set a PIN's retry counter to 0 (emulated card)", card=False, admin=True,
         setup=_pin_admin_setup, positional=[_pin_names])
def do_block_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    pin_ref(shell, args.which)
    shell.target.pin(args.which).block()
    shell.client.view.verified.discard(args.which)
    shell.print(f"{args.which} PIN blocked (tries left: 0)")
    return None


def _reset_pin_setup(p: ShellArgParser) -> None:
    p.add_argument("which", help="a PIN of the card")
    p.add_argument("new", nargs="?", help="a new PIN value (default: keep the old one)")


@command("reset-pin", "unblock a PIN at the counter: tries back to max, optionally a new value",
         card=False, admin=True, setup=_reset_pin_setup, positional=[_pin_names])
def do_reset_pin(shell: Shell, args: argparse.Namespace) -> Outcome | None:
    policy = pin_ref(shell, args.which).policy
    if args.new is not None:
        try:
            policy.check(args.new)
        except ValueError as exc:
            raise ShellError(str(exc)) from None
    shell.target.reset_pin(args.which, args.new)
    pin = shell.target.pin(args.which)
    shell.print(f"{args.which} PIN reset (tries left: {pin.tries_left})"
                + (", new value set" if args.new else ""))
    return None
