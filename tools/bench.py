#!/usr/bin/env python3
"""Benchmark jpki-sim from a checkout: the same as ``jpki-sim bench`` (see docs/performance.md).

Works without installing the package: the checkout's ``src`` goes first on
the import path, so the code measured is the code next to this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
if (SRC / "jpki_sim").is_dir():
    sys.path.insert(0, str(SRC))

from jpki_sim.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
