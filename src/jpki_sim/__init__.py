"""jpki-sim: a software emulation of the My Number card's JPKI chip."""

__version__ = "0.1.0"
