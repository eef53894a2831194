"""``jpki-sim apdu``: send APDUs to a card in one session and print the exchanges."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jpki_sim.cli.common import add_profile_argument


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "apdu",
        help="send APDUs to an emulated card (or a PC/SC reader) and print the answers",
        description=(
            "Power the card on, send each APDU in order in one session, and print every "
            "exchange: command, response data, status word and its meaning. PIN counter "
            "changes are saved to the card file as they happen. Hex may contain spaces "
            "or colons (quote it)."
        ),
        epilog=(
            "example: jpki-sim apdu --card card.json 00A4040C0AD392F000260100000001 "
            "'00 A4 02 0C 02 00 0A' 00B0000004"
        ),
    )
    p.add_argument("apdus", nargs="+", metavar="HEX", help="command APDU in hex")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--card", metavar="FILE", help="card file (default: the default card)")
    where.add_argument("--reader", metavar="NAME", help="a PC/SC reader instead of a card file")
    add_profile_argument(p)
    p.add_argument("--json", action="store_true", help="one JSON object per exchange")
    p.add_argument("--show-pins", action="store_true",
                   help="print PIN data as sent (hidden as 2A bytes by default)")
    p.add_argument(
        "--data-out",
        metavar="FILE",
        help="also write the response data of all exchanges, concatenated, to FILE "
        "(e.g. a certificate read in chunks)",
    )
    p.add_argument(
        "--stop-on-error",
        action="store_true",
        help="stop at the first status word other than 9000/61xx (exit 1)",
    )
    p.set_defaults(func=run)


def _open(args: argparse.Namespace) -> Any:
    if args.reader:
        from jpki_sim.transport.pcsc import PcscTransport

        return PcscTransport(args.reader)
    from jpki_sim.cli.common import open_card
    from jpki_sim.transport.inprocess import InProcessTransport

    profile, store = open_card(args.card, args.profile)
    return InProcessTransport(profile.build(store), name=str(store.path))


def run(args: argparse.Namespace) -> int:
    from jpki_sim.errors import UserError
    from jpki_sim.iso7816.apdu import CommandApdu, parse_hex
    from jpki_sim.iso7816.errors import MalformedApdu
    from jpki_sim.iso7816.sw import describe, is_success

    commands: list[bytes] = []
    for text in args.apdus:
        try:
            raw = parse_hex(text)
            CommandApdu.parse(raw)
        except (ValueError, MalformedApdu) as exc:
            raise UserError(f"bad APDU {text!r}: {exc}") from None
        commands.append(raw)

    from jpki_sim.trace.redact import redact_command

    transport = _open(args)
    status = 0
    collected = bytearray()
    try:
        for raw in commands:
            resp = transport.transmit(raw)
            data, sw = resp[:-2], int.from_bytes(resp[-2:], "big")
            collected += data
            shown = raw if args.show_pins else redact_command(raw)[0]
            if args.json:
                print(
                    json.dumps(
                        {
                            "command": shown.hex().upper(),
                            "data": data.hex().upper(),
                            "sw": f"{sw:04X}",
                        }
                    ),
                    flush=True,
                )
            else:
                print(f"> {shown.hex(' ').upper()}")
                for i in range(0, len(data), 32):
                    print(f"< {data[i : i + 32].hex(' ').upper()}")
                print(f"< {describe(sw)}", flush=True)
            if not is_success(sw) and args.stop_on_error:
                status = 1
                break
    finally:
        transport.close()
    if args.data_out:
        try:
            with open(args.data_out, "wb") as f:
                f.write(collected)
        except OSError as exc:
            raise UserError(f"cannot write {args.data_out}: {exc.strerror}") from None
    return status
