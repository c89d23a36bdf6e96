"""Thin ctypes wrappers for the Linux calls Python 3.11's ``os`` module lacks.

Python 3.11 has no ``os.unshare``/``os.setns``/``mount``/``pivot_root``/``prctl``/``capset``,
so they come from libc.  Every wrapper raises ``OSError`` with the real errno, so callers
can tell "the kernel refused" (EPERM, EINVAL, ENOSYS) apart and report the missing wall.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
                   | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

# securebits: root is not special, setuid does not touch capabilities, ambient capabilities
# cannot be raised, and each of these is locked so that nothing later can undo it.
SECUREBITS_LOCKED_DOWN = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80

_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


def _load_libc() -> ctypes.CDLL:
    """glibc by its soname; ``ctypes.util`` only as a fallback (musl), because it imports
    ``subprocess`` and with it ``threading``, whose at-fork hook makes every fork of the
    worker about 0.3 ms dearer."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c") or None, use_errno=True)


_libc = _load_libc()


def _checked(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare(flags: int) -> None:
    prepared_unshare(flags)()


def setns(fd: int, nstype: int) -> None:
    _checked(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    prepared_mount(source, target, fstype, flags, data)()


def umount(target: str, flags: int = 0) -> None:
    _checked(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: no syscall number known for {os.uname().machine}")
    _checked(_libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, arg: int) -> None:
    prepared_prctl(option, arg)()


class Call:
    """A libc call whose arguments were converted once, ahead of time.

    The candidate's set-up runs in a fresh fork, where every Python object it touches costs
    a copy-on-write page fault; converting arguments in the zygote instead keeps that path short.
    """

    __slots__ = ("what", "function", "args", "keep")

    def __init__(self, what: str, function, *args):
        self.what, self.function, self.args = what, function, args

    def __call__(self) -> None:
        _checked(self.function(*self.args), self.what)


def prepared_mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> Call:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    return Call(f"mount {target}", _libc.mount, enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))


def prepared_unshare(flags: int) -> Call:
    return Call("unshare", _libc.unshare, ctypes.c_int(flags))


def prepared_prctl(option: int, arg: int) -> Call:
    return Call("prctl", _libc.prctl, ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                ctypes.c_ulong(0), ctypes.c_ulong(0))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except OSError:
        return 63


def lock_capabilities(last_cap: int) -> None:
    """Empty the bounding and ambient sets and lock securebits, keeping the current sets.

    Nothing gained through ``execve`` (setuid files, file capabilities, root's implicit
    set) can bring a capability back after this, while the process itself keeps what it
    needs to build the walls; ``clear_capability_sets`` then empties the rest.
    """
    for cap in range(last_cap + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno != 22:  # EINVAL: a capability this kernel does not know
                raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN)


def prepared_capability_clear() -> Call:
    """capset v3 with all-zero data: empties the effective, permitted and inheritable sets."""
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    return Call("capset", _libc.capset, ctypes.byref(header), data)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def prepared_seccomp(program: bytes) -> Call:
    """Loading a classic-BPF seccomp filter (``no_new_privs`` must be set by then)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    call = Call("seccomp", _libc.prctl, ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    call.keep = (buffer, fprog)  # the pointers above must stay valid
    return call
