"""The card file: one writer at a time, reloads, links, leftovers, the lock file (issue 11, 1-3).

In-process tests of :mod:`jpki_sim.card.store` and the JPKI state on it; the
bounded multi-process fault tests are in ``test_faults.py``.
"""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest

from jpki_sim.card import store as card_store
from jpki_sim.card.store import CardStore
from jpki_sim.errors import CardFileError
from jpki_sim.issuer import counter as issuer
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import CardState, load, open_store, save

SELECT_JPKI = bytes.fromhex("00A4040C0A") + jpki.JPKI_AID
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
WRONG_AUTH = bytes.fromhex("0020008004") + b"9999"
RIGHT_AUTH = bytes.fromhex("0020008004") + b"1234"


@pytest.fixture
def card_file(jpki_state: CardState, tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    save(copy.deepcopy(jpki_state), path)
    return path


def served(store: CardStore) -> object:
    card = build_card(store)
    card.power_on()
    assert card.process(SELECT_JPKI) == b"\x90\x00"
    assert card.process(SELECT_AUTH_PIN) == b"\x90\x00"
    return card


def tries_on_disk(path: Path, pin: str = "auth") -> int:
    return load(path).pins[pin].tries_left


# ---------------------------------------------------------------- item 1: no lost update


def test_two_stores_on_one_file_lose_no_decrement(card_file: Path) -> None:
    """Two holders of one card file (two processes, as it were) each spend a try."""
    a, b = open_store(card_file), open_store(card_file)
    card_a, card_b = served(a), served(b)
    assert card_a.process(WRONG_AUTH) == b"\x63\xc2"  # type: ignore[attr-defined]
    # b still holds the state it loaded (3 tries): under the lock it reloads first
    assert card_b.process(WRONG_AUTH) == b"\x63\xc1"  # type: ignore[attr-defined]
    assert card_a.process(WRONG_AUTH) == b"\x63\xc0"  # type: ignore[attr-defined]
    assert tries_on_disk(card_file) == 0
    # blocked on disk: the other holder is refused without spending anything
    assert card_b.process(WRONG_AUTH) == b"\x69\x84"  # type: ignore[attr-defined]
    assert tries_on_disk(card_file) == 0


def test_a_counter_reset_elsewhere_is_not_overwritten_by_the_served_card(card_file: Path) -> None:
    """`card reset-pin` while `serve` runs: the served card's next VERIFY keeps the reset."""
    served_store = open_store(card_file)
    card = served(served_store)
    for sw in (b"\x63\xc2", b"\x63\xc1"):
        assert card.process(WRONG_AUTH) == sw  # type: ignore[attr-defined]
    counter_store = open_store(card_file)
    issuer.reset_pin(counter_store, "auth", "5678")
    assert tries_on_disk(card_file) == 3
    # the served card had 1 try in memory; it spends one of the file's 3, never resurrects 1
    assert card.process(WRONG_AUTH) == b"\x63\xc2"  # type: ignore[attr-defined]
    on_disk = load(card_file).pins["auth"]
    assert (on_disk.value, on_disk.tries_left) == ("5678", 2)
    assert card.process(bytes.fromhex("0020008004") + b"5678") == b"\x90\x00"  # type: ignore[attr-defined]


def test_a_renewal_elsewhere_reaches_the_store_and_the_loads_count(card_file: Path) -> None:
    a = open_store(card_file)
    before = a.loads
    b = open_store(card_file)
    with b.transaction() as state:
        state.identity.address = "東京都千代田区霞が関２丁目１番２号"
    assert a.changed_on_disk()
    card = served(a)
    card.process(WRONG_AUTH)  # type: ignore[attr-defined]
    assert a.loads == before + 1  # the VERIFY's transaction reloaded the file
    assert a.state.identity.address == "東京都千代田区霞が関２丁目１番２号"
    assert load(card_file).identity.address == "東京都千代田区霞が関２丁目１番２号"  # kept


def test_transactions_nest_and_inner_ones_write_at_once(card_file: Path) -> None:
    store = open_store(card_file)
    counter = issuer.pin_counter(store, "auth")
    with store.transaction():
        assert not counter.verify(b"0000")
        # the try is on disk before the outer transaction ends
        assert tries_on_disk(card_file) == 2
        assert store.in_transaction
    assert not store.in_transaction


def test_a_failed_transaction_leaves_the_file_and_reloads_the_state(card_file: Path) -> None:
    store = open_store(card_file)
    before = card_file.read_bytes()
    with pytest.raises(RuntimeError), store.transaction() as state:
        state.identity.name = "changed"
        raise RuntimeError("the operation failed half-way")
    assert card_file.read_bytes() == before
    assert store.state.identity.name == load(card_file).identity.name


def test_nothing_is_written_when_nothing_changed(card_file: Path) -> None:
    store = open_store(card_file)
    with store.transaction():
        pass
    mtime = card_file.stat().st_mtime_ns
    with store.transaction():
        pass
    assert card_file.stat().st_mtime_ns == mtime


def test_the_lock_file_counts_generations(card_file: Path) -> None:
    store = open_store(card_file)
    lock = card_store.lock_path(card_file)
    served(store).process(WRONG_AUTH)  # type: ignore[attr-defined]
    first = int.from_bytes(lock.read_bytes()[:8], "big")
    served(store).process(WRONG_AUTH)  # type: ignore[attr-defined]
    assert int.from_bytes(lock.read_bytes()[:8], "big") == first + 1
    sig = card_store.current_signature(card_file)
    assert sig is not None and sig.generation == first + 1


def test_a_writer_that_bumps_only_the_generation_is_noticed(card_file: Path) -> None:
    """Another tool following the protocol may rewrite in place; the generation tells."""
    store = open_store(card_file)
    served(store).process(WRONG_AUTH)  # type: ignore[attr-defined]
    lock = card_store.lock_path(card_file)
    gen = int.from_bytes(lock.read_bytes()[:8], "big")
    fd = os.open(lock, os.O_RDWR)
    os.pwrite(fd, (gen + 1).to_bytes(8, "big"), 0)
    os.close(fd)
    assert store.changed_on_disk()


# ---------------------------------------------------------------- item 2: links


def test_a_symlinked_card_path_is_written_through(card_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(card_file)
    store = open_store(link)
    card = served(store)
    assert card.process(WRONG_AUTH) == b"\x63\xc2"  # type: ignore[attr-defined]
    assert link.is_symlink() and os.readlink(link) == str(card_file)
    # the try is spent on the target: opening it by either name shows 2 tries
    assert tries_on_disk(card_file) == 2 and tries_on_disk(link) == 2
    # one lock for both names
    assert card_store.lock_path(link) == card_store.lock_path(card_file)
    assert not (tmp_path / ".link.json.lock").exists()


# ---------------------------------------------------------------- item 3: leftovers


def test_leftover_temporary_copies_are_removed_at_the_next_open(card_file: Path) -> None:
    folder = card_file.parent
    leftover = folder / ".card.json.a1b2c3d4.tmp"
    leftover.write_text('{"private": "key"}')
    other = folder / ".other.json.a1b2c3d4.tmp"  # another card's: not ours to remove
    other.write_text("x")
    odd = folder / ".card.json.notmine.tmp"  # not mkstemp's shape
    odd.write_text("x")
    open_store(card_file)
    assert not leftover.exists()
    assert other.exists() and odd.exists()


def test_leftovers_are_removed_by_a_writer_too(card_file: Path) -> None:
    store = open_store(card_file)
    leftover = card_file.parent / ".card.json.zzzzzzzz.tmp"
    leftover.write_text("-----BEGIN PRIVATE KEY-----")
    served(store).process(WRONG_AUTH)  # type: ignore[attr-defined]
    assert not leftover.exists()


def test_a_leftover_link_is_not_followed(card_file: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (card_file.parent / ".card.json.qqqqqqqq.tmp").symlink_to(precious)
    open_store(card_file)
    assert precious.read_text() == "keep"


# ---------------------------------------------------------------- the lock file


def test_the_lock_file_is_owner_only(card_file: Path) -> None:
    store = open_store(card_file)
    served(store).process(WRONG_AUTH)  # type: ignore[attr-defined]
    mode = card_store.lock_path(card_file).stat().st_mode
    assert stat.S_ISREG(mode) and mode & 0o777 == 0o600
    assert card_file.stat().st_mode & 0o777 == 0o600


def test_a_planted_lock_symlink_is_refused(card_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    card_store.lock_path(card_file).unlink()  # the one saving the file made
    card_store.lock_path(card_file).symlink_to(target)
    store = open_store(card_file)
    before = card_file.read_bytes()
    with pytest.raises(CardFileError, match="symbolic link"), store.transaction():
        pass
    assert not target.exists()
    assert card_file.read_bytes() == before
    # a VERIFY on the served card is refused before any comparison: 6F00, no try
    assert served(store).process(WRONG_AUTH) == b"\x6f\x00"  # type: ignore[attr-defined]
    assert card_file.read_bytes() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_lock_file_of_another_user_is_refused(card_file: Path) -> None:
    lock = card_store.lock_path(card_file)
    lock.write_bytes(b"")
    os.chown(lock, 65534, 65534)
    with pytest.raises(CardFileError, match="another user"), open_store(card_file).transaction():
        pass


def test_a_lock_held_by_another_process_times_out(card_file: Path) -> None:
    import fcntl

    lock = card_store.lock_path(card_file)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: it conflicts
    try:
        held = card_store._FileLock(card_file, timeout=0.2)
        with pytest.raises(CardFileError, match="another process has held"):
            held.acquire()
    finally:
        os.close(fd)


def test_reading_needs_no_lock_and_no_write_access(card_file: Path) -> None:
    card_file.parent.chmod(0o500)
    try:
        store = open_store(card_file)  # the leftover sweep is skipped, nothing fails
        assert store.state.pins["auth"].tries_left == 3
    finally:
        card_file.parent.chmod(0o700)


# ---------------------------------------------------------------- input that is no card file


def test_files_that_are_no_regular_files_are_refused_without_blocking(tmp_path: Path) -> None:
    import subprocess
    import sys

    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    # in a child, so that a reader that blocks on the FIFO fails the test instead of hanging it
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from jpki_sim.profiles.jpki.state import open_store;"
         " open_store(sys.argv[1])", str(fifo)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert run.returncode != 0 and "not a regular file" in run.stderr, run.stderr[-500:]
    with pytest.raises(CardFileError, match="not a regular file"):
        open_store("/dev/null")
    with pytest.raises(CardFileError, match="directory"):
        open_store(tmp_path)


def test_oversized_and_deeply_nested_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (card_store.MAX_FILE_SIZE + 1))
    with pytest.raises(CardFileError, match="too big"):
        open_store(big)
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "jpki-sim-card", "version": 1, "x": ' + "[" * 100000
                    + "]" * 100000 + "}")
    with pytest.raises(CardFileError, match="nested too deeply"):
        open_store(deep)
    shallow_but_over = tmp_path / "over.json"
    nested: list = []
    for _level in range(card_store.MAX_DEPTH):
        nested = [nested]
    shallow_but_over.write_text(json.dumps({"format": "jpki-sim-card", "version": 1,
                                            "x": nested}))
    with pytest.raises(CardFileError, match="nested too deeply"):
        open_store(shallow_but_over)


# ---------------------------------------------------------------- a served card and a reload


def test_a_served_card_is_rebuilt_at_power_on_after_a_reload(card_file: Path,
                                                             tmp_path: Path) -> None:
    """A renewal elsewhere while serving: counters at once, certificates at the next power-on.

    The reload happens inside the served card's VERIFY (under the lock): the file's
    mtime is then what the store last saw, so the power-on must tell from the
    store's loads, not from the file, that the card's files are stale.
    """
    from datetime import date

    from jpki_sim.control.served import ServedCard
    from jpki_sim.issuer.lifecycle import FixedClock, renewal_opens

    served_store = open_store(card_file)
    card = ServedCard(served_store)
    card.power_on()
    assert card.process(SELECT_JPKI) == b"\x90\x00"
    assert card.process(SELECT_AUTH_PIN) == b"\x90\x00"
    first_engine = card.engine
    old = load(card_file)
    assert old.auth is not None and old.ca_dir is not None

    counter = open_store(card_file)
    at = renewal_opens(old.auth.expires)
    assert at > date(2000, 1, 1)
    pins = {"auth": "1234", "sign": "ABC123"}
    issuer.renew(counter, pins=pins, clock=FixedClock(at), keys=issuer.KeyPool.generate(2))
    new = load(card_file)
    assert new.auth is not None and new.auth.cert_der != old.auth.cert_der

    # the served card's next VERIFY reloads the state under the lock...
    assert card.process(WRONG_AUTH) == b"\x63\xc2"
    assert not served_store.changed_on_disk()
    # ... the session keeps its card; the next power-on rebuilds it from the file
    assert card.engine is first_engine
    card.power_off()
    card.power_on()
    assert card.engine is not first_engine
    assert card.process(SELECT_JPKI) == b"\x90\x00"
    assert card.process(bytes.fromhex("00A4020C02000A")) == b"\x90\x00"
    head = card.process(bytes.fromhex("00B0000004"))[:-2]
    length = int.from_bytes(head[2:4], "big") + 4
    data = b""
    while len(data) < length:
        step = min(256, length - len(data))
        off = len(data)
        data += card.process(bytes([0x00, 0xB0, off >> 8, off & 0xFF, step % 256]))[:-2]
    assert data == new.auth.cert_der
    # nothing changed since: the next power-on keeps the card
    rebuilt = card.engine
    card.power_off()
    card.power_on()
    assert card.engine is rebuilt
