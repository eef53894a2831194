"""A card's state on disk: one JSON document, written atomically, one writer at a time.

The document is an envelope (``format``, ``version``, ``profile``) around the
profile's own fields; the store knows the envelope and nothing of any card. A
profile gives a :class:`StateCodec` that turns its fields into its state object
and back.

The file protocol (docs/protocol.md, "The card file", which other tools may
follow to take part):

* **One writer at a time.** Every read-modify-write holds an exclusive
  ``flock`` on the lock file ``.NAME.lock`` beside the card file's real path
  (symbolic links to the card file are followed; the lock file itself is never
  a link, is owned by the user and is mode 0600). Under the lock the writer
  reloads the card file if it changed since it last read it, changes the
  state, writes it atomically and bumps the generation counter kept in the
  lock file (8 bytes, big-endian, at offset 0). :meth:`CardStore.transaction`
  is that sequence.
* **Atomic writes through links.** A write goes to a temporary file
  ``.NAME.XXXXXXXX.tmp`` in the real file's folder, is fsynced, renamed over
  the real file (a symbolic link to it stays a link) and the folder fsynced.
  A writer killed half-way leaves a temporary file, which the next writer
  removes under the lock (it may hold private keys).
* **Change detection.** A store remembers the card file's (device, inode,
  size, mtime, ctime) and the lock file's generation from its last read or
  write; either differing means another process wrote the file.
* **Sane input.** Only a regular file of at most :data:`MAX_FILE_SIZE` bytes
  is read (a FIFO, a device or a directory is refused without blocking), as
  UTF-8 JSON nested at most :data:`MAX_DEPTH` levels.

Files are created readable by their owner only, since they hold private keys
and PINs. Readers need no lock: a rename is atomic.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, Protocol, TypeVar

from jpki_sim.errors import CardFileError

FORMAT = "jpki-sim-card"
VERSION = 1
#: the profile of card files written before files named theirs
LEGACY_PROFILE = "jpki"

#: the largest card file read (a JPKI card is about 12 KB)
MAX_FILE_SIZE = 1 << 20
#: the deepest nesting of JSON objects and arrays accepted in a card file
MAX_DEPTH = 32
#: how long a writer waits for another process's lock before giving up
LOCK_TIMEOUT = 30.0
#: mkstemp's random part: 8 characters
_TEMP_RANDOM = 8

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


# ---------------------------------------------------------------- paths


def real_path(path: str | os.PathLike[str]) -> Path:
    """The file a path names, symbolic links followed (writes go through to it)."""
    return Path(os.path.realpath(os.fspath(path)))


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file of the card file at ``path``: ``.NAME.lock`` beside its real path."""
    real = real_path(path)
    return real.with_name(f".{real.name}.lock")


def _temp_prefix(real: Path) -> str:
    return f".{real.name}."


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ---------------------------------------------------------------- file I/O


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive lock of a folder's files (``FOLDER/.lock``, owner-only) for a while.

    The writers of a folder (a test CA's records, its key stock) take it around a
    read-modify-write, so two processes never interleave theirs.
    """
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new file, whole.

    A symbolic link at ``path`` is written through: its target is replaced and
    the link stays. Raises OSError (the temporary file is removed).
    """
    target = real_path(path)
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=folder)
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


def open_private(path: str | os.PathLike[str], mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing (``"w"``, ``"wb"``, ``"a"``, ``"ab"``), readable by its owner only.

    For files that may hold PINs or the holder's data (traces, vector files,
    shell history): created 0600, and an existing regular file of ours is
    brought to 0600 before anything is written to it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def private_dir(path: str | os.PathLike[str]) -> Path:
    """The folder ``path``, created (with its parents) if needed; ours becomes mode 0700."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        st = folder.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            folder.chmod(0o700)
    except OSError:
        pass
    return folder


def envelope(codec: StateCodec[S], state: S) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "profile": codec.profile, **codec.encode(state)}


def dumps(codec: StateCodec[S], state: S) -> bytes:
    return (json.dumps(envelope(codec, state), ensure_ascii=False, indent=1) + "\n").encode()


@dataclass(frozen=True)
class Signature:
    """What tells one version of a card file from another (see the module docstring)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    generation: int

    @classmethod
    def of(cls, st: os.stat_result, generation: int) -> Signature:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, generation)


def _read_generation(lock: Path) -> int:
    """The generation counter in a card's lock file (0 when there is none yet)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return 0
        raw = os.pread(fd, 8, 0)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int.from_bytes(raw, "big") if len(raw) == 8 else 0


def current_signature(path: str | os.PathLike[str]) -> Signature | None:
    """The signature of the card file at ``path`` now (None when it is not there)."""
    real = real_path(path)
    generation = _read_generation(real.with_name(f".{real.name}.lock"))
    try:
        return Signature.of(os.stat(real), generation)
    except OSError:
        return None


def _read_raw(path: str | os.PathLike[str]) -> tuple[bytes, Signature]:
    """The bytes of a card file and their signature. Raises CardFileError."""
    p = Path(path)
    real = real_path(p)
    # the generation first: a counter older than the content only costs a reload later
    generation = _read_generation(real.with_name(f".{real.name}.lock"))
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise CardFileError(f"{p}: no such card file") from None
    except IsADirectoryError:
        raise CardFileError(f"{p}: is a directory, not a card file") from None
    except PermissionError:
        raise CardFileError(f"{p}: permission denied") from None
    except OSError as exc:
        raise CardFileError(f"{p}: {_os_reason(exc)}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise CardFileError(f"{p}: is a directory, not a card file")
        if not stat.S_ISREG(st.st_mode):
            raise CardFileError(f"{p}: not a regular file (a FIFO, socket or device)")
        if st.st_size > MAX_FILE_SIZE:
            raise CardFileError(
                f"{p}: {st.st_size} bytes is too big for a card file (at most {MAX_FILE_SIZE})"
            )
        chunks = []
        left = MAX_FILE_SIZE + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
        if len(raw) > MAX_FILE_SIZE:
            raise CardFileError(f"{p}: too big for a card file (at most {MAX_FILE_SIZE} bytes)")
    except OSError as exc:
        raise CardFileError(f"{p}: {_os_reason(exc)}") from None
    finally:
        os.close(fd)
    return raw, Signature.of(st, generation)


def _depth(doc: Any) -> int:
    """How deeply JSON objects and arrays nest in ``doc`` (a scalar: 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_document(raw: bytes, where: str = "") -> dict[str, Any]:
    """The card document in ``raw``, its envelope checked. Raises CardFileError."""
    prefix = f"{where}: " if where else ""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardFileError(f"{prefix}not valid JSON ({exc})") from None
    except ValueError:  # an integer of thousands of digits (Python's int conversion limit)
        raise CardFileError(f"{prefix}not valid JSON (a number far too long)") from None
    except RecursionError:
        doc = None
        deep = True
    else:
        deep = _depth(doc) > MAX_DEPTH
    if deep:
        raise CardFileError(f"{prefix}JSON nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        check_envelope(doc)
    except CardFileError as exc:
        raise CardFileError(f"{prefix}{exc}") from None
    checked: dict[str, Any] = doc  # check_envelope made sure it is an object
    return checked


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card document at ``path``, its envelope checked. Raises CardFileError."""
    raw, _sig = _read_raw(path)
    return parse_document(raw, str(path))


def check_envelope(doc: Any) -> str:
    """The profile a document names (old files name none: JPKI). Raises CardFileError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CardFileError(f'not a jpki-sim card file (no "format": "{FORMAT}")')
    version = doc.get("version")
    if version != VERSION or isinstance(version, bool):
        shown = repr(version) if isinstance(version, (int, str)) and len(str(version)) < 20 \
            else "of another kind"
        raise CardFileError(f"card file version {shown} is not supported (want {VERSION})")
    profile = doc.get("profile", LEGACY_PROFILE)
    if not isinstance(profile, str) or not profile or len(profile) > 64:
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
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # a codec that missed a check must still not fail later with a traceback
        raise CardFileError(f"{prefix}malformed card file ({type(exc).__name__})") from None


@dataclass
class Loaded:
    """A card file read from disk: its document and the signature of what was read."""

    path: Path
    doc: dict[str, Any]
    signature: Signature


def read_file(path: str | os.PathLike[str]) -> Loaded:
    raw, sig = _read_raw(path)
    return Loaded(Path(path), parse_document(raw, str(path)), sig)


def load(codec: StateCodec[S], path: str | os.PathLike[str]) -> S:
    return decode(codec, read_document(path), str(path))


def save(codec: StateCodec[S], state: S, path: str | os.PathLike[str]) -> None:
    """Write ``state`` as the card file at ``path`` (replacing it), under the card's lock."""
    with _FileLock(path) as lock:
        lock.write(dumps(codec, state))


# ---------------------------------------------------------------- the lock


class _FileLock:
    """The exclusive lock on one card file, and the writes made while holding it."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = LOCK_TIMEOUT) -> None:
        self.shown = Path(path)
        self.real = real_path(path)
        self.path = self.real.with_name(f".{self.real.name}.lock")
        self.timeout = timeout
        self.fd: int | None = None

    # ---- taking and releasing

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CardFileError(
                    f"{self.path}: the card's lock file is a symbolic link; refusing to use it"
                ) from None
            raise CardFileError(
                f"cannot write {self.shown}: {self.path}: {_os_reason(exc)}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CardFileError(f"{self.path}: the card's lock file is not a regular file")
            if st.st_uid != os.geteuid():
                raise CardFileError(f"{self.path}: the card's lock file belongs to another user")
            if st.st_mode & 0o777 != 0o600:
                os.fchmod(fd, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def acquire(self, *, wait: bool = True) -> bool:
        fd = self._open()
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return False
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CardFileError(
                        f"{self.shown}: another process has held the card file's lock "
                        f"for {self.timeout:.0f} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> _FileLock:
        self.acquire()
        self.clean_temporaries()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # ---- while held

    @property
    def generation(self) -> int:
        assert self.fd is not None
        raw = os.pread(self.fd, 8, 0)
        return int.from_bytes(raw, "big") if len(raw) == 8 else 0

    def signature(self) -> Signature | None:
        try:
            return Signature.of(os.stat(self.real), self.generation)
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> Signature:
        """Replace the card file with ``data`` and bump the generation. Raises CardFileError."""
        assert self.fd is not None
        try:
            write_atomic(self.real, data)
            generation = (self.generation + 1) % (1 << 64)
            os.pwrite(self.fd, generation.to_bytes(8, "big"), 0)
            return Signature.of(os.stat(self.real), generation)
        except OSError as exc:
            raise CardFileError(f"cannot write {self.shown}: {_os_reason(exc)}") from None

    def clean_temporaries(self) -> list[str]:
        """Remove temporary files a killed writer left (only ours, only regular files)."""
        prefix = _temp_prefix(self.real)
        want = len(prefix) + _TEMP_RANDOM + len(".tmp")
        removed: list[str] = []
        try:
            names = os.listdir(self.real.parent)
        except OSError:
            return removed
        for name in names:
            if not (name.startswith(prefix) and name.endswith(".tmp") and len(name) == want):
                continue
            leftover = self.real.parent / name
            try:
                st = os.lstat(leftover)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    os.unlink(leftover)
                    removed.append(name)
            except OSError:
                continue
        return removed


def clean_temporaries(path: str | os.PathLike[str]) -> list[str]:
    """Remove leftover temporary copies of the card file at ``path`` if no writer is busy.

    Returns the names removed; nothing when the lock cannot be had at once or
    the folder is not writable.
    """
    lock = _FileLock(path)
    try:
        if not lock.acquire(wait=False):
            return []
    except CardFileError:
        return []
    try:
        return lock.clean_temporaries()
    finally:
        lock.release()


# ---------------------------------------------------------------- the store


class CardStore(Generic[S]):
    """A card state bound to its file.

    Changes go through :meth:`transaction`: it takes the card file's lock,
    reloads the state if another process changed the file, lets the caller
    change :attr:`state`, then writes it and releases the lock. Transactions
    nest (in one thread): an inner one, and :meth:`commit` inside one, write at
    once under the lock already held, so a PIN try is on disk before the
    comparison even inside an issuer's longer operation. :meth:`commit`
    outside a transaction replaces the file with :attr:`state` (a new card).

    A transaction that raises leaves the file as the last write made it, and
    :attr:`state` is reloaded from it. ``path=None`` keeps the card in memory
    only (tests, benchmarks).

    :attr:`loads` counts the times :attr:`state` was replaced by a state read
    from disk: whoever built something from the state (a card engine's files)
    compares it to know when to rebuild.
    """

    def __init__(
        self,
        codec: StateCodec[S],
        state: S,
        path: str | os.PathLike[str] | None = None,
        *,
        signature: Signature | None = None,
    ) -> None:
        self.codec = codec
        self.state = state
        self.path = Path(path) if path is not None else None
        self._seen: Signature | None = (
            signature if signature is not None or path is None else current_signature(path)
        )
        self._written: bytes | None = None
        self.writes = 0
        self.loads = 0
        #: called after each commit (e.g. to log); must not raise
        self.on_commit: Callable[[], None] | None = None
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock: _FileLock | None = None

    @property
    def profile(self) -> str:
        return self.codec.profile

    @classmethod
    def open(cls, codec: StateCodec[S], path: str | os.PathLike[str]) -> CardStore[S]:
        return cls.from_loaded(codec, read_file(path))

    @classmethod
    def from_loaded(cls, codec: StateCodec[S], loaded: Loaded) -> CardStore[S]:
        """The store of a card file just read; leftover temporary copies are removed."""
        state = decode(codec, loaded.doc, str(loaded.path))
        store = cls(codec, state, loaded.path, signature=loaded.signature)
        clean_temporaries(loaded.path)
        return store

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[S]:
        """Change the state in the ``with`` block, with no other writer; saved when it ends."""
        if self.path is None:
            yield self.state
            self.commit()
            return
        with self._mutex:
            outer = self._depth == 0
            if outer:
                taken = _FileLock(self.path)
                taken.__enter__()
                self._lock = taken
            self._depth += 1
            try:
                if outer:
                    self._refresh_locked()
                yield self.state
                self.commit()
            except BaseException:
                if outer:
                    self._recover()
                raise
            finally:
                self._depth -= 1
                if outer:
                    held, self._lock = self._lock, None
                    assert held is not None
                    held.release()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def commit(self) -> None:
        """Write the state now: under the transaction's lock, or (outside one) taking it."""
        if self.path is not None:
            data = dumps(self.codec, self.state)
            with self._mutex:
                if self._lock is not None:
                    self._write_locked(self._lock, data)
                else:
                    with _FileLock(self.path) as lock:
                        self._write_locked(lock, data)
        else:
            self.writes += 1
        if self.on_commit is not None:
            self.on_commit()

    def _write_locked(self, lock: _FileLock, data: bytes) -> None:
        if data == self._written and lock.signature() == self._seen:
            return  # nothing changed since our own last write
        self._seen = lock.write(data)
        self._written = data
        self.writes += 1

    def _refresh_locked(self) -> None:
        assert self._lock is not None and self.path is not None
        if self._lock.signature() != self._seen:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        loaded = read_file(self.path)
        self.state = decode(self.codec, loaded.doc, str(self.path))
        self._seen = loaded.signature
        self._written = None
        self.loads += 1

    def _recover(self) -> None:
        """After a failed transaction: the state as the file has it (or reload next time)."""
        try:
            self._load()
        except CardFileError:
            self._seen = None

    # ------------------------------------------------------------ other processes

    def changed_on_disk(self) -> bool:
        """True when another process rewrote the file since we last read or wrote it."""
        return self.path is not None and current_signature(self.path) != self._seen

    def reload(self) -> None:
        """Read the state from the file again (CardFileError leaves the current state)."""
        if self.path is not None:
            with self._mutex:
                self._load()

    def refresh(self) -> bool:
        """Reload if another process changed the file; True when it did."""
        if not self.changed_on_disk():
            return False
        self.reload()
        return True
