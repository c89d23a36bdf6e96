"""The warm worker: a supervisor that talks to the trusted side, and its zygote.

Started once per worker by the trusted process (``pool.Worker``) as a clean interpreter
with a scrubbed environment.  The supervisor reads one JSON job per line on stdin,
compiles it, has the zygote (``zygote``) fork a candidate for it, follows the candidate's
result and output pipes against the deadline, and writes one JSON line back: the raw
result lines, the captured output, and how the candidate ended.

Forking the small zygote costs well under a millisecond; starting an interpreter per
candidate would cost fifty.  The worker imports as little as it can (the heavier facts
about the machine come from the trusted side, ``hostfacts``): every page the zygote holds
is copied or torn down again with each candidate, and modules with at-fork hooks
(``threading``, ``random``) would run them in every fork.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import stat
import sys
import time

from . import cgroups, isolation, kernel, plain
from .zygote import Zygote, package

OUTPUT_LIMIT = 64 << 10
RESULT_LIMIT = 32 << 20
PIPE_MAX = 1 << 20  # the default /proc/sys/fs/pipe-max-size
MEMORY_POLL = 0.05  # seconds between resident-size sums, where no cgroup counts memory
CANDIDATE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
                 "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


class _Watch:
    """Reads the result channel and the output pipe until done, dead, or out of time."""

    def __init__(self, job: dict, result_r: int, output_r: int, memory_check, on_walls=None):
        self.timeout, self.per_test = job["timeout"], job["mode"] == "per_test"
        self.wanted = len(job["tests"]) + 2  # the walls' report, setup+candidate, then one per test
        self.result_r, self.output_r, self.memory_check = result_r, output_r, memory_check
        self.on_walls = on_walls
        self.lines, self.pending, self.result_bytes = [], bytearray(), 0
        self.output, self.output_bytes = bytearray(), 0
        self.timed_out = self.oversize = self.ended = self.memory_exceeded = False

    def _take_output(self) -> bool:
        chunk = os.read(self.output_r, 1 << 16)
        self.output_bytes += len(chunk)
        self.output += chunk[: max(0, OUTPUT_LIMIT - len(self.output))]
        return bool(chunk)

    def _take_result(self) -> bool:
        chunk = os.read(self.result_r, 1 << 16)
        self.result_bytes += len(chunk)
        self.oversize = self.result_bytes > RESULT_LIMIT
        self.pending += chunk
        if b"\n" in chunk:  # split only then: a hostile endless line must not cost quadratic time
            *complete, rest = self.pending.split(b"\n")
            self.pending = bytearray(rest)
            self.lines += [line.decode("utf-8", "replace") for line in complete]
        return bool(chunk) and not self.oversize  # keep reading?

    def follow(self, pidfd: int) -> None:
        deadline = time.monotonic() + self.timeout
        readers = [self.result_r, self.output_r, pidfd]
        while len(self.lines) < self.wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                return
            wait = remaining if self.memory_check is None else min(remaining, MEMORY_POLL)
            ready = select.select(readers, [], [], wait)[0]
            if self.memory_check is not None and self.memory_check():
                self.memory_exceeded = True
                return
            if self.output_r in ready and not self._take_output():
                readers.remove(self.output_r)
            if self.result_r in ready:
                seen = len(self.lines)
                if not self._take_result():
                    if self.oversize:
                        return
                    readers.remove(self.result_r)  # closed: it is dying (or hiding); wait for either
                if seen == 0 and self.lines and self.on_walls is not None:
                    self.on_walls()
                if self.per_test and len(self.lines) > seen:
                    deadline = time.monotonic() + self.timeout
            if pidfd in ready:
                self.ended = True
                return

    def drain(self) -> None:
        """After the candidate died: whatever it wrote is already in the pipes."""
        for fd, take in ((self.result_r, self._take_result), (self.output_r, self._take_output)):
            os.set_blocking(fd, False)
            try:
                while take():
                    pass
            except BlockingIOError:
                pass


def _hold_namespaces(pid: int) -> list[int]:
    """Keep the candidate's mount namespace alive past its exit (see ``_Janitor``)."""
    try:
        return [os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)]
    except OSError:
        return []  # already gone: it paid for its own teardown


class _Janitor:
    """Releases finished candidates' mount namespaces off the serving path.

    Tearing a mount namespace down waits for an RCU grace period (milliseconds on a busy
    machine).  Left to the candidate's exit, that wait would come before the kernel kills
    the rest of its PID namespace, and every candidate of the worker would queue behind
    it; here it overlaps with the next candidate.
    """

    def __init__(self):
        import queue
        import threading

        self.queue = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    def put(self, fds: list[int]) -> None:
        if fds:
            self.queue.put(fds)

    def _run(self) -> None:
        while True:
            for fd in self.queue.get():
                os.close(fd)


def _resident_bytes(exclude: set[int]) -> int:
    """The resident memory of every process we can see but ourselves and the zygote."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in exclude:
            try:
                with open(f"/proc/{entry}/statm") as handle:
                    total += int(handle.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total * os.sysconf("SC_PAGE_SIZE")


def _force_writable(function, path, _exc_info) -> None:
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    function(path)


class Supervisor:
    def __init__(self, scratch: str, caps: dict, budget: cgroups.Budget):
        self.caps, self.budget = caps, budget
        self.workdir = "/tmp" if caps["filesystem_whitelist"] else os.path.join(scratch, "work")
        # Our environment is already the scrubbed one; candidates inherit it as is.
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)
        self.zygote = Zygote(caps, budget)
        self.janitor = _Janitor()  # threads are safe from here on: nothing forks from us any more
        # Without a cgroup, memory is summed over the candidate's PID namespace (ours holds only it).
        self.poll_memory = budget.kind is None and caps["pid_namespace"]

    def _memory_check(self, limit: int):
        if not self.poll_memory:
            return None
        started, exclude = time.monotonic(), {os.getpid(), self.zygote.pid}
        return lambda: time.monotonic() - started > MEMORY_POLL and _resident_bytes(exclude) > limit

    def _fresh_workdir(self) -> None:
        if not self.caps["filesystem_whitelist"]:
            os.mkdir(self.workdir, 0o700)
            if self.caps["candidate_uid"] is not None:
                os.chown(self.workdir, self.caps["candidate_uid"], self.caps["candidate_uid"])

    def _clean_workdir(self) -> None:
        if not self.caps["filesystem_whitelist"]:
            import shutil  # fallback only: the worker stays small where a whitelisted root exists

            shutil.rmtree(self.workdir, onerror=_force_writable)

    def run(self, job: dict) -> dict:
        self.budget.set_memory(job["memory"])
        kills_before = self.budget.oom_kills()
        self._fresh_workdir()
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        started = time.monotonic()
        try:
            rest = _write_ahead(job_w, package(job))
            try:
                pid, pidfd = self.zygote.spawn([job_r, result_w, output_w])
            finally:
                for fd in (job_r, result_w, output_w):
                    os.close(fd)
            try:
                _write_all(job_w, rest)
            except BrokenPipeError:
                pass  # it died before reading: reported below as it ended
            finally:
                os.close(job_w)
            held = []
            watch = _Watch(job, result_r, output_r, self._memory_check(job["memory"]),
                           on_walls=lambda: held.extend(_hold_namespaces(pid)))
            try:
                watch.follow(pidfd)
            finally:
                if not watch.ended:
                    _kill(pidfd, pid, group=not self.caps["pid_namespace"])
                status = self.zygote.reaped()
                os.close(pidfd)
                self.janitor.put(held)
            watch.drain()
        finally:
            os.close(result_r)
            os.close(output_r)
            self._clean_workdir()
        walls, lines = _split_walls(watch.lines)
        return {
            "lines": lines[: watch.wanted - 1], "timed_out": watch.timed_out, "oversize": watch.oversize,
            "memory_exceeded": watch.memory_exceeded or self.budget.oom_kills() > kills_before,
            "exit": os.waitstatus_to_exitcode(status) if watch.ended else None,
            "output": watch.output.decode("utf-8", "replace"), "output_bytes": watch.output_bytes,
            "elapsed": time.monotonic() - started, "walls": walls,
        }


def _write_ahead(fd: int, data: bytes) -> bytes:
    """Put as much of the job in the pipe as it holds before the candidate exists; the rest after."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(max(len(data), 1 << 16), PIPE_MAX))
    except OSError:
        pass
    os.set_blocking(fd, False)
    try:
        written = os.write(fd, data)
    except BlockingIOError:
        written = 0
    os.set_blocking(fd, True)
    return data[written:]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _kill(pidfd: int, pid: int, group: bool) -> None:
    """SIGKILL the candidate (with a PID namespace, the kernel then kills all it started)."""
    for target in (lambda: signal.pidfd_send_signal(pidfd, signal.SIGKILL), lambda: os.killpg(pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass  # it has just ended by itself
        if not group:
            return


def _split_walls(lines: list[str]) -> tuple[dict, list[str]]:
    """The first line is the candidate's walls report, written before any candidate code ran."""
    if not lines:
        return {}, []
    try:
        walls = json.loads(lines[0])["walls"]
    except (ValueError, TypeError, KeyError):
        return {}, lines[1:]
    return walls, lines[1:]


def _serve(scratch: str, caps: dict, budget: cgroups.Budget, host: dict) -> None:
    """The supervisor, PID 1 of the worker's namespace when namespaces are allowed."""
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    caps.update(isolation.wall_off_worker(scratch, host))
    if not caps["filesystem_whitelist"] and not host["interpreter_public"]:
        caps["candidate_uid"] = None
    caps.update(isolation.probe_candidate_walls(caps))
    caps["cgroup"] = budget.kind
    caps["memory_accounting"] = budget.kind or ("resident-size sum" if caps["pid_namespace"] else None)
    supervisor = Supervisor(scratch, caps, budget)
    os.write(1, plain.dumps({"capabilities": caps}))
    requests = os.fdopen(0, "rb")
    for line in requests:
        job = json.loads(line)
        try:
            reply = supervisor.run(job)
        except BaseException:
            # A zygote gone or a clean-up that failed: this worker's state is no longer known
            # to be clean, so it stops; the trusted side reports the job crashed and replaces it.
            os._exit(1)
        os.write(1, plain.dumps(reply))
    os._exit(0)


def main(temp_root: str, host_json: str) -> None:
    """Outer process: namespaces and the cgroup, then fork the supervisor and wait for it.

    It ends when the trusted side closes our stdin (exit or death alike).  No parent-death
    signal here: that fires when the *thread* that started us exits, not the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C or a kernel interrupt is the caller's to handle
    name = f"sandbox-{os.getpid()}-{os.urandom(6).hex()}"
    scratch = os.path.join(temp_root, name)
    os.mkdir(scratch, 0o700)
    budget = cgroups.Budget.create(name, isolation.PROCESS_LIMIT) if os.geteuid() == 0 else cgroups.Budget()
    caps = isolation.enter_worker_namespaces()
    pid = os.fork()
    if pid == 0:
        _serve(scratch, caps, budget, json.loads(host_json))
    os.close(0)
    os.close(1)
    status = os.waitpid(pid, 0)[1]
    budget.remove()
    import shutil  # only now: the supervisor, forked above, must not carry it

    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(os.waitstatus_to_exitcode(status))
