"""Play vectors against a target and say, step by step, where a card differs.

:func:`play` runs one vector; :func:`run_suite` runs many and returns a
:class:`Report` (its :meth:`Report.summary` is the ``N passed, N failed`` line).
A failing vector stops at its first failing step; the diff shows the command,
what was expected (``-``) and what the card answered (``+``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jpki_sim.errors import JpkiSimError
from jpki_sim.vectors import checks
from jpki_sim.vectors.checks import CheckContext
from jpki_sim.vectors.model import TEMPLATE, Admin, Assert, Comment, Power, Vector, Xfer
from jpki_sim.vectors.targets import Target, TargetError, wrong_pin

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
#: shown data is cut after this many bytes in diffs
SHOW_BYTES = 48


@dataclass
class VectorResult:
    vector: Vector
    status: str
    reason: str = ""
    #: the diff of the failing step (expected ``-``, actual ``+``)
    diff: list[str] = field(default_factory=list)
    #: steps played (the failing one included)
    steps: int = 0
    duration: float = 0.0

    @property
    def id(self) -> str:
        return self.vector.id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.vector.id,
            "feature": self.vector.feature,
            "purpose": self.vector.purpose,
            "profile": self.vector.profile,
            "status": self.status,
            "reason": self.reason,
            "diff": self.diff,
            "steps": self.steps,
            "duration": round(self.duration, 6),
            "where": self.vector.where,
        }


@dataclass
class Report:
    target: str
    results: list[VectorResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def passed(self) -> int:
        return self.count(PASSED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        """``N passed, N failed`` (and ``, N skipped`` when any were)."""
        text = f"{self.passed} passed, {self.failed} failed"
        if self.skipped:
            text += f", {self.skipped} skipped"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "summary": {"passed": self.passed, "failed": self.failed, "skipped": self.skipped},
            "results": [r.to_json() for r in self.results],
        }


# ---------------------------------------------------------------- one vector


def expand_command(command: str, pin: Callable[[str], str | None]) -> bytes:
    """Command hex with ``{pin:NAME}`` / ``{wrong-pin:NAME}`` replaced by Lc + ASCII PIN."""

    def sub(m: re.Match[str]) -> str:
        value = pin(m.group(2))
        if value is None:
            raise TargetError(f"the value of the {m.group(2)} PIN is not known")
        if m.group(1) == "wrong-pin":
            value = wrong_pin(value)
        raw = value.encode("ascii")
        return f"{len(raw):02X}{raw.hex().upper()}"

    return bytes.fromhex(TEMPLATE.sub(sub, command))


def show(data: bytes) -> str:
    if not data:
        return "(none)"
    text = data[:SHOW_BYTES].hex().upper()
    if len(data) > SHOW_BYTES:
        text += f"... ({len(data)} bytes)"
    return text


def _describe_sw(sw: int) -> str:
    from jpki_sim.iso7816.sw import describe

    return describe(sw)


def compare(step: Xfer, command: bytes, response: bytes, facts: Any,
            on: Any) -> list[str]:
    """Diff lines for a response that misses ``step``'s expectations; [] when it meets them."""
    if len(response) < 2:
        return [f"+ response {show(response)} has no status word"]
    data, sw = response[:-2], response[-2] << 8 | response[-1]
    lines: list[str] = []
    if not any(p.matches(sw) for p in step.sw):
        lines += [f"- sw   {' or '.join(map(str, step.sw))}", f"+ sw   {_describe_sw(sw)}"]
    if step.data is not None and data != step.data:
        lines += [f"- data {show(step.data)}", f"+ data {show(data)}"]
        first = next((i for i, (a, b) in enumerate(zip(step.data, data, strict=False)) if a != b),
                     min(len(step.data), len(data)))
        lines.append(f"  first difference at byte {first}")
    if step.match is not None and not re.fullmatch(step.match, data.hex().upper(), re.DOTALL):
        lines += [f"- data matching /{step.match}/", f"+ data {show(data)}"]
    for spec in step.checks:
        why = checks.run(spec, CheckContext(data, sw, command, facts, on))
        if why is not None:
            lines.append(f"  check {spec}: {why}")
    if step.data is None and step.match is None and not step.checks and data:
        lines += ["- data (none)", f"+ data {show(data)}"]
    if lines and not any(line.startswith("+ data") for line in lines):
        lines.append(f"  (data {show(data)})")
    return lines


def _header(index: int, step: Any, command: bytes | None = None) -> str:
    from jpki_sim.trace.describe import describe_command

    where = f"step {index} (line {step.line})"
    if command is not None:
        try:
            name = describe_command(command)
        except Exception:  # a malformed command has no name; the diff must still show
            name = f"malformed, {len(command)} bytes"
        return f"{where}: >> {command.hex().upper()}  [{name}]"
    if isinstance(step, Power):
        return f"{where}: {step.kind}"
    if isinstance(step, Admin):
        return f"{where}: admin {step.action} {step.pin}"
    if isinstance(step, Assert):
        return f"{where}: assert on {step.buffer}"
    return where


def play(vector: Vector, target: Target, *, destructive: bool = False) -> VectorResult:
    """Play one vector on ``target``."""
    reason = target.skip_reason(vector, destructive)
    if reason is not None:
        return VectorResult(vector, SKIPPED, reason)
    started = time.perf_counter()
    result = VectorResult(vector, PASSED)
    try:
        facts = target.start(vector)
        on = target.play_date(vector)
        buffers: dict[str, bytearray] = {}
        for index, step in enumerate(vector.steps, start=1):
            if isinstance(step, Comment):
                continue
            result.steps = index
            if isinstance(step, Xfer):
                command = expand_command(step.command, target.pin)
                response = target.transmit(command)
                diff = compare(step, command, response, facts, on)
                if diff:
                    result.status = FAILED
                    result.reason = f"step {index}: {diff[0].lstrip('-+ ').strip()}"
                    result.diff = [_header(index, step, command), *diff]
                    break
                if step.collect:
                    buffers.setdefault(step.collect, bytearray()).extend(response[:-2])
            elif isinstance(step, Power):
                if step.kind == "power-off":
                    target.power_off()
                    continue
                atr = target.power_on() if step.kind == "power-on" else target.reset()
                if step.atr is not None and atr != step.atr:
                    result.status = FAILED
                    result.reason = f"step {index}: ATR {atr.hex().upper()}"
                    result.diff = [_header(index, step), f"- atr  {step.atr.hex().upper()}",
                                   f"+ atr  {atr.hex().upper()}"]
                    break
            elif isinstance(step, Admin):
                target.admin(step)
            elif isinstance(step, Assert):
                data = bytes(buffers.get(step.buffer, b""))
                whys = [
                    f"  check {spec}: {why}"
                    for spec in step.checks
                    if (why := checks.run(spec, CheckContext(data, 0x9000, b"", facts, on)))
                ]
                if whys:
                    result.status = FAILED
                    result.reason = f"step {index}: {whys[0].strip()}"
                    result.diff = [_header(index, step), f"+ {step.buffer}: {show(data)}", *whys]
                    break
    except (TargetError, JpkiSimError, OSError) as exc:
        result.status = FAILED
        result.reason = f"step {result.steps}: {type(exc).__name__}: {exc}"
        result.diff = [f"step {result.steps}: the target failed: {exc}"]
    finally:
        target.finish()
    result.duration = time.perf_counter() - started
    return result


# ---------------------------------------------------------------- many vectors


def select(vectors: Iterable[Vector], pattern: str | None) -> list[Vector]:
    """Vectors whose id (or ``feature/id``) contains ``pattern``, or matches it as a glob.

    Like pytest's ``-k`` in spirit: ``-k pin`` picks every id with "pin";
    ``not X`` excludes; ``A or B`` takes either.
    """
    vs = list(vectors)
    if not pattern:
        return vs

    def hit(v: Vector, term: str) -> bool:
        import fnmatch

        term = term.strip()
        full = f"{v.feature}/{v.id}"
        if any(c in term for c in "*?["):
            return fnmatch.fnmatch(v.id, term) or fnmatch.fnmatch(full, term)
        return term in full

    def keep(v: Vector) -> bool:
        for alternative in pattern.split(" or "):
            terms = [t.strip() for t in alternative.split(" and ")]
            if all((not hit(v, t[4:]) if t.startswith("not ") else hit(v, t)) for t in terms):
                return True
        return False

    return [v for v in vs if keep(v)]


def run_suite(
    vectors: Iterable[Vector],
    target: Target,
    *,
    destructive: bool = False,
    on_result: Callable[[VectorResult], None] | None = None,
) -> Report:
    report = Report(target.name)
    for v in vectors:
        r = play(v, target, destructive=destructive)
        report.results.append(r)
        if on_result is not None:
            on_result(r)
    return report


# ---------------------------------------------------------------- JUnit XML


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: one testsuite per feature, one testcase per vector."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="jpki-sim vectors", tests=str(len(report.results)),
                      failures=str(report.failed), skipped=str(report.skipped))
    suites: dict[str, ET.Element] = {}
    for r in report.results:
        feature = r.vector.feature or "vectors"
        suite = suites.get(feature)
        if suite is None:
            suite = ET.SubElement(root, "testsuite", name=feature)
            suites[feature] = suite
        case = ET.SubElement(suite, "testcase", classname=f"vectors.{feature}", name=r.id,
                             time=f"{r.duration:.6f}", file=r.vector.where)
        if r.status == FAILED:
            fail = ET.SubElement(case, "failure", message=r.reason)
            fail.text = "\n".join([r.vector.purpose, *r.diff])
        elif r.status == SKIPPED:
            ET.SubElement(case, "skipped", message=r.reason)
    for feature, suite in suites.items():
        mine = [r for r in report.results if (r.vector.feature or "vectors") == feature]
        suite.set("tests", str(len(mine)))
        suite.set("failures", str(sum(r.status == FAILED for r in mine)))
        suite.set("skipped", str(sum(r.status == SKIPPED for r in mine)))
        suite.set("errors", "0")
        suite.set("time", f"{sum(r.duration for r in mine):.6f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"
