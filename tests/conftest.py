"""Shared fixtures. The PC/SC ones live in pcsc_harness.py (pcscd, vpcd readers, served cards)."""

from pcsc_harness import (  # noqa: F401  (fixtures are found by name)
    fresh_store,
    jpki_state,
    pcscd_session,
    vpcd_reader,
    vpcd_slot0,
)
