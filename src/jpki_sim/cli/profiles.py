"""``jpki-sim profiles``: the kinds of card this installation knows."""

from __future__ import annotations

import argparse
import json
from typing import Any


def configure(sub: Any) -> None:
    p = sub.add_parser(
        "profiles",
        help="list the card profiles (kinds of card) serve, shell, vectors and card issue know",
        description=(
            "List the registered card profiles: the built-in jpki, those of installed "
            "packages (entry points 'jpki_sim.profiles'), and those named in "
            "JPKI_SIM_PROFILES=module:ATTR,... Each with its applications, PINs and ATRs."
        ),
    )
    p.add_argument("--json", action="store_true", help="print the profiles as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jpki_sim.profiles import registry

    rows: list[dict[str, Any]] = []
    for name in registry.names():
        profile = registry.get(name)
        rows.append({
            "name": profile.name,
            "summary": profile.summary,
            "applications": {n: aid.hex().upper() for n, aid in profile.applications.items()},
            "pins": {n: {"application": r.application, "fid": f"{r.fid:04X}",
                         "p2": f"{r.p2:02X}", "form": r.policy.describe(),
                         "max_tries": r.policy.max_tries} for n, r in profile.pins.items()},
            "atrs": {n: atr.hex().upper() for n, atr in profile.atrs.items()},
            "parts": sorted(profile.hooks),
        })
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    for row in rows:
        print(f"{row['name']}: {row['summary']}")
        for n, aid in row["applications"].items():
            print(f"  application {n:<8} {aid}")
        for n, pin in row["pins"].items():
            print(f"  PIN {n:<8} {pin['application']} EF {pin['fid']} P2 {pin['p2']}, "
                  f"{pin['form']}, {pin['max_tries']} tries")
        for n, atr in row["atrs"].items():
            print(f"  ATR {n:<8} {atr}")
    return 0
