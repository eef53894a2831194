"""PINs and their retry counters: the one rule every part of the project uses.

A :class:`RetryCounter` is the card's reference data (a PIN) with its counter of
tries. The engine's VERIFY, the issuer's counter operations, the shell's admin
verbs and the vector targets all go through it; none writes a counter itself.

The rule (docs/protocol.md, "PINs"):

* **decrement and save first**: a try is spent and written to the card file
  before the comparison, so a crash, a kill or a pulled card never gives a try
  back;
* **compare in constant time** (:func:`hmac.compare_digest`);
* **restore** the counter to its maximum on a match (a second write);
* block (0 tries), unblock (full counter), change (new value, full counter),
  reset (new value or the same, full counter), set a number of tries.

The counter reads its :class:`PinState` through a callable each time and writes
inside the store's transaction, so a store that reloads the file under a lock
(another process changed it) is always acted on as it is on disk.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

#: the most tries a counter can hold: 63Cx reports 0-15
MAX_TRIES_LIMIT = 15


@dataclass
class PinState:
    """A PIN's reference value and retry counter, as kept in the card file.

    ``value`` None: never set (the PIN cannot be verified, e.g. its certificate
    is absent).
    """

    value: str | None
    tries_left: int
    max_tries: int

    @property
    def is_set(self) -> bool:
        return self.value is not None

    @property
    def blocked(self) -> bool:
        return self.value is not None and self.tries_left <= 0

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "tries_left": self.tries_left, "max_tries": self.max_tries}


class Attempt(Enum):
    """What one comparison of a candidate PIN came to."""

    VERIFIED = "verified"  # a try was spent, the candidate matched, the counter is full again
    WRONG = "wrong"  # a try was spent (and saved), the candidate did not match
    UNUSABLE = "unusable"  # blocked or never set: nothing spent, nothing compared


class CounterStore(Protocol):
    """Where counters are kept: a transaction loads, lets the caller change, then saves."""

    def transaction(self) -> AbstractContextManager[Any]: ...


class _Memory:
    """A store for counters that live in memory only."""

    def transaction(self) -> AbstractContextManager[Any]:
        from contextlib import nullcontext

        return nullcontext()


IN_MEMORY: CounterStore = _Memory()


class RetryCounter:
    """One PIN with its counter. ``state`` returns the live :class:`PinState`."""

    __slots__ = ("_state", "_store", "check_format", "name")

    def __init__(
        self,
        state: Callable[[], PinState],
        store: CounterStore = IN_MEMORY,
        *,
        check_format: Callable[[bytes], bool] | None = None,
        name: str = "",
    ) -> None:
        self._state = state
        self._store = store
        #: the form a new value must have (CHANGE REFERENCE DATA); None: any
        self.check_format = check_format
        self.name = name

    @classmethod
    def of(cls, pin: PinState, store: CounterStore = IN_MEMORY, **kw: Any) -> RetryCounter:
        """A counter on one fixed :class:`PinState` object."""
        return cls(lambda: pin, store, **kw)

    # ------------------------------------------------------------ reading

    @property
    def state(self) -> PinState:
        return self._state()

    @property
    def tries_left(self) -> int:
        """Tries left; 0 for a PIN that was never set (it cannot be verified)."""
        st = self._state()
        return st.tries_left if st.value is not None else 0

    @property
    def max_tries(self) -> int:
        return self._state().max_tries

    @property
    def is_set(self) -> bool:
        return self._state().value is not None

    @property
    def usable(self) -> bool:
        st = self._state()
        return st.value is not None and st.tries_left > 0

    @property
    def blocked(self) -> bool:
        return self._state().blocked

    def accepts(self, value: bytes) -> bool:
        """True when ``value`` has the form a new value of this PIN must have."""
        return self.check_format is None or self.check_format(value)

    # ------------------------------------------------------------ the rule

    def attempt(self, candidate: bytes) -> Attempt:
        """Spend a try (saved), compare in constant time, restore on a match.

        The counter is read inside the store's transaction, i.e. as the card
        file has it under its lock (another process may have spent a try since
        this one last looked): a blocked or unset PIN spends nothing. A counter
        is never decremented below 0.
        """
        with self._store.transaction():
            st = self._state()
            if st.value is None or st.tries_left <= 0:
                return Attempt.UNUSABLE
            st.tries_left -= 1
            reference = st.value.encode()
        # the try is on disk before the answer is known
        if not hmac.compare_digest(candidate, reference):
            return Attempt.WRONG
        with self._store.transaction():
            st = self._state()
            st.tries_left = st.max_tries
        return Attempt.VERIFIED

    def verify(self, candidate: bytes) -> bool:
        """:meth:`attempt`, true on a match."""
        return self.attempt(candidate) is Attempt.VERIFIED

    def change(self, new: bytes | str) -> None:
        """A new value (the old one was verified by the caller); counter full."""
        value = new.decode("ascii") if isinstance(new, bytes) else new
        with self._store.transaction():
            st = self._state()
            st.value = value
            st.tries_left = st.max_tries

    def block(self) -> None:
        self.set_tries(0)

    def unblock(self) -> None:
        """Counter back to its maximum, same value."""
        with self._store.transaction():
            st = self._state()
            st.tries_left = st.max_tries

    def reset(self, new_value: str | None = None) -> None:
        """What the counter does to a forgotten or blocked PIN: a value (new or the same), full."""
        with self._store.transaction():
            st = self._state()
            if new_value is not None:
                st.value = new_value
            st.tries_left = st.max_tries

    def set_tries(self, tries: int) -> None:
        """Put the counter at ``tries`` (clamped to 0..max)."""
        with self._store.transaction():
            st = self._state()
            st.tries_left = max(0, min(tries, st.max_tries))
