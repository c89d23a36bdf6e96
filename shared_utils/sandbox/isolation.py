"""Setting up the walls: once per worker, then once per candidate.

A worker is three processes.  The outer one stays in the host's namespaces (it creates
and later removes the worker's cgroup).  The supervisor is PID 1 of a new PID namespace
with its own network namespace (no interface up, loopback included) and mount namespace,
pivoted into the whitelisted root of ``filesystem``.  The zygote, forked by the supervisor
before any job arrives, forks every candidate; so no candidate's memory ever held another
job's data.  The next job's candidate may be forked and walled in while the current one
runs; it gets its job only once the current one and all it started are gone.  The
supervisor's IPC and UTS namespaces are shared by its candidates one after the other
(seccomp refuses System V IPC and message queues).  Each candidate gets a fresh PID
namespace (killing its PID 1 kills everything it started), its own mount namespace with a
scratch ``/tmp``, resource limits, a cgroup with a memory and process budget where the
machine grants one, and then loses every privilege: as root it switches to a uid of its
own, otherwise it runs in the worker's user namespace; either way the bounding, ambient
and other capability sets are emptied, securebits are locked, ``no_new_privs`` is set and
a seccomp filter refuses the calls that reach into the kernel or other processes
(``seccomp``).  Only then does it read its job and lower its memory and CPU limits to it.

What could not be set up is recorded in the capabilities dict; the trusted side refuses
to run candidates unless every wall is up, or the caller asked for ``isolation="none"``.
"""

from __future__ import annotations

import os
import resource
import signal
import time

from . import filesystem, kernel, seccomp

FILE_SIZE_LIMIT = 16 << 20
OPEN_FILES_LIMIT = 256
PROCESS_LIMIT = 64
SIGNALS_PENDING_LIMIT = 256  # queued signals: kernel memory, and a count per user the caller may share
WORKER_PROCESSES = 3  # outer process, supervisor, zygote
SPARES = 1  # the next candidate, forked while the current one runs (same uid, same cgroup)


def _attempt(action) -> bool:
    try:
        action()
        return True
    except OSError:
        return False


def _enter_user_namespace() -> None:
    """Map our own uid/gid into a new user namespace (the unprivileged path)."""
    uid, gid = os.geteuid(), os.getegid()
    kernel.unshare(kernel.CLONE_NEWUSER)
    for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{path}", "w") as handle:
            handle.write(text)


# The kernel counts some objects per user, and counts what happens inside a user namespace
# against its creator too, at every level up: without a uid of their own, candidates would
# draw on the caller's allowance (128 inotify instances by default) and could exhaust it.
# Capped here, in the worker's namespace, where nothing of the worker needs them.
NAMESPACE_QUOTAS = {"max_inotify_instances": 0, "max_inotify_watches": 0, "max_fanotify_groups": 0,
                    "max_fanotify_marks": 0}


def _cap_namespace_quotas() -> None:
    """Lower this user namespace's own limits (its creator holds CAP_SYS_RESOURCE in it)."""
    for name, value in NAMESPACE_QUOTAS.items():
        with open(f"/proc/sys/user/{name}", "w") as handle:
            handle.write(str(value))


def enter_worker_namespaces() -> dict:
    """Outer process: a user namespace when unprivileged (its quotas capped), then a PID namespace
    for the supervisor."""
    caps = {"user_namespace": False, "pid_namespace": False, "namespace_quotas_capped": False}
    if os.geteuid() != 0:
        caps["user_namespace"] = _attempt(_enter_user_namespace)
        caps["namespace_quotas_capped"] = caps["user_namespace"] and _attempt(_cap_namespace_quotas)
    caps["pid_namespace"] = _attempt(lambda: kernel.unshare(kernel.CLONE_NEWPID))
    caps["candidate_uid"] = 0x7FFF0000 + (os.getpid() & 0xFFFF) if os.geteuid() == 0 else None
    return caps


def wall_off_worker(scratch: str, host: dict) -> dict:
    """Supervisor: no network, own IPC and UTS namespaces, a private mount namespace, the whitelisted root.

    The IPC namespace is shared by the worker's candidates, one after the other: the
    seccomp filter refuses System V IPC and message queues, so nothing can pass through it.
    """
    caps = {"network_namespace": _attempt(lambda: kernel.unshare(kernel.CLONE_NEWNET)),
            "ipc_namespace": _attempt(lambda: kernel.unshare(kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS)),
            "mount_namespace": _attempt(lambda: kernel.unshare(kernel.CLONE_NEWNS)),
            "filesystem_whitelist": False, "python_paths": host["python_paths"]}
    if caps["mount_namespace"]:
        caps["filesystem_whitelist"] = _attempt(
            lambda: filesystem.build_root(scratch, host["python_paths"], host["python_links"], host["masked_files"]))
    return caps


def _probe(action) -> bool:
    """Try a candidate-side step in a throwaway child (it may change the process for good)."""
    pid = os.fork()
    if pid == 0:
        try:
            action()
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def probe_candidate_walls(caps: dict) -> dict:
    """Which per-candidate walls this kernel grants, each tried in its own child."""
    def drop(with_seccomp: bool):
        walls = Walls({**caps, "candidate_mounts": False, "cgroup": None, "seccomp": with_seccomp}, home="/")
        walls.enter()
        walls.admit(cpu_seconds=5, memory_bytes=1 << 30)

    found = {
        "candidate_mounts": caps["filesystem_whitelist"] and _probe(
            lambda: [call() for call in filesystem.candidate_mounts(caps["candidate_uid"], caps["python_paths"])]),
        "capabilities_dropped": _probe(lambda: drop(with_seccomp=False)),
        "seccomp": seccomp.available() and _probe(lambda: drop(with_seccomp=True)),
    }
    if not found["capabilities_dropped"] and caps["candidate_uid"] is not None:
        found["candidate_uid"] = None
    return found


def process_limit(caps: dict) -> int | None:
    """``RLIMIT_NPROC`` for the candidates, where it counts only the worker's own processes.

    It counts a uid's processes: with a uid of our own (as root) that is the candidate's,
    and inside the worker's user namespace (Linux 5.14 and later count per namespace) it
    is the worker's three processes and the candidate's.
    """
    if caps["candidate_uid"] is not None:
        return PROCESS_LIMIT + SPARES
    if caps["user_namespace"]:
        return PROCESS_LIMIT + WORKER_PROCESSES + SPARES
    return None


OOM_SCORE_ADJ = "/proc/self/oom_score_adj"


def _first_to_go_out_of_memory() -> None:
    """The kernel's out-of-memory killer takes this process (and all it forks) before the
    zygote or anything else of the worker (see ``cgroups.Budget.join``).

    Raising one's own score needs no privilege; it is done before the uid changes, which
    would make ``/proc/self`` root's.
    """
    fd = os.open(OOM_SCORE_ADJ, os.O_WRONLY)
    try:
        os.write(fd, b"1000")
    finally:
        os.close(fd)


class Walls:
    """A candidate's walls, prepared once in the zygote, entered by each forked candidate.

    Preparing in the zygote is what every candidate would otherwise do alike: the bounding
    and ambient sets emptied and securebits locked (the zygote keeps its own capabilities,
    which only ``execve`` could have extended), the limits that do not depend on the job,
    oversize writes failing with EFBIG instead of killing, the part of the seccomp filter
    the zygote itself can live with, and every libc call's arguments converted
    (``kernel.Call``).  Root, which the zygote still is on the own-uid path, is
    exempt from ``RLIMIT_NPROC``.
    """

    def __init__(self, caps: dict, home: str):
        self.uid, self.home = caps["candidate_uid"], home
        self.mounts = filesystem.candidate_mounts(self.uid, caps["python_paths"]) if caps["candidate_mounts"] else ()
        self.drop = (kernel.prepared_capability_clear(), kernel.prepared_prctl(kernel.PR_SET_NO_NEW_PRIVS, 1),
                     kernel.prepared_prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL))
        self.filter = (kernel.prepared_seccomp(seccomp.program(seccomp.FOR_CANDIDATE)),) if caps["seccomp"] else ()
        kernel.lock_capabilities(kernel.last_capability())
        limits = {resource.RLIMIT_FSIZE: FILE_SIZE_LIMIT, resource.RLIMIT_NOFILE: OPEN_FILES_LIMIT,
                  resource.RLIMIT_CORE: 0, resource.RLIMIT_SIGPENDING: SIGNALS_PENDING_LIMIT}
        nproc = process_limit(caps)
        if nproc is not None:
            limits[resource.RLIMIT_NPROC] = nproc
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        if caps["seccomp"]:
            kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
            kernel.prepared_seccomp(seccomp.program(seccomp.FOR_ZYGOTE, seccomp.ALLOWED_FAMILIES))()

    def enter(self) -> dict:
        """Candidate side, right after the fork, before its job exists: every wall that does not
        depend on the job; the CPU nanoseconds each took."""
        clock = time.thread_time_ns
        costs, last = {}, clock()
        _first_to_go_out_of_memory()
        costs["first to go out of memory"], last = clock() - last, clock()
        os.setsid()
        for call in self.mounts:
            call()
        costs["own /tmp, /dev/shm and /proc"], last = clock() - last, clock()
        if self.uid is not None:
            os.setgroups([])
            os.setresgid(self.uid, self.uid, self.uid)
            os.setresuid(self.uid, self.uid, self.uid)
        for call in self.drop:
            call()
        costs["no privileges"], last = clock() - last, clock()
        for call in self.filter:
            call()
        costs["seccomp"] = clock() - last
        return costs

    def admit(self, cpu_seconds: int, memory_bytes: int) -> dict:
        """Candidate side, once its job has come: the limits that depend on it.

        Lowering a hard limit needs no privilege, so this comes after every privilege is gone.
        """
        started = time.thread_time_ns()
        os.chdir(self.home)
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        return {"rlimits": time.thread_time_ns() - started}
