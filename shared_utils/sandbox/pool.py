"""Trusted side of the worker processes: start them, talk to them, replace dead ones.

Each worker is a separate clean interpreter (``server.py``) started with a scrubbed
environment; we talk JSON lines over its stdin/stdout.  Workers are kept warm across
calls in a module-level pool and stopped at exit.  If a worker dies mid-job (which the
namespaces should make impossible, but the fallback mode cannot promise, and a worker can
be killed from outside), a fresh worker takes its place and that job runs once more; it is
reported as crashed only if its worker dies again (``api._Lane``).
"""

from __future__ import annotations

import atexit
import fcntl
import functools
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import hostfacts
from .isolation import OPEN_FILES_LIMIT, PROCESS_LIMIT, SIGNALS_PENDING_LIMIT
from .server import CANDIDATE_ENV, PIPE_MAX

log = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Import the server without running shared_utils/__init__.py (which could pull in heavy deps).
_BOOT = """
import os, sys, types
root = sys.argv[1]
for name in ("shared_utils", "shared_utils.sandbox"):
    module = types.ModuleType(name)
    module.__path__ = [os.path.join(root, *name.split("."))]
    sys.modules[name] = module
from shared_utils.sandbox.server import main
main(sys.argv[2], sys.argv[3])
"""


@functools.lru_cache(maxsize=1)
def _host_facts() -> str:
    return json.dumps(hostfacts.collect())


class WorkerDied(RuntimeError):
    pass


def encode(job: dict) -> bytes:
    return json.dumps(job).encode() + b"\n"


def _widen(fd: int) -> int:
    """Grow a worker's stdin pipe to the most an unprivileged process may; its size in bytes."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_MAX)
    except OSError:
        pass  # over the user's pipe allowance: the default size still works, with less in flight
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


class Worker:
    """One fork server process."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, str(PACKAGE_ROOT), tempfile.gettempdir(), _host_facts()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=CANDIDATE_ENV, close_fds=True)
        self.capacity = _widen(self.process.stdin.fileno())
        self.capabilities = self._receive()["capabilities"]

    def _receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise WorkerDied(f"sandbox worker exited with status {self.process.wait()}")
        return json.loads(line)

    def send(self, line: bytes) -> None:
        """One job line (``encode``); it waits only if more than ``capacity`` bytes are unanswered."""
        try:
            self.process.stdin.write(line)
            self.process.stdin.flush()
        except OSError as exc:
            raise WorkerDied(f"sandbox worker is gone: {exc}") from None

    def receive(self) -> dict:
        """The reply to the oldest job sent and not yet answered."""
        reply = self._receive()
        if isinstance(reply.get("walls"), dict) and reply["walls"]:
            POOL.record_costs(reply["walls"])
        return reply

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Pool:
    """Idle workers shared by every call; grows on demand, never shrinks until exit."""

    def __init__(self):
        self.idle: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        self.all: list[Worker] = []
        self.lock = threading.Lock()
        self.announced = False
        self.costs: dict[str, int] = {}
        self.candidates = 0

    def _spawn(self) -> Worker:
        worker = Worker()
        with self.lock:
            self.all.append(worker)
            if not self.announced:
                self.announced = True
                _announce(worker.capabilities)
        return worker

    def acquire(self) -> Worker:
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            return self._spawn()

    def release(self, worker: Worker) -> None:
        self.idle.put(worker)

    def discard(self, worker: Worker) -> None:
        worker.close()
        with self.lock:
            self.all.remove(worker)

    def replace(self, worker: Worker) -> Worker:
        """A dead worker out, a fresh one in."""
        self.discard(worker)
        return self._spawn()

    def capabilities(self) -> dict:
        worker = self.acquire()
        try:
            return dict(worker.capabilities)
        finally:
            self.release(worker)

    def calibrate(self, count: int, memory: int) -> None:
        """Run ``count`` empty candidates that time each of their walls (see ``capabilities``)."""
        worker = self.acquire()
        try:
            for _ in range(count):
                worker.send(encode({"code": "", "setup": "", "tests": [], "timeout": 5.0, "mode": "per_test",
                                    "memory": memory, "measure": True}))
                worker.receive()
        finally:
            self.release(worker)

    def record_costs(self, walls: dict) -> None:
        """Add one candidate's per-wall set-up times (nanoseconds) to the running totals."""
        with self.lock:
            self.candidates += 1
            for name, nanoseconds in walls.items():
                if isinstance(nanoseconds, int):
                    self.costs[str(name)] = self.costs.get(str(name), 0) + nanoseconds

    def mean_costs_us(self) -> dict[str, float]:
        with self.lock:
            return {name: total / self.candidates / 1000 for name, total in self.costs.items()}

    def close(self) -> None:
        with self.lock:
            workers, self.all = self.all, []
        for worker in workers:
            worker.close()
        self.idle = queue.SimpleQueue()


WALLS = {
    "no privileges (own uid or user namespace; every capability, bounding set included, dropped; "
    "securebits locked; no_new_privs)": lambda c: (c["candidate_uid"] is not None or c["user_namespace"])
    and c["capabilities_dropped"],
    "seccomp filter (mount, unshare, setns, ptrace, bpf, keyctl, ... refused; sockets of the Unix, IPv4 and "
    "IPv6 families only)": lambda c: c["seccomp"],
    "pid namespace per candidate (own /proc)": lambda c: c["pid_namespace"],
    "network namespace (no network)": lambda c: c["network_namespace"],
    "whitelisted read-only filesystem (Python, system folders; own /tmp and /dev/shm)":
        lambda c: c["filesystem_whitelist"] and c["candidate_mounts"],
    "ipc/uts namespaces": lambda c: c["ipc_namespace"],
    "process budget (cgroup pids, or RLIMIT_NPROC of the own uid or the worker's user namespace)":
        lambda c: bool(c["cgroup"]) or c["candidate_uid"] is not None or c["user_namespace"],
    "memory budget for all processes together (cgroup or resident-size sum)": lambda c: bool(c["memory_accounting"]),
    "clean zygote per candidate, rlimits, scrubbed environment": lambda c: True,
}
ISOLATION_MODES = ("strict", "none")


class SandboxUnavailable(RuntimeError):
    """The machine cannot build a wall the sandbox needs, and the caller did not waive it."""


def summary(caps: dict) -> dict[str, bool]:
    """The walls in words, each True where active on this machine."""
    return {name: bool(active(caps)) for name, active in WALLS.items()}


def not_covered(caps: dict) -> list[str]:
    """What the walls standing on this machine leave open, in words: the gaps that depend on
    the machine (the README's threat model lists those that hold everywhere)."""
    gaps = []
    if not caps["cgroup"]:
        sockets = ("plus what Unix sockets hold" if "socket" in str(caps["memory_accounting"])
                   else "and Unix socket buffers (about 200 KiB each) are not counted either")
        gaps.append("most kernel memory is outside the memory budget: without a cgroup it is the resident size "
                    f"of the candidate's processes, {sockets}; pipe buffers, page tables and kernel objects are "
                    f"bounded only by {PROCESS_LIMIT} processes of {OPEN_FILES_LIMIT} descriptors (pipes: about "
                    "64 MiB of enlarged ones per user, then 8 KiB each)")
    if caps["candidate_uid"] is None:
        capped = ("inotify and fanotify are capped at zero in the worker's user namespace, queued signals at "
                  f"{SIGNALS_PENDING_LIMIT} per candidate" if caps["namespace_quotas_capped"]
                  else "inotify instances and watches are NOT capped (this kernel refused to lower the user "
                  "namespace's limits), so a candidate can exhaust the caller's")
        gaps.append("no uid of its own: the kernel's per-user counters are the caller's too; " + capped
                    + "; still shared: processes (a candidate's count toward the caller's RLIMIT_NPROC), pipe "
                    "buffer pages (past pipe-user-pages-soft the caller's new pipes get two pages and cannot grow) "
                    "and epoll watches (max_user_watches)")
    return gaps


def missing_walls(caps: dict) -> list[str]:
    return [name for name, active in summary(caps).items() if not active]


def require(caps: dict, isolation: str) -> None:
    """Fail closed: refuse to run candidates without every wall, unless told ``isolation="none"``."""
    if isolation not in ISOLATION_MODES:
        raise ValueError(f"isolation must be one of {ISOLATION_MODES}, got {isolation!r}")
    missing = missing_walls(caps)
    if missing and isolation == "strict":
        raise SandboxUnavailable(
            "the sandbox cannot build these walls on this machine: " + "; ".join(missing)
            + ". Model-written code would run with them missing. Run where user namespaces (or root), "
            "mount namespaces and seccomp are available, or pass isolation=\"none\" to accept the risk "
            "(reports then name the run UNSAFE).")
    if missing:
        log.warning("sandbox running UNSAFE (isolation='none'): missing %s", "; ".join(missing))


def _announce(caps: dict) -> None:
    """Say once per process which walls are active."""
    protections = summary(caps)
    missing = missing_walls(caps)
    log.log(logging.WARNING if missing else logging.INFO, "sandbox walls active: %s%s",
            ", ".join(name for name, active in protections.items() if active),
            f"; NOT available here: {', '.join(missing)}" if missing else "")


POOL = Pool()
atexit.register(POOL.close)
os.register_at_fork(after_in_child=lambda: POOL.__init__())
