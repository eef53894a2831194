"""The base errors of the package, below every layer.

Card-side and client-side errors that carry a status word live in
:mod:`jpki_sim.iso7816.errors`; this module only holds what every layer (and
every front end) raises or catches.
"""

from __future__ import annotations


class JpkiSimError(Exception):
    """Base of every error this package raises on purpose."""


class UserError(JpkiSimError):
    """Bad input from a user (file, date, option): printed as one line, exit 2."""


class CardFileError(UserError):
    """The card file is missing, corrupt or not a jpki-sim card."""
