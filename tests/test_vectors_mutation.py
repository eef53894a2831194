"""Every vector can fail: played on deliberately faulty cards, the runner reports each fault.

The test doubles wrap the real card and break one thing: the status word of
one answer, a table of status words, a byte of long answers, the ATR. A vector
that still passed on such a card would be checking nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jpki_sim.vectors import loader, runner
from jpki_sim.vectors.model import Power, Vector, Xfer
from jpki_sim.vectors.targets import InProcessTarget

REPO = Path(__file__).resolve().parent.parent
SUITE = loader.all_vectors(loader.load_suite([REPO / "vectors"]))
WRONG_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


class FaultyCard:
    """The real card, except for what the fault changes.

    ``sw_at``: the answer to this command (1-based) gets ``bad_sw`` instead of
    its status word. ``sw_table``: status words swapped for others. ``flip_long``:
    answers with more than 200 data bytes get their middle byte flipped.
    ``bad_atr``: power-on and reset answer another ATR.
    """

    def __init__(self, card: Any, *, sw_at: int | None = None, bad_sw: int = 0x6F00,
                 sw_table: dict[int, int] | None = None, flip_long: bool = False,
                 bad_atr: bool = False) -> None:
        self.inner = card
        self.sw_at = sw_at
        self.bad_sw = bad_sw
        self.sw_table = sw_table or {}
        self.flip_long = flip_long
        self.bad_atr = bad_atr
        self.count = 0

    @property
    def atr(self) -> bytes:
        return WRONG_ATR if self.bad_atr else self.inner.atr

    def power_on(self) -> bytes:
        atr: bytes = self.inner.power_on()
        return WRONG_ATR if self.bad_atr else atr

    def power_off(self) -> None:
        self.inner.power_off()

    def reset(self) -> bytes:
        atr: bytes = self.inner.reset()
        return WRONG_ATR if self.bad_atr else atr

    def process(self, apdu: bytes) -> bytes:
        self.count += 1
        response: bytes = self.inner.process(apdu)
        data, sw = response[:-2], response[-2] << 8 | response[-1]
        if self.count == self.sw_at:
            sw = self.bad_sw
        sw = self.sw_table.get(sw, sw)
        if self.flip_long and len(data) > 200:
            i = len(data) // 2
            data = data[:i] + bytes((data[i] ^ 0x01,)) + data[i + 1 :]
        return data + sw.to_bytes(2, "big")


def _target(**fault: Any) -> InProcessTarget:
    target = InProcessTarget()
    target.set_mutation(lambda card: FaultyCard(card, **fault))
    return target


def _last_xfer(v: Vector) -> tuple[int, int] | None:
    """(step number, command number) of the vector's last command."""
    found = None
    count = 0
    for index, step in enumerate(v.steps, start=1):
        if isinstance(step, Xfer):
            count += 1
            found = (index, count)
    return found


@pytest.mark.parametrize("vector", SUITE, ids=[f"{v.feature}/{v.id}" for v in SUITE])
def test_each_vector_catches_a_wrong_status_word(vector: Vector) -> None:
    last = _last_xfer(vector)
    if last is None:
        # a vector of power events only: its ATR expectation is what can fail
        assert any(isinstance(s, Power) and s.atr for s in vector.steps), vector.id
        result = runner.play(vector, _target(bad_atr=True))
        assert result.status == runner.FAILED
        assert f"+ atr  {WRONG_ATR.hex().upper()}" in result.diff
        return
    step, command = last
    result = runner.play(vector, _target(sw_at=command))
    assert result.status == runner.FAILED, f"{vector.id} passed on a card answering 6F00"
    assert result.steps == step
    assert result.diff[0].startswith(f"step {step} (line {vector.steps[step - 1].line}): >> ")
    assert "+ sw   6F00 no precise diagnosis" in result.diff


def _failures(report: runner.Report) -> dict[str, runner.VectorResult]:
    return {r.id: r for r in report.results if r.status == runner.FAILED}


def test_wrong_sw_table_is_reported_with_a_diff() -> None:
    """A card that answers 6A86 where it should say 6A82, and 6982 where 6A88."""
    report = runner.run_suite(SUITE, _target(sw_table={0x6A82: 0x6A86, 0x6A88: 0x6982}))
    failed = _failures(report)
    assert report.summary().startswith(f"{report.passed} passed, {len(failed)} failed")
    expect_82 = [v.id for v in SUITE if any(isinstance(s, Xfer) and s.sw[0].text == "6A82"
                                            for s in v.steps)]
    expect_88 = [v.id for v in SUITE if any(isinstance(s, Xfer) and s.sw[0].text == "6A88"
                                            for s in v.steps)]
    assert set(expect_82) | set(expect_88) == set(failed)
    result = failed["select-unknown-aid"]
    line = result.vector.steps[0].line
    assert result.diff == [
        f"step 1 (line {line}): >> 00A4040C0AD392F000260100000002  [SELECT D392F000260100000002]",
        "- sw   6A82",
        "+ sw   6A86 incorrect parameters P1-P2",
        "  (data (none))",
    ]


def test_corrupted_long_answers_fail_certificate_and_signature_checks() -> None:
    report = runner.run_suite(SUITE, _target(flip_long=True))
    failed = _failures(report)
    sig = failed["sign-auth-pkcs1-sha256"]
    assert any("check signature-verifies:auth: does not verify" in d for d in sig.diff)
    pss = failed["sign-sign-scheme-04"]
    assert any("check signature-verifies:sign: does not verify (PSS" in d for d in pss.diff)
    cert = failed["read-auth-ca-cert"]
    assert any(d.startswith("  check der-certificate:auth-ca:") for d in cert.diff)
    assert "read-token-info" not in failed  # 160 bytes: left alone by this fault


def test_every_signature_vector_fails_on_corrupted_signatures() -> None:
    signing = [v for v in SUITE if any(isinstance(s, Xfer) and any(
        c.startswith("signature-verifies") for c in s.checks) for s in v.steps)]
    report = runner.run_suite(signing, _target(flip_long=True))
    assert report.passed == 0 and report.failed == len(signing) > 30
