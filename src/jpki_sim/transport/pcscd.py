"""Find, start and stop pcscd, and read the vpcd reader configuration.

Shared by ``jpki-sim serve``, ``jpki-sim doctor`` and the test harness.

We run pcscd in the foreground (``pcscd -f``) as our child so that it stops
with us, and never with ``--auto-exit``: that mode quits after 60 s without a
PC/SC client even while a virtual card is attached. Only the standard library
is imported here; pyscard (through :mod:`jpki_sim.pcsc`) only where readers
are listed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jpki_sim.errors import JpkiSimError

SOCKET_PATH = "/run/pcscd/pcscd.comm"
PID_PATH = "/run/pcscd/pcscd.pid"
READER_CONF_DIR = Path("/etc/reader.conf.d")
VPCD_DRIVER_PATHS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
#: vpcd's compile-time slot count: each reader.conf entry gives two readers
VPCD_SLOTS = 2
#: what tools/setup.sh and ``serve --install`` put on a Debian/Ubuntu machine
APT_PACKAGES = ("pcscd", "vsmartcard-vpcd", "opensc", "pcsc-tools", "libpcsclite-dev")
SETUP_HINT = (
    "run `sudo tools/setup.sh` from the jpki-sim checkout (or `sudo jpki-sim serve --install`)"
)


#: the lock every user of this machine's vpcd readers takes turns on (test sessions,
#: `vectors run --pcsc`, the benchmark), so two runs never serve cards to one reader
READER_LOCK_PATH = "/tmp/jpki-sim-pcsc.lock"
#: set (to 1) for a child process whose parent already holds the reader lock
READER_LOCK_HELD_ENV = "JPKI_SIM_PCSC_LOCK_HELD"


class ReadersBusy(TimeoutError):
    """Another run held the reader lock for the whole wait."""


def take_reader_lock(timeout: float, path: str = READER_LOCK_PATH) -> IO[str] | None:
    """Wait until this process holds the machine-wide vpcd reader lock.

    Returns the open lock file: closing it releases the lock. Returns None when
    :data:`READER_LOCK_HELD_ENV` says the caller's parent holds it already.
    Raises :class:`ReadersBusy` after ``timeout`` seconds.
    """
    import fcntl

    if os.environ.get(READER_LOCK_HELD_ENV, "") not in ("", "0"):
        return None
    # O_NOFOLLOW: never chmod or lock through a symlink someone planted in /tmp
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    lock = os.fdopen(fd, "r+")
    try:
        os.fchmod(fd, 0o666)  # let other users' runs take turns too
    except PermissionError:
        pass
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                raise ReadersBusy(
                    f"another run held {path} (PC/SC tests, vectors or a benchmark) "
                    f"for {timeout:.0f} s"
                ) from None
            time.sleep(0.2)


class PcscdError(JpkiSimError):
    """pcscd is missing, would not start, or did not show the expected readers."""


def socket_path() -> str:
    """The socket PC/SC clients use (pcsc-lite's client honours PCSCLITE_CSOCK_NAME)."""
    return os.environ.get("PCSCLITE_CSOCK_NAME") or SOCKET_PATH


def find_binary() -> str | None:
    """Path of the pcscd program, also when /usr/sbin is not on PATH (non-root shells)."""
    found = shutil.which("pcscd")
    if found:
        return found
    for candidate in ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd", "/sbin/pcscd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def vpcd_driver() -> str | None:
    for candidate in VPCD_DRIVER_PATHS:
        if os.path.exists(candidate):
            return candidate
    return None


def is_running() -> bool:
    """True when something answers on pcscd's socket (a stale socket file does not)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(socket_path())
    except OSError:
        return False
    finally:
        sock.close()
    return True


def running_pid() -> int | None:
    """pid from pcscd's pid file, when that process is alive."""
    try:
        pid = int(Path(PID_PATH).read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def is_root() -> bool:
    return os.geteuid() == 0


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def stale_socket() -> str | None:
    """Why pcscd's socket file is there although nothing answers on it, or None.

    A pcscd killed with SIGKILL leaves ``pcscd.comm`` and ``pcscd.pid``. A new
    pcscd copes when the pid is dead, but refuses to start ("Another pcscd
    seems to be running") when the pid has been reused by another process.
    """
    path = Path(socket_path())
    if not path.exists() or is_running():
        return None
    pid_text = ""
    try:
        pid_text = Path(PID_PATH).read_text().split()[0]
    except (OSError, IndexError):
        pass
    if pid_text.isdigit():
        pid = int(pid_text)
        name = _process_name(pid)
        if name == "pcscd":
            return f"pcscd (pid {pid}) runs but does not answer on {path}"
        if name is not None:
            return f"{path} is left from a killed pcscd; its pid {pid} is now {name!r}"
    return f"{path} is left from a killed pcscd"


def clear_stale_socket() -> str | None:
    """Remove a killed pcscd's socket and pid file so a new pcscd can start.

    Returns what was done (for the user), None when nothing was stale. Raises
    PcscdError when a pcscd process is alive but does not answer (it must be
    stopped by hand) or the files cannot be removed.
    """
    why = stale_socket()
    if why is None:
        return None
    if why.startswith("pcscd (pid"):
        raise PcscdError(f"{why}: stop it (kill it) and start again")
    for leftover in (socket_path(), PID_PATH):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise PcscdError(f"{why}, and it cannot be removed ({exc.strerror})") from None
    return f"{why}: removed it"


#: prctl's option: the signal a process gets when its parent dies (Linux)
PR_SET_PDEATHSIG = 1


def _child_setup() -> Callable[[], None] | None:
    """What a child runs before exec to get SIGTERM when the process that started it dies.

    So a pcscd that ``jpki-sim serve`` started never outlives it, even after a
    ``kill -9`` of serve (prctl PR_SET_PDEATHSIG, which survives exec). The
    function is looked up here, in the parent: the child only calls it.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # not Linux: the pcscd we start only stops with a clean stop
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


# ---------------------------------------------------------------- vpcd readers


@dataclass(frozen=True)
class VpcdReader:
    """One vpcd entry of reader.conf.d: ``slots`` readers on consecutive ports."""

    friendly_name: str
    port: int  # port of slot 0
    conf_file: str
    slots: int = VPCD_SLOTS

    @property
    def ports(self) -> range:
        return range(self.port, self.port + self.slots)


def _conf_entries(text: str) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        key = key.upper()
        value = value.strip().strip('"')
        if key == "FRIENDLYNAME" and "FRIENDLYNAME" in current:
            entries.append(current)
            current = {}
        current[key] = value
    if current:
        entries.append(current)
    return entries


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def vpcd_readers(conf_dir: Path = READER_CONF_DIR) -> list[VpcdReader]:
    """The vpcd readers configured in reader.conf.d (listen mode only)."""
    found: list[VpcdReader] = []
    try:
        files = sorted(p for p in conf_dir.iterdir() if p.is_file())
    except OSError:
        return found
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for entry in _conf_entries(text):
            if "vpcd" not in entry.get("LIBPATH", ""):
                continue
            device = entry.get("DEVICENAME", "")
            host, _, port_text = device.rpartition(":")
            port = _number(port_text) if port_text else None
            if port is None:
                port = _number(entry.get("CHANNELID", ""))
            if port is None:
                continue
            found.append(VpcdReader(entry.get("FRIENDLYNAME", "Virtual PCD"), port, str(path)))
    return found


def vpcd_reader_for_port(port: int, readers: Sequence[VpcdReader]) -> tuple[VpcdReader, int] | None:
    """The configured vpcd reader and slot that listen on ``port``."""
    for reader in readers:
        if port in reader.ports:
            return reader, port - reader.port
    return None


def pcsc_reader_name(port: int, live_readers: Sequence[str] | None = None,
                     conf: Sequence[VpcdReader] | None = None) -> str | None:
    """The PC/SC reader name pcscd gives the vpcd slot on ``port``.

    pcscd names a reader "<FRIENDLYNAME> <reader number> <slot>" in hex, the
    reader number counting all readers in the order they were added. With the
    live reader list we pick the one matching name and slot; if several vpcd
    entries share a friendly name we go by their order in reader.conf.d.
    Without a live list we guess reader number 00.
    """
    conf = vpcd_readers() if conf is None else conf
    match = vpcd_reader_for_port(port, conf)
    if match is None:
        return None
    entry, slot = match
    if live_readers is None:
        return f"{entry.friendly_name} 00 {slot:02X}"
    pattern = re.compile(rf"^{re.escape(entry.friendly_name)} ([0-9A-F]{{2}}) {slot:02X}$")
    candidates = sorted((m.group(1), name) for name in live_readers if (m := pattern.match(name)))
    if not candidates:
        return None
    same_name = [e for e in conf if e.friendly_name == entry.friendly_name]
    ordinal = same_name.index(entry)
    return candidates[min(ordinal, len(candidates) - 1)][1]


# ---------------------------------------------------------------- the daemon


class Pcscd:
    """A pcscd we started in the foreground; :meth:`stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        debug: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        config_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        self.debug = debug
        self.log_path = Path(log_path) if log_path is not None else None
        self.config_dir = config_dir
        self.process: subprocess.Popen[bytes] | None = None
        #: what start() did about a stale socket, if anything
        self.cleared: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def command(self) -> list[str]:
        if self.binary is None:
            raise PcscdError(f"pcscd is not installed: {SETUP_HINT}")
        cmd = [self.binary, "--foreground"]
        if self.debug:
            cmd += ["--debug", "--apdu"]
        if self.config_dir is not None:
            cmd += ["--config", str(self.config_dir)]
        return cmd

    def start(self, timeout: float = 10.0, *, with_parent: bool = True) -> Pcscd:
        """Start pcscd and wait until its socket answers.

        ``with_parent``: pcscd gets SIGTERM when this process dies, however it
        dies. A socket left by a killed pcscd is removed first
        (:func:`clear_stale_socket`); :attr:`cleared` says so.
        """
        if is_running():
            raise PcscdError("pcscd is already running; use it instead of starting another")
        self.cleared = clear_stale_socket()
        cmd = self.command()
        out = open(self.log_path, "wb") if self.log_path is not None else subprocess.DEVNULL
        prepare = _child_setup() if with_parent else None
        try:
            self.process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in our terminal goes to us; we stop it
                preexec_fn=prepare,  # noqa: PLW1509
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while not is_running():
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise PcscdError(f"pcscd exited with status {code} at start{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PcscdError(f"pcscd did not open {socket_path()} within {timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (pcscd then removes its socket and pid file), SIGKILL if it hangs."""
        proc = self.process
        if proc is None:
            return None
        self.process = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log_tail(self) -> str:
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return (": " + lines[-1].strip()) if lines else ""

    def __enter__(self) -> Pcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_readers(names: Sequence[str] | None = None, timeout: float = 10.0) -> list[str]:
    """Poll pcscd until the named readers (or, with None, any vpcd reader) are listed."""
    from jpki_sim.transport.pcsc import PcscError, list_readers

    conf = vpcd_readers()
    prefixes = tuple({r.friendly_name for r in conf}) or ("Virtual PCD",)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            readers = list_readers()
        except PcscError:
            readers = []
        if names is not None:
            if all(n in readers for n in names):
                return readers
        elif any(r.startswith(prefixes) for r in readers):
            return readers
        if time.monotonic() > deadline:
            want = ", ".join(names) if names else "a vpcd reader"
            raise PcscdError(
                f"pcscd did not show {want} within {timeout:.0f} s "
                f"(readers: {', '.join(readers) or 'none'}); is vsmartcard-vpcd installed?"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def apt_install(packages: Sequence[str] = APT_PACKAGES) -> None:
    """apt-get update + install (root only; used by ``serve --install``)."""
    if not is_root():
        raise PcscdError(
            f"installing packages needs root: sudo apt-get install {' '.join(packages)}"
        )
    if shutil.which("apt-get") is None:
        raise PcscdError(
            f"no apt-get here: install {', '.join(packages)} with this system's package manager"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends",
                                        *packages]):
        result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise PcscdError(f"`{' '.join(cmd)}` failed with status {result.returncode}")
