"""The benchmark's measuring tools: figures and their statistics, settings, progress."""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jpki_sim.errors import JpkiSimError

FORMAT = "jpki-sim-bench"
VERSION = 1

#: the lock file the PC/SC tests take, so benchmarks and test runs take turns with the readers

# targets of issue 7 (ratios in one run, on one machine)
TARGET_SELECT_FID_PER_S = 50_000
TARGET_READ_BINARY_PER_S = 20_000
TARGET_SIGNATURE_RATIO = 1.2
TARGET_PCSC_RATIO = 0.8
TARGET_HELP_MS = 300
#: issue 13: issuing a card with every application within this factor of what issuing
#: cost before issues 12 and 13 (two key pairs and two certificates)
TARGET_ISSUE_RATIO = 1.5

#: single-APDU commands whose PC/SC rate is held to TARGET_PCSC_RATIO of the null card
PCSC_SIMPLE = ("select_fid", "select_aid", "read_binary_256", "empty_verify")

#: the dates the issuer tests use: a card issued here is inside its renewal window at RENEW_AT
ISSUED = date(2020, 8, 27)
RENEW_AT = date(2025, 2, 1)


# ---------------------------------------------------------------- statistics


class BenchError(JpkiSimError):
    """The card under test misbehaved or a step failed: one line, exit status 1."""



@dataclass
class Figure:
    """Samples of one measurement, in seconds per operation."""

    label: str
    samples: list[float] = field(default_factory=list)
    #: operations timed together in one sample (the sample is their mean)
    ops_per_sample: int = 1
    #: APDUs per operation (a whole-certificate read is several)
    apdus_per_op: int = 1

    def add(self, seconds: float, ops: int = 1) -> None:
        self.samples.append(seconds / ops)

    @property
    def median(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def rate(self) -> float:
        """Operations per second at the median."""
        m = self.median
        return 1.0 / m if m > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        s = self.samples
        return {
            "label": self.label,
            "unit": "s",
            "median": self.median,
            "p95": self.p95,
            "min": min(s) if s else None,
            "max": max(s) if s else None,
            "samples": len(s),
            "ops_per_sample": self.ops_per_sample,
            "apdus_per_op": self.apdus_per_op,
            "per_s": self.rate if s else None,
            "apdus_per_s": self.rate * self.apdus_per_op if s else None,
        }


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured sample)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def timed(fn: Callable[[], Any], n: int) -> float:
    """Seconds for ``n`` calls of ``fn``."""
    perf = time.perf_counter
    t0 = perf()
    for _ in range(n):
        fn()
    return perf() - t0


# ---------------------------------------------------------------- settings


@dataclass
class Settings:
    quick: bool
    runs: int
    #: APDUs per in-process sample
    batch_apdus: int
    #: APDUs per PC/SC sample
    pcsc_apdus: int
    signatures: int
    issues: int
    renewals: int
    batch_cards: int
    help_runs: int
    serve_runs: int
    sections: list[str]
    ports: list[int]
    pcsc_wait: float
    #: PC/SC samples per command
    pcsc_runs: int
    #: PC/SC: host the card under control (as serve does) or bare (the baseline)
    pcsc_control: bool = True
    #: the control section's rounds (served/bare samples per command)
    control_runs: int = 200
    #: the OCSP section's load generator: auto, wrk or processes
    ocsp_load: str = "auto"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        from jpki_sim.bench import SECTIONS

        quick = bool(args.quick)
        runs = args.runs if args.runs is not None else (5 if quick else 25)
        if runs < 1:
            from jpki_sim.errors import UserError

            raise UserError("--runs must be at least 1")
        cores = os.cpu_count() or 1
        batch = args.batch if args.batch is not None else (2 if quick else 4 * cores)
        if batch < 0:
            from jpki_sim.errors import UserError

            raise UserError("--batch must be 0 or more")
        sections = list(args.only or SECTIONS)
        if args.no_pcsc:
            sections = [s for s in sections if s not in ("pcsc", "control", "wholecard")]
        return cls(
            quick=quick,
            runs=runs,
            batch_apdus=200 if quick else 5000,
            pcsc_apdus=50 if quick else 400,
            signatures=10 if quick else 500,
            issues=2 if quick else 10,
            renewals=1 if quick else 5,
            batch_cards=batch,
            help_runs=3 if quick else 10,
            serve_runs=1 if quick else 5,
            sections=sections,
            ports=list(args.vpcd_port),
            pcsc_runs=runs if quick else 2 * runs,
            pcsc_wait=args.pcsc_wait if args.pcsc_wait is not None else (60.0 if quick else 600.0),
            pcsc_control=not getattr(args, "pcsc_bare", False),
            # the control layer's cost is a per cent or less: many rounds to resolve it
            control_runs=runs if quick else 8 * runs,
            ocsp_load=getattr(args, "ocsp_load", None) or "auto",
        )


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    versions: dict[str, str | None] = {}
    from importlib import metadata

    for dist in ("cryptography", "pyscard", "jpki-sim"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "loadavg_at_start": load,
        "versions": versions,
    }



# ---------------------------------------------------------------- progress display


class Progress:
    """rich progress bars on stderr when it is a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._cls = RichProgress
            self._columns = (TextColumn("{task.description:<34}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn())
            self._console = Console(stderr=True)

    def task(self, label: str, total: int) -> Any:
        if not hasattr(self, "_cls"):
            return None
        if self._progress is None:
            self._progress = self._cls(*self._columns, console=self._console, transient=True)
            self._progress.start()
        return self._progress.add_task(label, total=total)

    def advance(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task)

    def done(self, task: Any) -> None:
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)
            self._progress.stop()
            self._progress = None

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
