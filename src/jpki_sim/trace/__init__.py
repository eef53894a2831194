"""APDU traces: the model, redaction, the writer, the formats, and their descriptions.

``from jpki_sim import trace`` gives the whole public API (``trace.load``,
``trace.TraceWriter``, ``trace.redact_command``, ...); the modules are
:mod:`.model`, :mod:`.redact`, :mod:`.writer`, :mod:`.formats`, :mod:`.describe`.
"""

from __future__ import annotations

from jpki_sim.trace.describe import describe_command, format_event, render
from jpki_sim.trace.formats import (
    detect_format,
    dumps,
    dumps_gp,
    dumps_jsonl,
    dumps_scriptor,
    dumps_scriptor_input,
    event_to_json,
    iter_jsonl,
    load,
    loads,
    loads_gp,
    loads_jsonl,
    loads_scriptor,
    parse_event,
    write,
)
from jpki_sim.trace.model import (
    FORMAT,
    FORMATS,
    PIN_COMMANDS,
    PINS_CLEAR,
    PINS_REDACTED,
    REDACTION_BYTE,
    VERSION,
    Comment,
    Event,
    PowerOff,
    Reset,
    Trace,
    TraceError,
    Xfer,
)
from jpki_sim.trace.redact import redact, redact_command
from jpki_sim.trace.writer import TraceWriter, TracingTransport

__all__ = [
    "FORMAT", "FORMATS", "PINS_CLEAR", "PINS_REDACTED", "PIN_COMMANDS", "REDACTION_BYTE",
    "VERSION", "Comment", "Event", "PowerOff", "Reset", "Trace", "TraceError", "TraceWriter",
    "TracingTransport", "Xfer", "describe_command", "detect_format", "dumps", "dumps_gp",
    "dumps_jsonl", "dumps_scriptor", "dumps_scriptor_input", "event_to_json", "format_event",
    "iter_jsonl", "load", "loads", "loads_gp", "loads_jsonl", "loads_scriptor", "parse_event",
    "redact", "redact_command", "render", "write",
]
