"""Setting up the walls: once per worker, then once per candidate.

A worker (one fork server) gets its own PID, mount and network namespaces where the
kernel allows: the filesystem is remounted read-only except a private tmpfs holding the
candidates' work directories, ``/proc`` is covered so host processes are invisible, and
the network namespace has no interface up (loopback included).  Each candidate then gets
a fresh PID namespace of its own (so killing its init kills everything it started), its
own IPC/UTS namespaces, a new session, resource limits, and - when we run as root - a
dedicated unprivileged uid; as non-root the worker lives in a user namespace and the
candidate loses every capability in it.  What could not be set up is recorded in the
capabilities dict instead of failing, so the sandbox still runs (with process isolation
and limits only) in containers that forbid namespaces.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import stat
import sysconfig

from . import kernel

_STATVFS_TO_MS = {
    os.ST_NOSUID: kernel.MS_NOSUID,
    os.ST_NODEV: kernel.MS_NODEV,
    os.ST_NOEXEC: kernel.MS_NOEXEC,
    os.ST_NOATIME: kernel.MS_NOATIME,
    os.ST_NODIRATIME: kernel.MS_NODIRATIME,
    os.ST_RELATIME: kernel.MS_RELATIME,
}
SCRATCH_TMPFS_SIZE = "256m"
FILE_SIZE_LIMIT = 16 << 20
OPEN_FILES_LIMIT = 64
PROCESS_LIMIT = 64


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


def enter_worker_namespaces() -> dict:
    """Outer worker process: user namespace if unprivileged, then a PID namespace.

    The worker's loop then runs as PID 1 of that namespace (the caller forks), which
    lets it create a nested PID namespace per candidate and guarantees that if the
    worker dies, every candidate process dies with it.
    """
    caps = {"user_namespace": False, "pid_namespace": False}
    if os.geteuid() != 0:
        caps["user_namespace"] = _attempt(_enter_user_namespace)
    caps["pid_namespace"] = _attempt(lambda: kernel.unshare(kernel.CLONE_NEWPID))
    return caps


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        fields = [line.split() for line in handle]
    return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f[4]) for f in fields]


def _remount_read_only(path: str) -> None:
    locked = os.statvfs(path).f_flag
    flags = kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY
    flags |= sum(ms for st, ms in _STATVFS_TO_MS.items() if locked & st)
    kernel.mount(None, path, None, flags)


def _read_only_everything() -> bool:
    return all([_attempt(lambda p=p: _remount_read_only(p)) for p in _mount_points()])


def wall_off_filesystem(scratch: str, hide_proc: bool) -> dict:
    """Inner worker: private mount namespace, read-only host, tmpfs scratch.

    ``/proc`` is covered when candidates get PID namespaces (it would show the host's
    processes); without them the worker needs it to find orphans to kill.
    """
    caps = {"mount_namespace": False, "read_only_filesystem": False, "network_namespace": False}
    caps["network_namespace"] = _attempt(lambda: kernel.unshare(kernel.CLONE_NEWNET))
    if not _attempt(lambda: kernel.unshare(kernel.CLONE_NEWNS)):
        return caps
    caps["mount_namespace"] = _attempt(lambda: kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE))
    if caps["mount_namespace"]:
        caps["read_only_filesystem"] = _read_only_everything()
        kernel.mount("tmpfs", scratch, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                     f"size={SCRATCH_TMPFS_SIZE},mode=0755")
        if hide_proc:
            kernel.mount("tmpfs", "/proc", "tmpfs", kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV, "size=4k")
    return caps


def _readable_by_anyone(path: str) -> bool:
    """Can an account with no rights here read ``path``: every folder above it searchable by others?"""
    resolved = os.path.realpath(path)
    folders = [resolved]
    while os.path.dirname(folders[-1]) != folders[-1]:
        folders.append(os.path.dirname(folders[-1]))
    try:
        return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in folders) and bool(
            os.stat(resolved).st_mode & stat.S_IROTH)
    except OSError:
        return False


def candidate_uid() -> int | None:
    """A uid no real account uses, distinct per live worker, when we may switch uids.

    Only where that uid can still read the interpreter's libraries: Python installed under a
    private home (pyenv in /root, say) would otherwise fail every import not made in advance.
    """
    if os.geteuid() != 0:
        return None
    libraries = {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    if not all(_readable_by_anyone(path) for path in libraries if os.path.exists(path)):
        return None
    return 0x7FFF0000 + (os.getpid() & 0xFFFF)


def probe_ipc_namespace() -> bool:
    """Can a candidate get its own IPC/UTS namespaces?  Tried in a throwaway child."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _attempt(lambda: kernel.unshare(kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS)) else 1)
    return os.waitpid(pid, 0)[1] == 0


def _set_limits(cpu_seconds: int, memory_bytes: int, own_uid: bool) -> None:
    limits = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_FSIZE: FILE_SIZE_LIMIT,
        resource.RLIMIT_NOFILE: OPEN_FILES_LIMIT,
        resource.RLIMIT_CORE: 0,
    }
    if own_uid:  # RLIMIT_NPROC counts per uid: only meaningful with a uid of our own
        limits[resource.RLIMIT_NPROC] = PROCESS_LIMIT
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing


def _drop_privileges(caps: dict) -> None:
    uid = caps["candidate_uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif caps["user_namespace"]:
        kernel.drop_all_capabilities()
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL)


def enter_candidate(caps: dict, workdir: str, cpu_seconds: int, memory_bytes: int) -> None:
    """Child side, right after fork: new session, namespaces, limits, no privileges."""
    os.setsid()
    if caps["ipc_namespace"]:
        kernel.unshare(kernel.CLONE_NEWIPC | kernel.CLONE_NEWUTS)
    if caps["candidate_uid"] is not None:
        os.chown(workdir, caps["candidate_uid"], caps["candidate_uid"])
    os.chdir(workdir)
    _set_limits(cpu_seconds, memory_bytes, caps["candidate_uid"] is not None)
    _drop_privileges(caps)
