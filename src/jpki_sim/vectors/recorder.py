"""Turn a trace of a session (``shell --trace``, ``serve --trace``) into vectors.

What varies between two cards of one profile, or between two runs, is masked
instead of compared byte for byte:

- signatures (random keys, and PSS is randomised): ``len:256`` and
  ``signature-verifies:auth|sign`` (the key named by the current EF or P2);
- certificate EFs (serials, keys, dates): ``len:N``, the DER header by regular
  expression, ``der-certificate`` when the read holds the whole certificate;
- token info (its serial is the card's application ID): ``len:N`` and the label;
- helper EFs (the holder's data): ``my-number`` / ``basic-info`` on whole reads;
- PIN data (redacted in traces, and a card's own secret): ``{pin:NAME}`` when
  the card accepted it, ``{wrong-pin:NAME}`` when it did not; whatever the
  answer, the data of every VERIFY, CHANGE REFERENCE DATA and RESET RETRY
  COUNTER (any class, any length, malformed or not) is masked with ``2A``
  bytes unless ``keep_pins`` is asked for.

Everything else (status words, EF 0008, ATRs, GET DATA) is kept exact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jpki_sim.errors import UserError
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.trace.model import Comment, PowerOff, Reset, Trace, Xfer
from jpki_sim.trace.redact import redact_command
from jpki_sim.vectors.model import FORMAT, VERSION

CERT_FIDS = {jpki.EF_AUTH_CERT, jpki.EF_SIGN_CERT, jpki.EF_AUTH_CA_CERT, jpki.EF_SIGN_CA_CERT}
KEY_NAMES = {jpki.EF_AUTH_KEY: "auth", jpki.EF_SIGN_KEY: "sign"}
#: what a PIN is changed to when a trace hid the new value: the PIN it already had
CHANGE_PLACEHOLDER = "{pin:%s}"


@dataclass
class _View:
    """The card's selection, followed from the commands and their answers."""

    application: bytes | None = None
    ef: int | None = None

    def clear(self) -> None:
        self.application = None
        self.ef = None


@dataclass
class Recording:
    """The vector made from a trace, plus what was masked (for the user's information)."""

    header: dict[str, Any]
    vector: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    masked: dict[str, int] = field(default_factory=dict)
    #: the card's PINs: (AID, PIN EF) for those VERIFY reaches through the current EF,
    #: (AID, P2) for those P2 names alone
    pins: dict[tuple[bytes, Any], str] = field(default_factory=dict)

    def pin_at(self, application: bytes | None, ef: int | None, p2: int) -> str | None:
        aid = application or b""
        return self.pins.get((aid, ef)) or self.pins.get((aid, ("p2", p2)))

    def note(self, what: str) -> None:
        self.masked[what] = self.masked.get(what, 0) + 1

    def dumps(self) -> str:
        lines = [self.header, self.vector, *self.steps]
        return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines)


def _parse(command: bytes) -> Any:
    from jpki_sim.iso7816.apdu import CommandApdu

    try:
        return CommandApdu.parse(command)
    except Exception:
        return None


def _ef_by_p2(view: _View, p2: int) -> int | None:
    if p2 == 0x80:
        return view.ef
    if 0x81 <= p2 <= 0x9E:
        return p2 & 0x1F  # every EF of the card has its FID as its short id
    return None


def record(
    trace: Trace,
    *,
    vector_id: str = "recorded",
    purpose: str | None = None,
    profile: str = "default",
    feature: str = "recorded",
    card_profile: str = "jpki",
    keep_pins: bool = False,
) -> Recording:
    """The vector file (one vector) that replays ``trace`` against a fresh ``profile`` card.

    ``profile`` is the starting card (a preset of ``card_profile``, the kind of card).
    PIN data never reaches the vector in clear unless ``keep_pins``.
    """
    from jpki_sim.vectors.loader import ID_PATTERN

    if not ID_PATTERN.fullmatch(vector_id):
        raise UserError(f"vector id {vector_id!r}: use lower-case letters, digits, '.', '-'")
    rec = Recording(
        header={"format": FORMAT, "version": VERSION, "feature": feature,
                "title": f"recorded from a trace of {trace.card or 'a card'}",
                **({} if card_profile == "jpki" else {"card_profile": card_profile})},
        vector={"vector": vector_id,
                "purpose": purpose or f"replays a session recorded {trace.created or ''}".strip(),
                "profile": profile},
    )
    from jpki_sim.profiles import registry

    card = registry.get(card_profile)
    for name, where in card.pin_addresses().items():
        rec.pins[(where.aid, where.fid if where.select else ("p2", where.p2))] = name
    view = _View()
    powered = True
    destructive = False
    for event in trace.events:
        if isinstance(event, Comment):
            rec.steps.append({"event": "comment", "text": event.text})
        elif isinstance(event, PowerOff):
            if powered:
                rec.steps.append({"event": "power-off"})
                powered = False
            view.clear()
        elif isinstance(event, Reset):
            if event.kind == "cold":
                if powered:  # a trace's first power-on, or one without its power-off
                    rec.steps.append({"event": "power-off"})
                rec.steps.append({"event": "power-on", "atr": event.atr.hex().upper()})
            else:
                if not powered:
                    rec.steps.append({"event": "power-on", "atr": event.atr.hex().upper()})
                else:
                    rec.steps.append({"event": "reset", "atr": event.atr.hex().upper()})
            powered = True
            view.clear()
        elif isinstance(event, Xfer):
            if not powered:
                rec.steps.append({"event": "power-on"})
                powered = True
            step, changes = _xfer_step(event, view, rec, keep_pins)
            if not keep_pins and "{" not in step["command"]:
                masked, hidden = redact_command(event.command)
                if hidden and masked != event.command:
                    step["command"] = masked.hex().upper()
                    rec.note("PIN (masked; the card refused it before comparing)")
            destructive = destructive or changes
            rec.steps.append(step)
    if not any(s.get("event") == "xfer" for s in rec.steps):
        raise UserError("the trace has no exchanges to record")
    # a leading power cycle adds nothing: every vector starts on a powered card
    while rec.steps and rec.steps[0].get("event") == "power-off" and len(rec.steps) > 1 \
            and rec.steps[1].get("event") == "power-on":
        rec.steps[1:2] = [{"event": "reset", **({"atr": rec.steps[1]["atr"]}
                                                if "atr" in rec.steps[1] else {})}]
        del rec.steps[0]
    if destructive:
        rec.vector["destructive"] = True
    return rec


def _xfer_step(e: Xfer, view: _View, rec: Recording, keep_pins: bool = False
               ) -> tuple[dict[str, Any], bool]:
    """The step for one exchange, and whether it changes the card irreversibly."""
    command, data, sw = e.command, e.data, e.sw
    apdu = _parse(command)
    step: dict[str, Any] = {"event": "xfer", "command": command.hex().upper(),
                            "sw": f"{sw:04X}"}
    changes = False
    if apdu is None:
        return _with_data(step, data), changes
    cla_group, ins, p1, p2 = apdu.cla & 0xE0, apdu.ins, apdu.p1, apdu.p2
    ef = view.ef
    if cla_group == 0x00 and ins == 0xA4 and sw == 0x9000:
        if p1 == 0x04:
            view.application, view.ef = apdu.data, None
        elif p1 == 0x02 and len(apdu.data) == 2:
            view.ef = int.from_bytes(apdu.data, "big")
    elif cla_group == 0x00 and ins == 0xB0 and sw == 0x9000:
        if p1 & 0x80:
            ef = p1 & 0x1F
            view.ef = ef
            offset = p2
        else:
            offset = p1 << 8 | p2
        _mask_read(step, ef, view.application, offset, data, rec)
        return step, changes
    elif cla_group == 0x00 and ins in (0x20, 0x24) and apdu.data:
        pin = rec.pin_at(view.application, _ef_by_p2(view, p2), p2)
        header = command[:4].hex().upper()
        compared = sw == 0x9000 or sw == 0x6984 or sw & 0xFFF0 == 0x63C0
        if ins == 0x20 and compared:
            if pin is None:
                raise UserError(f"a VERIFY ({command.hex().upper()}) of a PIN the recorder "
                                "cannot tell (the trace lacks the SELECT before it)")
            accepted = sw in (0x9000, 0x6984)
            step["command"] = header + ("{pin:%s}" if accepted else "{wrong-pin:%s}") % pin
            changes = not accepted
            rec.note("PIN")
        elif ins == 0x24 and sw == 0x9000:
            changes = True
            if e.redacted or not keep_pins:
                if pin is None:
                    raise UserError(f"a PIN change ({command.hex().upper()}) of a PIN the "
                                    "recorder cannot tell")
                step["command"] = header + CHANGE_PLACEHOLDER % pin
                rec.note("PIN change (new value unknown: changed to the same PIN)")
        # refused before any comparison (6A88, 6700, 6982, ...): the card never
        # looked at the value, so the redacted bytes replay as well as the real ones
        # (record() masks them)
        if "{" not in step["command"]:
            return _with_data(step, data), changes
    elif cla_group == 0x80 and ins == 0x2A and sw == 0x9000:
        key = KEY_NAMES.get(_ef_by_p2(view, p2) or -1)
        if key is not None and len(data) == 256:
            step["check"] = ["len:256", f"signature-verifies:{key}"]
            rec.note("signature")
            return step, changes
    return _with_data(step, data), changes


def _with_data(step: dict[str, Any], data: bytes) -> dict[str, Any]:
    if data:
        step["data"] = data.hex().upper()
    return step


def _mask_read(step: dict[str, Any], ef: int | None, application: bytes | None, offset: int,
               data: bytes, rec: Recording) -> None:
    from jpki_sim.vectors import checks
    from jpki_sim.vectors import jpki as jpki_checks

    if application == jpki.JPKI_AID and ef in CERT_FIDS:
        specs = [f"len:{len(data)}"]
        if offset == 0:
            if len(data) >= 4:
                step["match"] = "3082[0-9A-F]{4}.*"
            try:
                jpki_checks.split_certificate(data)
                specs.append("der-certificate")
            except ValueError:
                pass
        step["check"] = specs
        rec.note("certificate bytes")
    elif application == jpki.JPKI_AID and ef == jpki.EF_TOKEN_INFO:
        step["check"] = [f"len:{len(data)}"]
        if offset == 0:
            label = jpki.TOKEN_LABEL.encode().ljust(32, b" ")[: len(data)]
            step["match"] = label.hex().upper() + ".*"
        rec.note("token info serial")
    elif application == jpki.HELPER_AID and ef in (jpki.EF_HELPER_MY_NUMBER,
                                                    jpki.EF_HELPER_BASIC_INFO):
        name = "my-number" if ef == jpki.EF_HELPER_MY_NUMBER else "basic-info"
        ctx = checks.CheckContext(data, 0x9000, b"", jpki_checks.CardFacts(), None)  # type: ignore[arg-type]
        whole = offset == 0 and checks.run(name, ctx) is None
        step["check"] = [name] if whole else ["any"]
        rec.note("holder data")
    elif data:
        step["data"] = data.hex().upper()


def record_file(trace_path: str | os.PathLike[str], out: str | os.PathLike[str], **kw: Any
                ) -> Recording:
    """Record ``trace_path`` into the vector file ``out`` (checked by loading it back)."""
    from jpki_sim import trace as tr
    from jpki_sim.vectors.loader import loads

    t = tr.load(trace_path)
    kw.setdefault("vector_id", _slug(Path(trace_path).stem))
    kw.setdefault("feature", _slug(Path(out).stem) if str(out) != "-" else "recorded")
    rec = record(t, **kw)
    text = rec.dumps()
    loads(text, Path(str(out)))  # what we write must be a valid vector file
    if str(out) == "-":
        import sys

        sys.stdout.write(text)
    else:
        from jpki_sim.card.store import write_atomic

        try:
            # owner-only: a vector file may hold the holder's data (and PINs with keep_pins)
            write_atomic(out, text.encode("utf-8"), 0o600)
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return rec


def _slug(text: str) -> str:
    import re

    slug = re.sub(r"[^a-z0-9.+-]+", "-", text.lower()).strip("-.")
    return slug or "recorded"
