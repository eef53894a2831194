"""Write docs/compatibility.md (and the summary in README.md) from the compat suite's results.

    python tools/compat_table.py            # write both from .ci/out/compat-results.json
    python tools/compat_table.py --check    # exit 1 when the committed files are not current

The results file is written by every complete run of tests/compat (the whole test
suite, or ``python -m pytest tests/compat``). Nothing in it changes between two runs
on one machine unless a client, its version or an outcome does, so ``--check`` in CI
compares like with like.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / ".ci" / "out" / "compat-results.json"
DOC = ROOT / "docs" / "compatibility.md"
README = ROOT / "README.md"
BEGIN = "<!-- compat-summary: written by tools/compat_table.py -->"
END = "<!-- /compat-summary -->"

WHOSE = {"client": "client's side", "card": "card's side (jpki-sim)",
         "not yet known": "cause not known yet"}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def result_text(row: dict[str, Any]) -> str:
    if row["result"] == "works":
        return "works" + (" (see note)" if row.get("notes") else "")
    if row["result"] == "fails":
        return f"**fails**, {WHOSE.get(row.get('owner', ''), row.get('owner', ''))}"
    return f"not run: {row.get('evidence', '')}"


def render_doc(results: dict[str, Any]) -> str:
    clients = results["clients"]
    rows = results["rows"]
    out = [
        "# Compatibility with the software people use",
        "",
        "<!-- written by tools/compat_table.py from .ci/out/compat-results.json; "
        "do not edit by hand -->",
        "",
        "Every row is one test of `tests/compat/`, which drives the real client through "
        "pcscd against a card served by `jpki-sim serve` in a vpcd reader, and asserts the "
        "result (the signature verifies with the card's certificate, the TLS server saw the "
        "holder's certificate, the PDF validates, ...). A row that fails on a client's side "
        "is still a test: it asserts that the failure is the documented one, so it notices "
        "when the client changes. CI runs the suite and checks that this file is what the "
        "run gives (`python tools/compat_table.py --check`).",
        "",
        f"Platform of the last run: {results.get('platform', 'unknown')}.",
        "",
        "## Clients",
        "",
        "| client | versions |",
        "|---|---|",
    ]
    for key in dict.fromkeys(r["client"] for r in rows):  # in the order of the results
        out.append(f"| {cell(clients[key]['name'])} | {cell(clients[key]['version'])} |")
    out += ["", "## Results", "", "| client | operation | result |", "|---|---|---|"]
    failures: list[dict[str, Any]] = []
    notes: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        name = clients[row["client"]]["name"]
        text = result_text(row)
        if row["result"] == "fails":
            failures.append(row)
            text += f" ([{len(failures)}](#failure-{len(failures)}))"
        for note in row.get("notes", []):
            notes.append((row, note))
        out.append(f"| {cell(name)} | {cell(row['operation'])} | {cell(text)} |")
    counts = {k: sum(1 for r in rows if r["result"] == k) for k in ("works", "fails", "not run")}
    out += ["", f"{counts['works']} work, {counts['fails']} fail, {counts['not run']} not run."]
    if notes:
        out += ["", "Notes:", ""]
        for row, note in notes:
            out.append(f"- {clients[row['client']]['name']}, {row['operation']}: {note}.")
    if failures:
        out += ["", "## Failures: evidence and whose they are", ""]
        for i, row in enumerate(failures, start=1):
            whose = WHOSE.get(row.get("owner", ""), row.get("owner", ""))
            out += [
                f'<a id="failure-{i}"></a>',
                f"**{i}. {clients[row['client']]['name']}: {row['operation']}** "
                f"({whose}; test `{row['test']}`)",
                "",
                f"- observed: `{row.get('evidence', '')}`",
            ]
            if row.get("reference"):
                out.append(f"- why: {row['reference']}")
            out.append("")
    out += [
        "## Not covered by the suite",
        "",
        "Browsers (Firefox loads the same OpenSC module through NSS or p11-kit), JPKI's own "
        "client software (JPKI利用者ソフト, Windows and macOS only: attach the card to such a "
        "machine as [docs/remote.md](remote.md) describes) and PC/SC bindings of other "
        "languages (Node's pcsclite, Java's javax.smartcardio) are not run here.",
    ]
    return "\n".join(out) + "\n"


def render_summary(results: dict[str, Any]) -> str:
    clients = results["clients"]
    per: dict[str, dict[str, int]] = {}
    for row in results["rows"]:
        c = per.setdefault(row["client"], {"works": 0, "client": 0, "card": 0, "other": 0})
        if row["result"] == "works":
            c["works"] += 1
        elif row["result"] == "fails":
            c[row.get("owner") if row.get("owner") in ("client", "card") else "other"] += 1
        else:
            c["other"] += 1
    lines = [BEGIN, "", "| client | works | fails: client's side | fails: card's side | "
             "not run / unexplained |", "|---|---|---|---|---|"]
    for key in per:
        c = per[key]
        lines.append(f"| {cell(clients[key]['name'])} | {c['works']} | {c['client'] or ''} | "
                     f"{c['card'] or ''} | {c['other'] or ''} |")
    lines += ["", "Each operation, the client versions, and the evidence for every failure: "
              "[docs/compatibility.md](docs/compatibility.md).", "", END]
    return "\n".join(lines)


def with_summary(readme: str, summary: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"compat_table: {README.name} has no {BEGIN} ... {END} block")
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + summary + tail


def main(argv: list[str] | None = None, *, doc: Path = DOC, readme: Path = README) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write: exit 1 when docs/compatibility.md or README.md differ")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file")
    args = ap.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except FileNotFoundError:
        print(f"compat_table: {args.results} not found: run the whole of tests/compat first "
              "(python -m pytest tests/compat)", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"compat_table: {args.results}: not JSON ({exc})", file=sys.stderr)
        return 2
    if results.get("format") != "jpki-sim compat results":
        print(f"compat_table: {args.results}: not a compat results file", file=sys.stderr)
        return 2
    wanted = {doc: render_doc(results),
              readme: with_summary(readme.read_text(), render_summary(results))}
    if args.check:
        stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        for p in stale:
            old = p.read_text().splitlines() if p.exists() else []
            diff = difflib.unified_diff(old, wanted[p].splitlines(), f"{p.name} (committed)",
                                        f"{p.name} (from the last run)", lineterm="", n=1)
            print("\n".join(list(diff)[:60]), file=sys.stderr)
        if stale:
            print("compat_table: not current: " + ", ".join(p.name for p in stale) +
                  "; run `python tools/compat_table.py` and commit", file=sys.stderr)
            return 1
        print("compat_table: docs/compatibility.md and README.md are current")
        return 0
    for p, text in wanted.items():
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
