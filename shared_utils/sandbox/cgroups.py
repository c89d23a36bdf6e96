"""A memory and process budget for all of a candidate's processes together.

Resource limits are per process: three children under a 512 MiB ``RLIMIT_AS`` hold
1.5 GiB between them.  A cgroup counts them together.  The outer worker process (still
in the host's mount namespace) creates one cgroup per worker under its own, for the
``memory`` and ``pids`` controllers (cgroup v1) or the unified hierarchy (v2), and keeps
open the few control files the worker needs.  The zygote joins it once, so every
candidate is born inside (a move per candidate would cost a cgroup
migration each).  Candidates run one at a time per worker, so the cgroup holds the zygote
and one candidate's processes at most; the limits allow for the zygote.

An unprivileged caller gets one only where its own cgroup was delegated to it (systemd's
``Delegate=``, a cluster's job cgroup), with the controllers enabled below it.  Where no
cgroup can be made (a container with a read-only ``/sys/fs/cgroup``, most unprivileged
users), ``Budget`` is inert: the worker then bounds processes with the
candidate uid's ``RLIMIT_NPROC`` and memory by summing the resident sizes it sees in the
candidate's PID namespace and what the worker's Unix sockets hold (``server``, ``sockbuffers``).
"""

from __future__ import annotations

import fcntl
import os

ROOT = "/sys/fs/cgroup"
ZYGOTE_ALLOWANCE = 32 << 20  # what the zygote itself may have charged to the cgroup


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def _v2_root() -> str | None:
    for candidate in (ROOT, f"{ROOT}/unified"):
        try:
            with open(f"{candidate}/cgroup.controllers") as handle:
                if {"memory", "pids"} <= set(handle.read().split()):
                    return candidate
        except OSError:
            continue
    return None


class Budget:
    """The cgroup(s) of one worker, or nothing where the machine grants none."""

    def __init__(self, kind: str | None = None, folders: tuple[str, ...] = (), procs: tuple[int, ...] = (),
                 memory_fd: int | None = None, events_fd: int | None = None):
        self.kind, self.folders, self.procs = kind, folders, procs
        self.memory_fd, self.events_fd = memory_fd, events_fd
        self.limit = None

    @classmethod
    def create(cls, name: str, max_processes: int) -> "Budget":
        for make in (cls._v1, cls._v2):
            try:
                budget = make(name, max_processes)
            except OSError:
                continue
            if budget is not None:
                return budget
        return cls()

    @classmethod
    def _v1(cls, name: str, max_processes: int) -> "Budget | None":
        paths = _own_paths()
        if "memory" not in paths or "pids" not in paths:
            return None
        memory = f"{ROOT}/memory{paths['memory']}/{name}"
        pids = f"{ROOT}/pids{paths['pids']}/{name}"
        _remove_abandoned(os.path.dirname(memory), os.path.dirname(pids))
        os.mkdir(memory)
        try:
            os.mkdir(pids)
            _write(f"{pids}/pids.max", str(max_processes + 1))  # the zygote counts too
        except OSError:
            os.rmdir(memory)
            raise
        procs = tuple(_open(f"{folder}/cgroup.procs", os.O_WRONLY) for folder in (memory, pids))
        memory_fd = _open(f"{memory}/memory.limit_in_bytes", os.O_WRONLY)
        return cls("cgroup v1", (memory, pids), procs, memory_fd, _open_events(f"{memory}/memory.oom_control"))

    @classmethod
    def _v2(cls, name: str, max_processes: int) -> "Budget | None":
        root = _v2_root()
        if root is None:
            return None
        folder = f"{root}{_own_paths().get('', '/')}".rstrip("/") + f"/{name}"
        _remove_abandoned(os.path.dirname(folder))
        os.mkdir(folder)
        try:
            _write(f"{folder}/pids.max", str(max_processes + 1))
            _write(f"{folder}/memory.swap.max", "0")
        except OSError:
            os.rmdir(folder)
            raise
        procs = (_open(f"{folder}/cgroup.procs", os.O_WRONLY),)
        memory_fd = _open(f"{folder}/memory.max", os.O_WRONLY)
        return cls("cgroup v2", (folder,), procs, memory_fd, _open_events(f"{folder}/memory.events"))

    def set_memory(self, limit: int) -> None:
        """Supervisor, between candidates: the candidate's limit plus the zygote's allowance."""
        if self.memory_fd is not None and limit != self.limit:
            os.pwrite(self.memory_fd, str(limit + ZYGOTE_ALLOWANCE).encode(), 0)
            self.limit = limit

    def oom_kills(self) -> int:
        """How many processes the kernel killed for this cgroup's memory so far."""
        if self.events_fd is None:
            return 0
        try:
            os.lseek(self.events_fd, 0, os.SEEK_SET)
            text = os.read(self.events_fd, 4096).decode()
        except OSError:
            return 0
        fields = dict(line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
        return int(fields.get("oom_kill", 0))

    def join(self) -> None:
        """Zygote, once: move in, let go of the control files.

        In the cgroup's OOM the kernel kills the process with the highest ``oom_score_adj``
        (then the largest): each candidate raises its own to the maximum as it is forked
        (``isolation.Walls``), while the zygote keeps the caller's, so a candidate goes, never
        the zygote.  The candidate's resident size does not decide it: memory it holds in the
        kernel (socket buffers) is in no process's size, and the zygote would then be as large
        a victim as any.  (Shielding the zygote at -1000 would need CAP_SYS_RESOURCE, which
        containers often withhold even from root.)
        """
        if not self.procs:
            return
        for fd in self.procs:
            os.write(fd, b"0")
        for fd in (*self.procs, self.memory_fd, self.events_fd):
            if fd is not None:
                os.close(fd)

    def remove(self) -> None:
        """Outer process, once every process of the worker is gone."""
        for folder in self.folders:
            try:
                os.rmdir(folder)
            except OSError:
                pass


FIRST_FD = 100  # above the descriptors a candidate is rewired to before it joins


def _open(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_FD)
    finally:
        os.close(fd)


def _remove_abandoned(*parents: str) -> None:
    """Cgroups of workers whose outer process died without removing them (named ``sandbox-<pid>-...``).

    ``rmdir`` of a cgroup that still holds a process fails, so nothing live is touched.
    """
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            owner = name.split("-")[1] if name.startswith("sandbox-") and name.count("-") >= 2 else ""
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                try:
                    os.rmdir(os.path.join(parent, name))
                except OSError:
                    pass


def _open_events(path: str) -> int | None:
    try:
        return _open(path, os.O_RDONLY)
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
