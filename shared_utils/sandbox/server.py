"""The warm worker: a fork server that runs one candidate at a time.

Started once per worker by the trusted process (``pool.Worker``) as a clean interpreter
with a scrubbed environment, so a forked candidate inherits neither secrets nor the
expected values (the trusted side never sends them).  It reads one JSON job per line on
stdin, forks a fresh child per candidate, supervises it (deadlines, output capture, the
result channel) and writes one JSON line back: the raw result lines, the captured
output, and how the child ended.  Forking a warm process costs about half a millisecond;
starting an interpreter per candidate would cost fifty.

The worker imports as little as it can: every page it holds is copied on write in each
candidate's fork, and modules with at-fork hooks (``threading``, ``random``) run them in
every fork (``threading`` alone made each fork about 0.3 ms dearer).  Pre-importing the
standard modules candidates use cost more per fork than their imports cost the candidates
that need them; a candidate that imports ``random`` or ``tempfile`` gets a fresh seed and
its work directory through TMPDIR.
"""

from __future__ import annotations

import gc
import json
import os
import select
import shutil
import signal
import stat
import sys
import time

from . import child, isolation, kernel, plain

OUTPUT_LIMIT = 64 << 10
RESULT_LIMIT = 32 << 20
SETUP_FAILED = 113  # child exit code when the walls could not be built
CANDIDATE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
                 "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


def _become_candidate(job: dict, program: tuple, caps: dict, fds: tuple[int, int], workdir: str) -> None:
    """In the forked child: rewire fds, build the walls, run the candidate. Never returns."""
    result_w, output_w = fds
    try:
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.dup2(result_w, child.RESULT_FD)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.closerange(child.RESULT_FD + 1, 1 << 20)
        cpu = int(job["timeout"] * (len(job["tests"]) + 1)) + 1
        isolation.enter_candidate(caps, workdir, cpu, job["memory"])
    except BaseException:
        os._exit(SETUP_FAILED)
    child.run(program)


class _Watch:
    """Reads the result channel and the output pipe until done, dead, or out of time."""

    def __init__(self, job: dict, result_r: int, output_r: int):
        self.timeout, self.per_test = job["timeout"], job["mode"] == "per_test"
        self.wanted = len(job["tests"]) + 1
        self.result_r, self.output_r = result_r, output_r
        self.lines, self.pending, self.result_bytes = [], bytearray(), 0
        self.output, self.output_bytes = bytearray(), 0
        self.timed_out = self.oversize = self.ended = False

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

    def run(self, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        try:
            self._follow(pidfd)
        finally:
            os.close(pidfd)

    def _follow(self, pidfd: int) -> None:
        deadline = time.monotonic() + self.timeout
        readers = [self.result_r, self.output_r, pidfd]
        while len(self.lines) < self.wanted:
            remaining = deadline - time.monotonic()
            ready = select.select(readers, [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                self.timed_out = True
                return
            if self.output_r in ready and not self._take_output():
                readers.remove(self.output_r)
            if self.result_r in ready:
                seen = len(self.lines)
                if not self._take_result():
                    if self.oversize:
                        return
                    readers.remove(self.result_r)  # closed: it is dying (or hiding); wait for either
                if self.per_test and len(self.lines) > seen:
                    deadline = time.monotonic() + self.timeout
            if pidfd in ready:
                self.ended = True
                return

    def drain(self) -> None:
        """After the child died: whatever it wrote is already in the pipes."""
        for fd, take in ((self.result_r, self._take_result), (self.output_r, self._take_output)):
            os.set_blocking(fd, False)
            try:
                while take():
                    pass
            except BlockingIOError:
                pass


def _children() -> list[int]:
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as handle:
        return [int(pid) for pid in handle.read().split()]


def _sweep(pid: int) -> None:
    """Without a PID namespace: kill the group, then every orphan reparented to us."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass
    while leftovers := _children():
        for leftover in leftovers:
            try:
                os.kill(leftover, signal.SIGKILL)
                os.waitpid(leftover, 0)
            except ChildProcessError:
                pass
            except ProcessLookupError:
                pass


def _end(pid: int, ended: bool, caps: dict) -> int | None:
    """Make sure everything the candidate started is gone.

    Returns the child's wait status if it had ended by itself, None if we had to kill it.
    """
    if caps["pid_namespace"]:
        if not ended:
            os.kill(pid, signal.SIGKILL)  # PID 1 of its namespace: the kernel kills all the rest
        status = os.waitpid(pid, 0)[1]  # returns once every process in the namespace is gone
    else:
        status = os.waitpid(pid, 0 if ended else os.WNOHANG)[1]
        _sweep(pid)
    return status if ended else None


def _force_writable(function, path, _exc_info) -> None:
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    function(path)


class Server:
    def __init__(self, scratch: str, caps: dict, pidns_fd: int | None):
        self.workdir = os.path.join(scratch, "work")
        self.caps, self.pidns_fd = caps, pidns_fd
        # Our environment is already the scrubbed one; children inherit it as is.
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)

    def _fork(self, job: dict, fds: tuple[int, int]) -> int:
        program = child.prepare(job)
        if self.pidns_fd is not None:
            kernel.setns(self.pidns_fd, kernel.CLONE_NEWPID)
            kernel.unshare(kernel.CLONE_NEWPID)
        gc.freeze()  # a collection in the child must not touch (and copy) our whole heap
        pid = os.fork()
        if pid == 0:
            _become_candidate(job, program, self.caps, fds, self.workdir)
        return pid

    def run(self, job: dict) -> dict:
        os.mkdir(self.workdir, 0o700)
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        started = time.monotonic()
        try:
            try:
                pid = self._fork(job, (result_w, output_w))
            finally:
                os.close(result_w)
                os.close(output_w)
            watch = _Watch(job, result_r, output_r)
            try:
                watch.run(pid)
            finally:
                status = _end(pid, watch.ended, self.caps)
            watch.drain()
        finally:
            os.close(result_r)
            os.close(output_r)
            shutil.rmtree(self.workdir, onerror=_force_writable)
        return {
            "lines": watch.lines[: watch.wanted], "timed_out": watch.timed_out, "oversize": watch.oversize,
            "exit": None if status is None else os.waitstatus_to_exitcode(status),
            "output": watch.output.decode("utf-8", "replace"), "output_bytes": watch.output_bytes,
            "elapsed": time.monotonic() - started,
        }


def _inner(scratch: str, caps: dict) -> None:
    """The serving loop, PID 1 of the worker's namespace when namespaces are allowed."""
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY) if caps["pid_namespace"] else None
    if not caps["pid_namespace"]:
        kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)
    caps.update(isolation.wall_off_filesystem(scratch, hide_proc=caps["pid_namespace"]))
    caps.update(ipc_namespace=isolation.probe_ipc_namespace(), candidate_uid=isolation.candidate_uid())
    server = Server(scratch, caps, pidns_fd)
    os.write(1, plain.dumps({"capabilities": caps}))
    requests = os.fdopen(0, "rb")
    for line in requests:
        job = json.loads(line)
        try:
            reply = server.run(job)
        except OSError as exc:
            reply = {"failure": f"{type(exc).__name__}: {exc}"}
        os.write(1, plain.dumps(reply))
    os._exit(0)


def main(temp_root: str) -> None:
    """Outer process: namespaces, then fork the serving loop and wait for it.

    It ends when the trusted side closes our stdin (exit or death alike).  No parent-death
    signal here: that fires when the *thread* that started us exits, not the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C or a kernel interrupt is the caller's to handle
    scratch = os.path.join(temp_root, f"sandbox-{os.getpid()}-{os.urandom(6).hex()}")
    os.mkdir(scratch, 0o700)
    caps = isolation.enter_worker_namespaces()
    pid = os.fork()
    if pid == 0:
        _inner(scratch, caps)
    os.close(0)
    os.close(1)
    status = os.waitpid(pid, 0)[1]
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(os.waitstatus_to_exitcode(status))
