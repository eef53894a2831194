"""Where a new card's RSA keys come from: fresh ones, a cycling pool (tests), or a stock.

A card has seven key pairs of its own (the JPKI authentication and signature
keys, the 共通AP key 0019, the helper AP's key 0013 and session key, the
surface AP's key 001A, the MF level's card key). Generating an RSA-2048 key
costs 50-200 ms of one core, so issuing a card would cost about a second of
CPU; the counter's issue must not (docs/performance.md). So:

* :func:`generate_key` makes one key; :func:`generate_keys` makes several side
  by side in threads (OpenSSL releases the GIL);
* :class:`KeyPool` cycles through a few pre-generated keys (tests, vectors:
  speed over uniqueness);
* :class:`KeyStock` keeps keys generated ahead of time in the test CA's folder
  (``<CA dir>/keystock/``, one PKCS#8 PEM file each, owner-only); each key is
  handed out **once** (its file removed under a lock), so no two cards share a
  key. ``jpki-sim ca stock-keys N`` fills it; an issue takes what it needs from
  it and generates any shortfall side by side.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jpki_sim.card.store import folder_lock, write_atomic
from jpki_sim.errors import UserError

__all__ = ["KEYS_PER_CARD", "KeyPool", "KeySource", "KeyStock", "generate_key",
           "generate_keys", "keys_for", "private_pem"]

#: a callable handing out a fresh RSA-2048 private key each call
KeySource = Callable[[], rsa.RSAPrivateKey]
KEY_BITS = 2048
#: the key pairs of a card with both certificates and every application
KEYS_PER_CARD = 7
#: the folder of the stock inside the test CA's
STOCK_DIR = "keystock"
#: the most keys one stock holds (a card takes 7)
MAX_STOCK = 10_000


def generate_key() -> rsa.RSAPrivateKey:
    """A new RSA-2048 key pair, as the chip generates at issue and renewal."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def generate_keys(n: int) -> list[rsa.RSAPrivateKey]:
    """``n`` fresh keys, made side by side on the machine's cores."""
    if n <= 0:
        return []
    if n == 1:
        return [generate_key()]
    with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1, 8)) as pool:
        return list(pool.map(lambda _: generate_key(), range(n)))


class KeyPool:
    """Pre-generated keys handed out in turn (tests: key generation is the slow part).

    It cycles, so a pool shared by many cards must hold more keys than any one
    card uses (:data:`KEYS_PER_CARD` at issue, two more per renewal) for a
    card's keys to differ from each other.
    """

    def __init__(self, keys: Iterable[rsa.RSAPrivateKey]) -> None:
        self._keys = list(keys)
        if not self._keys:
            raise ValueError("a key pool needs keys")
        self._next = 0

    @classmethod
    def generate(cls, n: int) -> KeyPool:
        return cls(generate_keys(n))

    def __call__(self) -> rsa.RSAPrivateKey:
        key = self._keys[self._next % len(self._keys)]
        self._next += 1
        return key


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """A private key as the CA folder and the card file keep it: PKCS#8 PEM, unencrypted."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class KeyStock:
    """Keys generated ahead of time, kept in ``directory``; each one is taken once."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def of_ca(cls, ca_directory: str | os.PathLike[str]) -> KeyStock:
        return cls(Path(ca_directory) / STOCK_DIR)

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir()
                          if p.suffix == ".pem" and p.name.startswith("key-"))
        except OSError:
            return []

    def count(self) -> int:
        return len(self._files())

    def _locked(self) -> AbstractContextManager[None]:
        return folder_lock(self.directory)

    def take(self, n: int) -> list[rsa.RSAPrivateKey]:
        """``n`` keys: from the stock first (each removed from it), the rest made now."""
        taken: list[bytes] = []
        if self.directory.is_dir():
            with self._locked():
                for path in self._files()[:n]:
                    try:
                        taken.append(path.read_bytes())
                        path.unlink()
                    except OSError:
                        continue
        keys = []
        for pem in taken:
            try:
                key = serialization.load_pem_private_key(pem, password=None,
                                                         unsafe_skip_rsa_key_validation=True)
            except ValueError:
                continue  # a damaged file: skipped, a fresh key takes its place
            if isinstance(key, rsa.RSAPrivateKey) and key.key_size == KEY_BITS:
                keys.append(key)
        return keys + generate_keys(n - len(keys))

    def fill(self, target: int) -> int:
        """Generate keys (side by side) until the stock holds ``target``; returns how many."""
        if not 0 <= target <= MAX_STOCK:
            raise UserError(f"a key stock holds 0 to {MAX_STOCK} keys")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise UserError(f"{self.directory}: cannot create the key stock "
                            f"({exc.strerror})") from None
        missing = max(0, target - self.count())
        made = 0
        while made < missing:
            batch = generate_keys(min(missing - made, 2 * (os.cpu_count() or 1)))
            for key in batch:
                path = self.directory / f"key-{secrets.token_hex(8)}.pem"
                write_atomic(path, private_pem(key), 0o600)
            made += len(batch)
        return made


def keys_for(n: int, *, source: KeySource | None, ca_directory: str | os.PathLike[str]
             ) -> KeySource:  # fmt: skip
    """A key source for one card that needs ``n`` keys.

    ``source`` (a pool, a test's generator) is used as it is; without one the
    ``n`` keys are taken from the CA's :class:`KeyStock` (the shortfall made
    side by side) up front, and any further key is generated when asked for.
    """
    if source is not None:
        return source
    keys = KeyStock.of_ca(ca_directory).take(n)

    def supply() -> rsa.RSAPrivateKey:
        return keys.pop() if keys else generate_key()

    return supply
