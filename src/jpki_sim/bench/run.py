"""The benchmark behind ``jpki-sim bench`` and ``tools/bench.py``.

What is measured, and against what (every ratio is taken within one run, since
the machines this runs on are shared and noisy):

- in-process: time per APDU of the card's :meth:`~jpki_sim.engine.Card.process`
  for the commands clients send most, in batches;
- the signature APDU against a bare ``cryptography`` RSA-2048 PKCS#1 v1.5
  signature of the same DigestInfo with the same key, interleaved sample by
  sample so both see the same machine load;
- through pcscd + vpcd: the same commands from a pyscard client, against a
  *null card* (:class:`NullCard`) that answers every APDU with 9000 at once
  over the same kind of socket as our bridge: the transport's own limit;
- issuance (two RSA-2048 key pairs, two certificates), renewal, and batch
  issuance on all cores;
- start-up of ``jpki-sim --help`` and of ``jpki-sim serve`` until pcscd shows
  the card;
- through pcscd, the control layer's cost: the card served as ``jpki-sim serve``
  serves it against the same card served bare, sample by sample
  (:mod:`.control_cost`);
- through pcscd, a thorough client's read of the whole card (every EF the helper
  PIN and 照合番号A open, the MF level, the 共通AP and JPKI AP) against the null
  card answering each APDU with as many bytes (:mod:`.wholecard`).

Each figure keeps its samples (seconds per operation) and reports median, p95
(nearest rank), min and max. Only the standard library is imported at module
level (and jpki_sim.errors); cryptography, pyscard and rich are imported where used.
"""


from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jpki_sim.bench.core import (
    FORMAT,
    PCSC_SIMPLE,
    TARGET_HELP_MS,
    TARGET_ISSUE_RATIO,
    TARGET_PCSC_RATIO,
    TARGET_READ_BINARY_PER_S,
    TARGET_SELECT_FID_PER_S,
    TARGET_SIGNATURE_RATIO,
    VERSION,
    Progress,
    Settings,
    machine_info,
)
from jpki_sim.bench.inprocess import bench_inprocess, bench_signature, make_state
from jpki_sim.bench.pcsc import PcscUnavailable, bench_pcsc
from jpki_sim.bench.startup import bench_help, bench_issuance
from jpki_sim.bench.wholecard import TARGET_WHOLE_CARD_RATIO, bench_wholecard

# ---------------------------------------------------------------- targets and report


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: float | None, met: bool | None) -> None:
        out.append({"name": name, "target": target, "measured": measured, "met": met})

    inp = doc.get("inprocess")
    if inp:
        sel = inp["commands"]["select_fid"]["per_s"]
        rb = inp["commands"]["read_binary_256"]["per_s"]
        add("in-process SELECT-by-FID APDU/s", f">= {TARGET_SELECT_FID_PER_S:,}", sel,
            sel >= TARGET_SELECT_FID_PER_S)
        add("in-process READ BINARY 256 APDU/s", f">= {TARGET_READ_BINARY_PER_S:,}", rb,
            rb >= TARGET_READ_BINARY_PER_S)
    sig = doc.get("signature")
    if sig:
        add("signature APDU / bare cryptography", f"<= {TARGET_SIGNATURE_RATIO}", sig["ratio"],
            sig["ratio"] <= TARGET_SIGNATURE_RATIO)
    pcsc = doc.get("pcsc")
    if pcsc and pcsc.get("available"):
        for name in PCSC_SIMPLE:
            r = pcsc["ratios"][name]
            add(f"PC/SC {name} / null card", f">= {TARGET_PCSC_RATIO}", r, r >= TARGET_PCSC_RATIO)
    iss = doc.get("issuance")
    if iss and iss.get("ratio") is not None:
        add("issue (every application) / issue before issue 12", f"<= {TARGET_ISSUE_RATIO}",
            iss["ratio"], iss["ratio"] <= TARGET_ISSUE_RATIO)
    ctl = doc.get("control")
    if ctl and ctl.get("available"):
        worst = max(c["ratio"] for c in ctl["commands"].values())
        add("PC/SC served / bare card, every command (95 % interval reaches 1)",
            "no measurable cost", worst, not ctl["measurable_cost"])
    whole = doc.get("wholecard")
    if whole and whole.get("available"):
        r = whole["ratio"]
        add("PC/SC whole-card read / null card", f">= {TARGET_WHOLE_CARD_RATIO}", r,
            r >= TARGET_WHOLE_CARD_RATIO)
    start = doc.get("startup")
    if start and start.get("help"):
        ms = start["help"]["median"] * 1000
        add("jpki-sim --help ms", f"< {TARGET_HELP_MS}", ms, ms < TARGET_HELP_MS)
    if doc.get("ocsp"):
        from jpki_sim.bench.ocsp import targets as ocsp_targets

        for row in ocsp_targets(doc["ocsp"]):
            add(*row)
    return out


def _pcsc_part(doc: dict[str, Any], key: str, what: str,
               measure: Callable[[], dict[str, Any]]) -> None:
    """A section that needs pcscd: its figures, or why it was skipped (also in the notes)."""
    try:
        doc[key] = {"available": True, "skipped": None, **measure()}
    except PcscUnavailable as exc:
        doc[key] = {"available": False, "skipped": str(exc)}
        doc["notes"].append(f"{what} skipped: {exc}")


def run_all(cfg: Settings, progress: Progress) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "quick": cfg.quick,
        "runs": cfg.runs,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "sections": cfg.sections,
        "inprocess": None,
        "signature": None,
        "issuance": None,
        "startup": None,
        "pcsc": None,
        "control": None,
        "wholecard": None,
        "ocsp": None,
        "notes": [],
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jpki-sim-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        state, ca = make_state(work)
        doc["setup_s"] = time.perf_counter() - t0
        if "inprocess" in cfg.sections:
            doc["inprocess"] = bench_inprocess(cfg, state, work, progress)
        if "signature" in cfg.sections:
            doc["signature"] = bench_signature(cfg, state, progress)
        if "issuance" in cfg.sections:
            doc["issuance"] = bench_issuance(cfg, state, ca, work, progress)
        if "startup" in cfg.sections:
            doc["startup"] = bench_help(cfg, work, progress)
            doc["startup"]["serve"] = None
        if "pcsc" in cfg.sections:
            try:
                pcsc = bench_pcsc(cfg, state, work, progress)
                pcsc["available"] = True
                pcsc["skipped"] = None
                if doc["startup"] is not None:
                    doc["startup"]["serve"] = pcsc.pop("serve_startup")
                else:
                    pcsc.pop("serve_startup")
                doc["pcsc"] = pcsc
            except PcscUnavailable as exc:
                doc["pcsc"] = {"available": False, "skipped": str(exc)}
                doc["notes"].append(f"PC/SC part skipped: {exc}")
        else:
            doc["pcsc"] = {"available": False, "skipped": "not requested (--no-pcsc or --only)"}
        if "control" in cfg.sections:
            from jpki_sim.bench.control_cost import bench_control

            _pcsc_part(doc, "control", "control layer part",
                       lambda: bench_control(cfg, state, work, progress))
        if "wholecard" in cfg.sections:
            _pcsc_part(doc, "wholecard", "whole-card read",
                       lambda: bench_wholecard(cfg, state, work, progress))
        if doc["startup"] is not None and doc["startup"]["serve"] is None:
            doc["startup"]["serve_skipped"] = "needs the PC/SC part"
        if "ocsp" in cfg.sections:
            from jpki_sim.bench.ocsp import bench_ocsp

            doc["ocsp"] = bench_ocsp(cfg.quick, work, progress, cfg.ocsp_load)
    doc["total_s"] = time.perf_counter() - t_start
    doc["targets"] = targets(doc)
    return doc


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:,.1f} µs"
    if s < 1:
        return f"{s * 1e3:,.2f} ms"
    return f"{s:,.2f} s"


def _spread(f: dict[str, Any]) -> str:
    return f"{_fmt_time(f['min'])} – {_fmt_time(f['max'])}"


def print_report(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 120)
    m = doc["machine"]
    con.print(f"[bold]jpki-sim bench[/] {'(quick) ' if doc['quick'] else ''}{doc['started']}  "
              f"{m['nproc']} × {m['cpu']}, Python {m['python']}, {m['os']}")
    con.print(f"load average at start: {m['loadavg_at_start']}  (shared machine: compare only "
              f"figures of one run)", style="dim")

    def timing_table(title: str, rows: list[tuple[str, dict[str, Any], str]],
                     rate_col: str) -> Table:
        t = Table(title=title, title_justify="left")
        t.add_column("what")
        t.add_column(rate_col, justify="right")
        t.add_column("median", justify="right")
        t.add_column("p95", justify="right")
        t.add_column("min – max", justify="right")
        t.add_column("note")
        for label, f, note in rows:
            t.add_row(label, _fmt_rate(f["apdus_per_s"]), _fmt_time(f["median"]),
                      _fmt_time(f["p95"]), _spread(f), note)
        return t

    inp = doc.get("inprocess")
    if inp:
        rows = []
        for name, f in inp["commands"].items():
            note = f"{f['apdus_per_op']} APDUs per read" if f["apdus_per_op"] > 1 else ""
            rows.append((name, f, note))
        con.print(timing_table("in-process (Card.process)", rows, "APDU/s"))
    sig = doc.get("signature")
    if sig:
        con.print(timing_table("signature (RSA-2048, PKCS#1 v1.5)", [
            ("80 2A signature APDU", sig["card"], ""),
            ("bare cryptography sign", sig["bare"], ""),
        ], "per s"))
        con.print(f"  overhead ratio (median APDU / median bare): [bold]{sig['ratio']:.3f}[/]")
    pcsc = doc.get("pcsc")
    if pcsc and pcsc.get("available"):
        rows = [("null card (9000 at once)", pcsc["null_card"], "the transport's limit")]
        for name, f in pcsc["commands"].items():
            note = f"{pcsc['ratios'][name]:.2f} × null"
            if not pcsc["same_slot"]:
                note += f" (vs its 9000: {pcsc['ratios_vs_9000'][name]:.2f})"
            rows.append((name, f, note))
        slot = "one slot, in turn" if pcsc["same_slot"] else "two slots, interleaved"
        if not pcsc.get("control", True):
            slot += "; card served bare, no control layer"
        con.print(timing_table(f"through pcscd + vpcd (pyscard client; {slot})", rows, "APDU/s"))
    elif pcsc:
        con.print(f"[yellow]PC/SC part skipped:[/] {pcsc['skipped']}")
    ctl = doc.get("control")
    if ctl and ctl.get("available"):
        t = Table(title=f"the control layer through pcscd: served / bare card "
                        f"({ctl['rounds']} rounds of {ctl['apdus_per_sample']} APDUs, "
                        f"{'one slot, blocks in turn' if ctl['same_slot'] else 'paired'})",
                  title_justify="left")
        for col in ("command", "served", "bare", "served / bare", "95 % interval", "cost"):
            t.add_column(col, justify="left" if col == "command" else "right")
        for name, c in ctl["commands"].items():
            lo, hi = c["ci95"]
            t.add_row(name, _fmt_time(c["served"]["median"]), _fmt_time(c["bare"]["median"]),
                      f"{c['ratio']:.3f}", f"{lo:.3f} – {hi:.3f}",
                      "measurable" if lo > 1.0 else "none measurable")
        con.print(t)
    elif ctl:
        con.print(f"[yellow]control layer part skipped:[/] {ctl['skipped']}")
    whole = doc.get("wholecard")
    if whole and whole.get("available"):
        ch = whole["with_challenge"]
        rows = [("null card, same lengths", whole["null_card"], "the transport's limit"),
                ("whole-card read", whole["card"], f"{whole['ratio']:.2f} × null (paired)"),
                ("null card, same lengths", ch["null_card"], ""),
                ("  + surface challenge signed", ch["card"],
                 f"{ch['ratio']:.2f} × null (paired; not a target)")]
        con.print(timing_table(f"whole-card read through pcscd ({whole['apdus']} APDUs, "
                               f"{whole['bytes_answered']:,} bytes answered)", rows, "APDU/s"))
    elif whole:
        con.print(f"[yellow]whole-card read skipped:[/] {whole['skipped']}")
    iss = doc.get("issuance")
    if iss:
        rows = [("issue card, keys from the stock", iss["issue"],
                 f"{iss['keys_per_card']} keys, 2 certs, 5 records, images; "
                 f"{iss['ratio']:.2f} × before issue 12"),
                ("issue card, keys made at issue", iss["issue_cold"], "stock empty"),
                ("before issue 12: 2 keys, 2 certs", iss["baseline"], "the in-run baseline")]
        if iss.get("key_stock_fill"):
            rows.append(("filling the key stock, per key", iss["key_stock_fill"],
                         "ahead of time, on all cores"))
        rows.append(("renew (2 keys, 2 certs, revoke)", iss["renew"], "keys from the stock"))
        b = iss.get("batch")
        if b:
            rows.append((f"batch: {b['cards']} cards", b["per_card"],
                         f"{b['cards_per_s']:.1f} cards/s on {b['workers']} cores, "
                         f"{b['wall_s']:.1f} s wall"))
        con.print(timing_table("issuance", rows, "per s"))
    st = doc.get("startup")
    if st:
        rows = [("jpki-sim --help", st["help"], f"{st['own_share_s'] * 1000:.0f} ms over python"),
                ("  without bytecode cache", st["help_no_bytecode_cache"],
                 "PYTHONDONTWRITEBYTECODE=1"),
                ("python -c pass", st["python"], "interpreter floor")]
        if st.get("serve"):
            rows.append(("jpki-sim serve → card in pcscd", st["serve"], "includes a pcscd poll"))
        con.print(timing_table("start-up (subprocess)", rows, "per s"))
        if not st.get("serve"):
            con.print(f"  serve start-up skipped: {st.get('serve_skipped')}", style="dim")
    oc = doc.get("ocsp")
    if oc:
        from jpki_sim.bench.ocsp import report as ocsp_report

        con.print(ocsp_report(oc))
    t = Table(title="targets (issues 7, 14)", title_justify="left")
    for col in ("target", "required", "measured", "met"):
        t.add_column(col, justify="left" if col == "target" else "right")
    for row in doc["targets"]:
        measured = row["measured"]
        if measured is None:
            text = "-"
        else:
            text = f"{measured:,.0f}" if measured >= 100 else f"{measured:.3f}"
        met = row["met"]
        t.add_row(row["name"], row["target"], text,
                  "-" if met is None else "[green]yes[/]" if met else "[red]NO[/]")
    con.print(t)
    for note in doc["notes"]:
        con.print(f"note: {note}", style="yellow")
    con.print(f"total {doc['total_s']:.1f} s", style="dim")


def run(args: argparse.Namespace) -> int:
    cfg = Settings.from_args(args)
    if "ocsp" in cfg.sections:
        from jpki_sim.bench.ocsp import pick_load

        pick_load(cfg.ocsp_load)  # a missing wrk is a one-line error before anything runs
    progress = Progress(enabled=sys.stderr.isatty() and not args.json)
    try:
        doc = run_all(cfg, progress)
    finally:
        progress.close()
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if args.save:
        Path(args.save).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_report(doc)
    return 0
