"""Errors that carry a status word, on the card side and on the client side.

Card-side handlers raise :class:`CardError` carrying the :class:`~.sw.SW` to
answer; the engine turns it into a response and never lets anything else
escape. Client-side code raises :class:`ApduError` (a status word the caller did
not expect) and :class:`PinError` (a PIN was refused; carries the tries left).
"""

from __future__ import annotations

from jpki_sim.errors import JpkiSimError
from jpki_sim.iso7816.sw import SW, as_sw, describe


class CardError(JpkiSimError):
    """Raised inside the card: answer this status word."""

    __slots__ = ("sw", "message")

    def __init__(self, sw: SW, message: str = "") -> None:
        # The card raises one of these for every error status word it answers (each
        # failed SELECT, each empty VERIFY), so it is kept cheap: the text is built
        # only when read, and BaseException.__new__ has already kept the arguments
        # (``args``, pickling), so its __init__ is not called again.
        self.sw = sw
        self.message = message

    def __str__(self) -> str:
        return self.message or describe(self.sw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class MalformedApdu(CardError):
    """The bytes are not a well-formed command APDU (answered 6700)."""

    def __init__(self, message: str) -> None:
        super().__init__(SW.WRONG_LENGTH, message)


class ApduError(JpkiSimError):
    """A response carried a status word the caller did not expect."""

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = as_sw(sw)
        self.command = command
        where = f" ({command})" if command else ""
        super().__init__(f"card answered {describe(sw)}{where}")


class PinError(ApduError):
    """A PIN was refused; ``tries_left`` is 0 when blocked."""

    def __init__(self, sw: int, tries_left: int, command: str = "") -> None:
        self.tries_left = tries_left
        super().__init__(sw, command)
