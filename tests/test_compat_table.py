"""tools/compat_table.py: docs/compatibility.md and the README summary from a results file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "compat_table.py"


@pytest.fixture(scope="module")
def table() -> Any:
    spec = importlib.util.spec_from_file_location("compat_table", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS: dict[str, Any] = {
    "format": "jpki-sim compat results",
    "version": 1,
    "require_pcsc": True,
    "platform": "Debian GNU/Linux 12 (bookworm)",
    "clients": {"opensc": {"name": "OpenSC tools", "version": "opensc 0.23.0"},
                "nss": {"name": "NSS tools", "version": "libnss3-tools 3.87"}},
    "rows": [
        {"client": "opensc", "operation": "sign | verify", "result": "works",
         "test": "test_a.py::t1"},
        {"client": "opensc", "operation": "self test", "result": "fails", "owner": "card",
         "evidence": "ERR: C_GenerateRandom failed", "reference": "issue 12",
         "test": "test_a.py::t2"},
        {"client": "nss", "operation": "legacy verify", "result": "fails", "owner": "client",
         "evidence": "ERROR -8151", "reference": "certvfy.c:733", "test": "test_b.py::t1",
         "notes": ["a note"]},
        {"client": "nss", "operation": "provider", "result": "not run",
         "evidence": "no package", "test": "test_b.py::t2"},
    ],
}


def test_document_lists_rows_versions_and_failures(table: Any) -> None:
    doc = table.render_doc(RESULTS)
    assert "| OpenSC tools | opensc 0.23.0 |" in doc
    assert "| OpenSC tools | sign \\| verify | works |" in doc  # table cells escaped
    assert ("| OpenSC tools | self test | **fails**, card's side (jpki-sim) "
            "([1](#failure-1)) |") in doc
    assert "| NSS tools | legacy verify | **fails**, client's side ([2](#failure-2)) |" in doc
    assert "| NSS tools | provider | not run: no package |" in doc
    assert "1 work, 2 fail, 1 not run." in doc
    assert "- observed: `ERR: C_GenerateRandom failed`\n- why: issue 12" in doc
    assert "- NSS tools, legacy verify: a note." in doc
    assert doc.index("self test") < doc.index("legacy verify")  # the results' order
    assert table.render_doc(RESULTS) == doc  # nothing varies between renderings


def test_summary_counts_by_whose_failure(table: Any) -> None:
    summary = table.render_summary(RESULTS)
    assert "| OpenSC tools | 1 |  | 1 |  |" in summary
    assert "| NSS tools | 0 | 1 |  | 1 |" in summary
    assert "(docs/compatibility.md)" in summary


def test_check_tells_a_stale_file_and_write_makes_it_current(
    table: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    doc, readme = tmp_path / "compatibility.md", tmp_path / "README.md"
    readme.write_text(f"# x\n\n{table.BEGIN}\nold\n{table.END}\n\nrest\n")
    args = ["--results", str(results)]
    assert table.main([*args, "--check"], doc=doc, readme=readme) == 1
    assert "not current: compatibility.md, README.md" in capsys.readouterr().err
    assert table.main(args, doc=doc, readme=readme) == 0
    assert table.main([*args, "--check"], doc=doc, readme=readme) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\n\nrest\n") and "old" not in text
    doc.write_text(doc.read_text().replace("works", "fails"))
    assert table.main([*args, "--check"], doc=doc, readme=readme) == 1


def test_missing_results_is_one_line(table: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert table.main(["--results", str(tmp_path / "none.json"), "--check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run the whole of tests/compat first" in err[0]
