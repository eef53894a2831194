"""A card's state on disk: one JSON document, written atomically, naming its profile.

The document is an envelope (``format``, ``version``, ``profile``) around the
profile's own fields; the store knows the envelope and nothing of any card. A
profile gives a :class:`StateCodec` that turns its fields into its state object
and back. Files are written atomically (temp file in the same folder, fsync,
rename, fsync of the folder) and created readable by their owner only, since
they hold private keys and PINs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from jpki_sim.errors import CardFileError

FORMAT = "jpki-sim-card"
VERSION = 1
#: the profile of card files written before files named theirs
LEGACY_PROFILE = "jpki"

S = TypeVar("S")


class StateCodec(Protocol[S]):
    """A profile's state schema: its fields of the document to a state object and back."""

    #: the profile name written into the envelope
    profile: str

    def decode(self, doc: dict[str, Any]) -> S:
        """The state from the document's fields; CardFileError names a bad field."""
        ...

    def encode(self, state: S) -> dict[str, Any]:
        """The document's fields (without the envelope)."""
        ...


# ---------------------------------------------------------------- file I/O


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file, whole."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def envelope(codec: StateCodec[S], state: S) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "profile": codec.profile, **codec.encode(state)}


def dumps(codec: StateCodec[S], state: S) -> bytes:
    return (json.dumps(envelope(codec, state), ensure_ascii=False, indent=1) + "\n").encode()


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card document at ``path``, its envelope checked. Raises CardFileError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise CardFileError(f"{p}: no such card file") from None
    except IsADirectoryError:
        raise CardFileError(f"{p}: is a directory, not a card file") from None
    except PermissionError:
        raise CardFileError(f"{p}: permission denied") from None
    except OSError as exc:
        raise CardFileError(f"{p}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardFileError(f"{p}: not valid JSON ({exc})") from None
    try:
        check_envelope(doc)
    except CardFileError as exc:
        raise CardFileError(f"{p}: {exc}") from None
    checked: dict[str, Any] = doc  # check_envelope made sure it is an object
    return checked


def check_envelope(doc: Any) -> str:
    """The profile a document names (old files name none: JPKI). Raises CardFileError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CardFileError(f'not a jpki-sim card file (no "format": "{FORMAT}")')
    if doc.get("version") != VERSION:
        raise CardFileError(
            f"card file version {doc.get('version')!r} is not supported (want {VERSION})"
        )
    profile = doc.get("profile", LEGACY_PROFILE)
    if not isinstance(profile, str) or not profile:
        raise CardFileError('"profile" must name a card profile')
    return profile


def profile_of(path: str | os.PathLike[str]) -> str:
    """The card profile the card file at ``path`` names."""
    return check_envelope(read_document(path))


def decode(codec: StateCodec[S], doc: dict[str, Any], where: str = "") -> S:
    named = check_envelope(doc)
    prefix = f"{where}: " if where else ""
    if named != codec.profile:
        raise CardFileError(f"{prefix}a {named!r} card, not a {codec.profile!r} one")
    try:
        return codec.decode(doc)
    except CardFileError as exc:
        raise CardFileError(f"{prefix}{exc}") from None


def load(codec: StateCodec[S], path: str | os.PathLike[str]) -> S:
    return decode(codec, read_document(path), str(path))


def save(codec: StateCodec[S], state: S, path: str | os.PathLike[str]) -> None:
    write_atomic(path, dumps(codec, state))


# ---------------------------------------------------------------- the store


class CardStore(Generic[S]):
    """A card state bound to its file. ``commit()`` writes it atomically.

    ``path=None`` keeps the card in memory only (tests, benchmarks). Changes go
    through :meth:`transaction` (or are followed by :meth:`commit`), which is
    what a PIN counter and every issuer operation use.
    """

    def __init__(
        self, codec: StateCodec[S], state: S, path: str | os.PathLike[str] | None = None
    ) -> None:
        self.codec = codec
        self.state = state
        self.path = Path(path) if path is not None else None
        self._mtime_ns = self._stat()
        self.writes = 0
        #: called after each commit (e.g. to log); must not raise
        self.on_commit: Callable[[], None] | None = None

    @property
    def profile(self) -> str:
        return self.codec.profile

    @classmethod
    def open(cls, codec: StateCodec[S], path: str | os.PathLike[str]) -> CardStore[S]:
        return cls(codec, load(codec, path), path)

    def _stat(self) -> int | None:
        if self.path is None:
            return None
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    @contextmanager
    def transaction(self) -> Iterator[S]:
        """Change the state in the ``with`` block; it is saved when the block ends."""
        yield self.state
        self.commit()

    def commit(self) -> None:
        self.writes += 1
        if self.path is not None:
            save(self.codec, self.state, self.path)
            self._mtime_ns = self._stat()
        if self.on_commit is not None:
            self.on_commit()

    def changed_on_disk(self) -> bool:
        """True when another process rewrote the file since we last read or wrote it."""
        return self.path is not None and self._stat() != self._mtime_ns

    def reload(self) -> None:
        if self.path is not None:
            self.state = load(self.codec, self.path)
            self._mtime_ns = self._stat()
