"""The benchmark: the emulator measured against references taken in the same run.

A front end (``jpki-sim bench``, ``tools/bench.py``); no library module imports
it. This package's top level is standard-library only, so the CLI can name the
sections without loading the measuring code.
"""

#: sections of the benchmark, in the order they run
SECTIONS = ("inprocess", "signature", "issuance", "startup", "pcsc", "control", "wholecard",
            "ocsp")
