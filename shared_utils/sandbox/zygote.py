"""The zygote: the process every candidate is forked from, and the candidate's first steps.

Forked by the supervisor before the first job arrived, the zygote holds the walls ready
(``isolation.Walls``) and never sees a job: on request it forks a candidate with three
pipe ends (job, results, output) passed over a Unix socket, hands back a pidfd, and later
reports how the candidate ended.  The candidate builds its walls, then reads its compiled
program from the job pipe and runs.  So no candidate inherits memory that ever held another
job's code, tests or replies: frame-walking or scanning freed memory finds nothing.
"""

from __future__ import annotations

import _socket
import builtins
import gc
import marshal
import os
import signal
import struct

from . import cgroups, child, isolation, kernel, plain

SETUP_FAILED = 113  # candidate exit code when the walls could not be built


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _portable(value):
    """A prepared program in marshal's terms: compile errors become (marker, type name, text)."""
    if isinstance(value, BaseException):
        return (_ERROR, type(value).__name__, str(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_portable(item) for item in value)
    return value


def _restored(value):
    if isinstance(value, tuple) and len(value) == 3 and value[0] == _ERROR:
        kind = getattr(builtins, value[1], None)
        return (kind if isinstance(kind, type) and issubclass(kind, BaseException) else RuntimeError)(value[2])
    if isinstance(value, (list, tuple)):
        return type(value)(_restored(item) for item in value)
    return value


_ERROR = "\0compile-error"


def package(job: dict) -> bytes:
    """Supervisor side: compile here (the candidate's fork then skips the parser) and marshal."""
    cpu = int(job["timeout"] * (len(job["tests"]) + 1)) + 1
    return marshal.dumps((_portable(child.prepare(job)), cpu, job["memory"], bool(job.get("measure"))))


_NO_MEASURE = plain.dumps({"walls": {}})


def _become_candidate(fds: list[int], walls: isolation.Walls) -> None:
    """In the forked child: build the walls, wait for the job, run it. Never returns.

    The walls come first, before any job exists: so the supervisor can fork the next
    candidate while the current one runs, and hand it its job the moment the current one
    is gone.  Nothing of the job reaches this process before every privilege is dropped.
    """
    try:
        job_r, result_w, output_w = fds
        if job_r == child.RESULT_FD:  # keep it clear of the descriptors set below
            job_r = os.dup(job_r)
        os.dup2(output_w, 1)
        os.dup2(output_w, 2)
        os.dup2(result_w, child.RESULT_FD)
        costs = walls.enter()
        program, cpu, memory, measure = marshal.loads(_read_all(job_r))
        costs.update(walls.admit(cpu, memory))
        os.closerange(child.RESULT_FD + 1, 1 << 20)
        os.write(child.RESULT_FD, plain.dumps({"walls": costs}) if measure else _NO_MEASURE)
    except BaseException:
        os._exit(SETUP_FAILED)
    child.run(_restored(program))


def _send_fds(sock, message: bytes, fds: list[int]) -> None:
    sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])


def _recv_fds(sock, size: int, most: int) -> tuple[bytes, list[int]]:
    """One message and the descriptors it carried (``socket.recv_fds`` without importing ``socket``)."""
    message, ancillary, _, _ = sock.recvmsg(size, _socket.CMSG_SPACE(most * 4))
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4])
    return message, fds


def _sweep(pid: int, spare: set[int]) -> None:
    """Without a PID namespace: kill the group, then every orphan reparented to us (not a spare)."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass
    me = os.getpid()
    while True:
        with open(f"/proc/{me}/task/{me}/children") as handle:
            leftovers = [int(p) for p in handle.read().split() if int(p) not in spare]
        if not leftovers:
            return
        for leftover in leftovers:
            try:
                os.kill(leftover, signal.SIGKILL)
                os.waitpid(leftover, 0)
            except (ChildProcessError, ProcessLookupError):
                pass


def _fork(walls: isolation.Walls, pidns_fd: int | None, sock, fds: list[int]) -> int:
    """A new candidate (the first process of a fresh PID namespace where we have them)."""
    if pidns_fd is not None:
        kernel.setns(pidns_fd, kernel.CLONE_NEWPID)
        kernel.unshare(kernel.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        sock.close()
        _become_candidate(fds, walls)
    return pid


def _zygote(sock, caps: dict, budget: cgroups.Budget) -> None:
    """Serve ``spawn`` (fork a candidate, send back its pidfd) and ``reap <pid>`` (wait until
    it and everything it started are gone, send back its status). Never returns."""
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)
    if not caps["pid_namespace"]:
        kernel.prctl(kernel.PR_SET_CHILD_SUBREAPER, 1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY) if caps["pid_namespace"] else None
    budget.join()  # candidates are born in it: no migration per candidate
    walls = isolation.Walls(caps, home=os.environ["HOME"])
    gc.freeze()  # a collection in a candidate must not touch (and copy) our heap
    alive: set[int] = set()
    while True:
        message, fds = _recv_fds(sock, 32, 3)
        if not message:
            os._exit(0)
        if message == b"spawn":
            try:
                pid = _fork(walls, pidns_fd, sock, fds)
            except OSError as exc:  # out of processes or memory (the running candidate's doing)
                sock.send(b"-%d" % exc.errno)
                continue
            finally:
                for fd in fds:
                    os.close(fd)
            alive.add(pid)
            pidfd = os.pidfd_open(pid)
            _send_fds(sock, str(pid).encode(), [pidfd])
            os.close(pidfd)
        else:
            pid = int(message.split()[1])
            status = os.waitpid(pid, 0)[1]  # with a PID namespace: once every process in it is gone
            alive.discard(pid)
            if pidns_fd is None:
                _sweep(pid, spare=alive)
            sock.send(str(status).encode())


class ZygoteDied(OSError):
    pass


class Zygote:
    """The supervisor's handle on the zygote process."""

    def __init__(self, caps: dict, budget: cgroups.Budget):
        self.sock, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            _zygote(theirs, caps, budget)
        theirs.close()

    def spawn(self, fds: list[int]) -> tuple[int, int] | None:
        """A new candidate with these pipe ends: (pid, pidfd); None when the kernel refused the fork."""
        _send_fds(self.sock, b"spawn", fds)
        message, pidfds = _recv_fds(self.sock, 32, 1)
        if not message:
            raise ZygoteDied("the zygote is gone")
        if message.startswith(b"-"):
            return None
        if len(pidfds) != 1:
            raise ZygoteDied("the zygote sent no pidfd")
        return int(message), pidfds[0]

    def reap(self, pid: int) -> int:
        """The wait status of candidate ``pid``, once it and everything it started are gone."""
        self.sock.send(b"reap %d" % pid)
        message = self.sock.recv(32)
        if not message:
            raise ZygoteDied("the zygote is gone")
        return int(message)
