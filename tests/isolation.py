"""Private namespaces for tests that must not touch the machine's PC/SC stack or mounts.

The machine's pcscd (``/run/pcscd``) and its vpcd ports (35963, 35964) are
shared by every test run on the machine. A test that kills or starts pcscd,
fills a disk or mounts anything runs its subjects in a :class:`Namespace`
instead: a private mount namespace (``unshare --mount``, mounts private)
with its own tmpfs on ``/run/pcscd`` and any other tmpfs the test asks for,
and a private network namespace (``--net``) with only its own loopback up,
so a pcscd started in it has its own socket and its own vpcd ports.

Processes are started inside with ``nsenter`` (no PID namespace, so their
pids are ordinary pids of this machine and ``kill -9`` works on them). The
namespace lives as long as its holder process (``sleep``); :meth:`close`
ends it, and with it every mount.

    with Namespace(tmpfs={"/mnt/small": "size=64k"}) as ns:
        ns.run(["df", "/mnt/small"])
        pcscd = ns.popen(["pcscd", "--foreground"])

Without ``unshare``/``nsenter`` or the right to use them (not root, a
container without CAP_SYS_ADMIN), :func:`require_namespaces` skips the test,
or fails it under ``JPKI_SIM_REQUIRE_PCSC=1`` as every PC/SC test does.
:class:`IsolatedPcscd` is a namespace with a pcscd (and its vpcd readers) of
its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PCSCD_DIR = "/run/pcscd"


class NamespaceUnavailable(RuntimeError):
    pass


def _probe() -> str | None:
    """None when private namespaces work here, else why not."""
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux)"
    if os.geteuid() != 0:
        return "private mount and network namespaces need root"
    try:
        run = subprocess.run(
            ["unshare", "--mount", "--net", "--fork", "true"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if run.returncode != 0:
        return f"unshare --mount --net is not allowed here: {run.stderr.strip()}"
    return None


_PROBED: list[str | None] = []


def namespaces_unavailable() -> str | None:
    if not _PROBED:
        _PROBED.append(_probe())
    return _PROBED[0]


def require_namespaces() -> None:
    """Skip (locally) or fail (JPKI_SIM_REQUIRE_PCSC=1) when namespaces cannot be made."""
    reason = namespaces_unavailable()
    if reason is not None:
        from pcsc_harness import unavailable

        unavailable(reason)


class Namespace:
    """A private mount + network namespace with its own tmpfs mounts and loopback."""

    def __init__(
        self,
        *,
        tmpfs: Mapping[str, str] | None = None,
        pcscd_dir: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.mounts: dict[str, str] = {}
        if pcscd_dir:
            self.mounts[PCSCD_DIR] = "size=1m,mode=0755"
        self.mounts.update(tmpfs or {})
        self.env = {**os.environ, **(env or {})}
        self.holder: subprocess.Popen[str] | None = None
        self.pid: int | None = None
        self._children: list[subprocess.Popen[Any]] = []

    # ------------------------------------------------------------ lifetime

    def start(self, timeout: float = 10.0) -> Namespace:
        reason = namespaces_unavailable()
        if reason is not None:
            raise NamespaceUnavailable(reason)
        lines = ["set -e"]
        for target, options in self.mounts.items():
            lines.append(f"mkdir -p '{target}'")
            lines.append(f"mount -t tmpfs -o '{options}' tmpfs '{target}'")
        lines += ["ip link set lo up", "echo ready $$", "exec sleep 86400"]
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--net", "--fork",
             "sh", "-c", "\n".join(lines)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        assert self.holder.stdout is not None
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.holder.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.close()
            raise NamespaceUnavailable("the namespace did not come up in time")
        line = self.holder.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            err = self.holder.stderr.read() if self.holder.stderr else ""
            self.close()
            raise NamespaceUnavailable(f"namespace setup failed: {err.strip()}")
        self.pid = int(line[1])
        return self

    def _members(self) -> list[int]:
        """Every process in this namespace (also those our children started, like a pcscd)."""
        if self.pid is None:
            return []
        try:
            ours = os.readlink(f"/proc/{self.pid}/ns/mnt")
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == ours:
                    found.append(int(entry))
            except OSError:
                continue
        return found

    def close(self) -> None:
        # nothing started inside may outlive the test, whoever started it
        for pid in self._members():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in self._children:
            if child.poll() is None:
                child.kill()
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._children.clear()
        holder, self.holder = self.holder, None
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # the namespace's own sleep
            except ProcessLookupError:
                pass
        if holder is not None:
            try:
                os.killpg(holder.pid, signal.SIGKILL)  # unshare and all it forked
            except ProcessLookupError:
                pass
            holder.wait(5)

    def __enter__(self) -> Namespace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ running inside

    def command(self, argv: Sequence[str]) -> list[str]:
        assert self.pid is not None, "namespace not started"
        return ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *argv]

    def run(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        kw.setdefault("env", self.env)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        kw.setdefault("check", False)
        return subprocess.run(self.command(argv), **kw)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """A process inside the namespace; its pid is the command's own (nsenter execs it)."""
        kw.setdefault("env", self.env)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.command(argv), **kw)
        self._children.append(proc)
        return proc

    def path(self, inside: str) -> Path:
        """A path of the namespace's mounts as this process can reach it."""
        assert self.pid is not None
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def python(self, code: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
        return self.run([sys.executable, "-c", code, *args], **kw)


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class IsolatedPcscd(Namespace):
    """A namespace with its own pcscd running (and so its own vpcd readers 00 00 and 00 01)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.pcscd: subprocess.Popen[Any] | None = None
        self.log = None

    def start(self, timeout: float = 10.0) -> IsolatedPcscd:
        super().start(timeout)
        self.start_pcscd(timeout)
        return self

    def start_pcscd(self, timeout: float = 10.0) -> subprocess.Popen[Any]:
        binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
        self.pcscd = self.popen([binary, "--foreground"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        sock = self.path(f"{PCSCD_DIR}/pcscd.comm")
        if not wait_until(lambda: _answers(sock), timeout):
            raise NamespaceUnavailable("the isolated pcscd did not open its socket")
        return self.pcscd


def _answers(sock: Path) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(sock))
    except OSError:
        return False
    finally:
        s.close()
    return True
