"""The warm worker: a supervisor that talks to the trusted side, and its zygote.

Started once per worker by the trusted process (``pool.Worker``) as a clean interpreter
with a scrubbed environment.  The supervisor reads one JSON job per line on stdin,
compiles it, has the zygote (``zygote``) fork a candidate for it, follows the candidate's
result and output pipes against the deadline, and writes one JSON line back: the raw
result lines, the captured output, and how the candidate ended.  When the next job is
already waiting, its candidate is forked and builds its walls while the current one runs.

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

from . import cgroups, isolation, kernel, plain, sockbuffers
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


class _Launched:
    """A candidate forked and walled in, waiting for its job on the job pipe."""

    def __init__(self, pid: int, pidfd: int, job_w: int, result_r: int, output_r: int):
        self.pid, self.pidfd, self.job_w, self.result_r, self.output_r = pid, pidfd, job_w, result_r, output_r

    def give(self, data: bytes) -> bool:
        """Write the job and close the pipe; False when the candidate was gone before taking it."""
        try:
            try:
                fcntl.fcntl(self.job_w, fcntl.F_SETPIPE_SZ, min(max(len(data), 1 << 16), PIPE_MAX))
            except OSError:
                pass
            _write_all(self.job_w, data)
            return True
        except BrokenPipeError:
            return False
        finally:
            os.close(self.job_w)
            self.job_w = None

    def close(self) -> None:
        for fd in (self.job_w, self.result_r, self.output_r, self.pidfd):
            if fd is not None:
                os.close(fd)


class _Requests:
    """Job lines from the trusted side: ``wait`` for the next, or take it only if it is ``ready``."""

    def __init__(self, fd: int):
        self.fd, self.buffer, self.scanned, self.closed = fd, bytearray(), 0, False

    def _line(self) -> bytes | None:
        end = self.buffer.find(b"\n", self.scanned)
        if end < 0:
            self.scanned = len(self.buffer)  # a long job arrives in many reads: scan each byte once
            return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 1]
        self.scanned = 0
        return line

    def _read(self) -> None:
        chunk = os.read(self.fd, 1 << 16)
        self.closed = not chunk
        self.buffer += chunk

    def wait(self) -> bytes | None:
        """The next line, or None once the trusted side has closed our stdin."""
        while (line := self._line()) is None:
            if self.closed:
                return None
            self._read()
        return line

    def ready(self) -> bytes | None:
        """The next line if it has already come in full, else None at once."""
        line = self._line()
        while line is None and not self.closed and select.select([self.fd], [], [], 0)[0]:
            self._read()
            line = self._line()
        return line


class Supervisor:
    """Runs jobs one at a time; forks the next job's candidate while the current one runs.

    When the next job has already come in (the trusted side keeps a few in flight), its
    candidate is forked and builds its walls while the current one runs, and gets its job
    only once the current one and everything it started are gone: candidates of one worker
    never run code at the same time.
    """

    def __init__(self, scratch: str, caps: dict, budget: cgroups.Budget):
        self.caps, self.budget = caps, budget
        self.workdir = "/tmp" if caps["filesystem_whitelist"] else os.path.join(scratch, "work")
        # Our environment is already the scrubbed one; candidates inherit it as is.
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)
        self.zygote = Zygote(caps, budget)
        self.janitor = _Janitor()  # threads are safe from here on: nothing forks from us any more
        # Without a cgroup, memory is summed over the candidate's PID namespace (ours holds only it),
        # with what the worker's Unix sockets hold (after the zygote's fork: none inherits it).
        self.poll_memory = budget.kind is None and caps["pid_namespace"]
        self.socket_buffers = sockbuffers.SocketBuffers.open() if self.poll_memory else None
        self.ahead = None  # (the next job, its candidate or None), taken while the current one runs

    def serve(self, requests: _Requests) -> None:
        while True:
            if self.ahead is None:
                line = requests.wait()
                if line is None:
                    return
                self.ahead = (json.loads(line), None)
            (job, spare), self.ahead = self.ahead, None
            reply = self.run(job, spare, requests)
            os.write(1, plain.dumps(reply))

    def launch(self) -> _Launched | None:
        """A candidate forked and walling itself in; None when the kernel refused the fork."""
        job_r, job_w = os.pipe()
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        try:
            spawned = self.zygote.spawn([job_r, result_w, output_w])
        finally:
            for fd in (job_r, result_w, output_w):
                os.close(fd)
        if spawned is None:
            for fd in (job_w, result_r, output_r):
                os.close(fd)
            return None
        return _Launched(*spawned, job_w, result_r, output_r)

    def _start(self, data: bytes, spare: _Launched | None) -> _Launched:
        """Hand the job to the spare, or to a fresh candidate where there is none or it died
        waiting (the previous candidate may have exhausted the budget they shared)."""
        if spare is not None:
            if spare.give(data):
                return spare
            self.zygote.reap(spare.pid)
            spare.close()
        launched = self.launch()
        if launched is None:
            raise OSError("the zygote could not fork a candidate")
        launched.give(data)  # if it died before taking the job, that is reported as it ended
        return launched

    def _take_next(self, requests: _Requests) -> None:
        """While a candidate runs: the next job, if it has already come, and its candidate forked."""
        line = requests.ready()
        if line is not None:
            self.ahead = (json.loads(line), self.launch())

    def _memory_check(self, limit: int):
        if not self.poll_memory:
            return None
        started, exclude = time.monotonic(), {os.getpid(), self.zygote.pid}
        if self.ahead is not None and self.ahead[1] is not None:
            exclude.add(self.ahead[1].pid)  # the next candidate, waiting for its job
        if self.socket_buffers is None:
            return lambda: time.monotonic() - started > MEMORY_POLL and _resident_bytes(exclude) > limit
        return lambda: (time.monotonic() - started > MEMORY_POLL
                        and _resident_bytes(exclude) + self.socket_buffers.total() > limit)

    def _fresh_workdir(self) -> None:
        if not self.caps["filesystem_whitelist"]:
            os.mkdir(self.workdir, 0o700)
            if self.caps["candidate_uid"] is not None:
                os.chown(self.workdir, self.caps["candidate_uid"], self.caps["candidate_uid"])

    def _clean_workdir(self) -> None:
        if not self.caps["filesystem_whitelist"]:
            import shutil  # fallback only: the worker stays small where a whitelisted root exists

            shutil.rmtree(self.workdir, onerror=_force_writable)

    def run(self, job: dict, spare: _Launched | None, requests: _Requests) -> dict:
        """Run one job on ``spare`` (forked while the previous job ran) or on a fresh candidate."""
        data = package(job)
        self.budget.set_memory(job["memory"])
        kills_before = self.budget.oom_kills()
        self._fresh_workdir()
        started = time.monotonic()
        try:
            launched = self._start(data, spare)
            try:
                self._take_next(requests)
                held = []
                watch = _Watch(job, launched.result_r, launched.output_r, self._memory_check(job["memory"]),
                               on_walls=lambda: held.extend(_hold_namespaces(launched.pid)))
                try:
                    watch.follow(launched.pidfd)
                finally:
                    if not watch.ended:
                        _kill(launched.pidfd, launched.pid, group=not self.caps["pid_namespace"])
                    status = self.zygote.reap(launched.pid)
                    self.janitor.put(held)
                watch.drain()
            finally:
                launched.close()
        finally:
            self._clean_workdir()
        walls, lines = _split_walls(watch.lines)
        return {
            "lines": lines[: watch.wanted - 1], "timed_out": watch.timed_out, "oversize": watch.oversize,
            "memory_exceeded": watch.memory_exceeded or self.budget.oom_kills() > kills_before,
            "exit": os.waitstatus_to_exitcode(status) if watch.ended else None,
            "output": watch.output.decode("utf-8", "replace"), "output_bytes": watch.output_bytes,
            "elapsed": time.monotonic() - started, "walls": walls,
        }


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
    supervisor = Supervisor(scratch, caps, budget)
    caps["memory_accounting"] = budget.kind or (("resident-size sum" if supervisor.socket_buffers is None else
                                                 "resident-size sum and Unix socket buffers")
                                                if caps["pid_namespace"] else None)
    os.write(1, plain.dumps({"capabilities": caps}))
    try:
        supervisor.serve(_Requests(0))
    except BaseException:
        # A zygote gone or a clean-up that failed: this worker's state is no longer known
        # to be clean, so it stops; the trusted side reports the job crashed and replaces it.
        import traceback

        traceback.print_exc()
        os._exit(1)
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
    budget = cgroups.Budget.create(name, isolation.PROCESS_LIMIT + isolation.SPARES)  # also where a user was delegated one
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
