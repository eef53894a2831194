"""Regenerate the fixed card the golden shell scripts run against.

    python tests/shell_scripts/make_card.py

Writes tests/shell_scripts/card.json: the default test identity, issued on
2025-04-01 by a throwaway test CA (its directory is not kept: the card file
holds the CA certificates, which is all the card needs). The golden outputs
(*.out) depend on these exact bytes, so regenerate them afterwards with
``python -m pytest tests/test_shell_golden.py --update-golden``.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

from jpki_sim.issuer import counter as issuer
from jpki_sim.issuer.ca import TestCA
from jpki_sim.issuer.lifecycle import FixedClock
from jpki_sim.profiles.jpki.state import save

HERE = Path(__file__).parent
ISSUED = date(2025, 4, 1)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCA.open(Path(tmp) / "ca")
        state = issuer.issue_card(
            issuer.default_identity(), ISSUED, ca=ca, clock=FixedClock(ISSUED)
        )
    state.ca_dir = None
    state.security_code = "1234"
    save(state, HERE / "card.json")
    print(f"wrote {HERE / 'card.json'}")


if __name__ == "__main__":
    main()
