"""What the hostile-candidate tests share: candidate-side snippets, the safe outcomes, a fresh pool.

Every probe is a real candidate handed to ``check``/``check_many``.  A probe's candidate
reports what it achieved as a plain string, and ``"refused"`` when the kernel said no, so a
failing test shows what the attack got (``got 'allowed: ...'``).  The snippets are written
to be harmless by construction: they write only inside the candidate's own work directory or
a pytest temporary folder, talk only to 127.0.0.1, and touch only processes descended from
the test process.
"""

from __future__ import annotations

import os
import platform
import re

import pytest

from shared_utils.sandbox import Outcome, check
from shared_utils.sandbox.pool import POOL

FAST = {"timeout": 2.0}

# x86_64 numbers: the probes call the raw system calls, as an attacker would, with ctypes.
SYSCALLS = {"mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "sethostname": 170,
            "ptrace": 101, "process_vm_readv": 310, "bpf": 321, "keyctl": 250, "unshare": 272, "setns": 308}
needs_x86_64 = pytest.mark.skipif(platform.machine() != "x86_64",
                                  reason="the probes call x86_64 system call numbers")

# Candidate side: raw system calls, and the verdict of one call as a string.
SYSCALL_PRELUDE = f"""
import ctypes, errno, os
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
NR = {SYSCALLS!r}

def _arg(value):
    if isinstance(value, int):
        return ctypes.c_long(value)
    if isinstance(value, str):
        return ctypes.c_char_p(value.encode())
    return value

def sys_call(name, *args):
    ctypes.set_errno(0)
    result = _libc.syscall(ctypes.c_long(NR[name]), *map(_arg, args))
    return result, ctypes.get_errno()

def said_no(result, err):
    return result == -1 and err in (errno.EPERM, errno.EACCES, errno.ENOSYS)

def verdict(result, err):
    if said_no(result, err):
        return 'refused'
    return f'allowed: returned {{result}}, errno {{errno.errorcode.get(err, err)}}'
"""

MS_BIND, MS_REMOUNT, MNT_DETACH = 0x1000, 0x20, 2
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET, CLONE_NEWUSER = 0x20000, 0x4000000, 0x40000000, 0x10000000

# Candidate side: take a mount namespace of its own, lift whatever covers /proc (which then
# shows the host's processes if /proc underneath is the host's) and make it writable.  Failures are silent: the
# probes that use it then simply find nothing.
UNCOVER_PROC = SYSCALL_PRELUDE + f"""
def uncover_host_proc():
    sys_call('unshare', {CLONE_NEWNS})
    while not os.path.exists('/proc/self/status'):
        if sys_call('umount2', '/proc', {MNT_DETACH})[0] != 0:
            break
    sys_call('mount', 0, '/proc', 0, {MS_REMOUNT | MS_BIND}, 0)  # writable again: /proc/<pid>/mem, fd/N
"""

# Candidate side: only attack the mount table where it is provably not the host's (the worker
# remounts everything read-only in a namespace of its own; the host's root is writable).
ISOLATED_VIEW_GUARD = """
def host_mounts_are_out_of_reach(path='/'):
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
"""


def indented(body: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in body.strip().splitlines())


def syscall_candidate(body: str) -> str:
    """A candidate whose ``f()`` runs ``body`` (which sets ``result``) and reports its verdict.

    A preparatory call the sandbox refuses (``os.pidfd_open`` under a filter, say) counts as
    the kernel's answer too.
    """
    return SYSCALL_PRELUDE + f"""
def f():
    try:
{indented(body, 8)}
    except OSError as exc:
        result = (-1, exc.errno)
    return verdict(*result)
"""


def run(code: str, tests: list[str], **options) -> Outcome:
    return check(code, tests, **{**FAST, **options})


def refused(outcome: Outcome) -> bool:
    """The safe outcome of a ``assert f() == 'refused'`` probe.

    Either the candidate saw the call fail (the test passed) or a seccomp filter killed it
    on the spot (crashed by SIGSYS).  Anything else means the call went through.
    """
    return outcome.passed or (outcome.status == "crashed" and outcome.exc_type == "SIGSYS")


def describe(outcome: Outcome) -> str:
    return f"{outcome.status}: {outcome.exc_type}: {outcome.message}"


@pytest.fixture
def fresh_workers():
    """Probes that poison a worker get workers of their own, and leave none behind."""
    POOL.close()
    yield
    POOL.close()


# The walls ``capabilities()`` must report as active; key names matched loosely on purpose.
EXPECTED_WALLS = {
    "no privileges (own uid or user namespace)": r"uid|user_namespace|privilege|unprivileged",
    "seccomp filter": r"seccomp",
    "whitelisted / read-only filesystem": r"filesystem|whitelist|read_only",
    "no network": r"network",
    "pid namespace": r"pid_namespace|pid",
    "bounded totals (cgroup or per-uid limits)": r"cgroup|nproc|pids|memory|process_limit",
}


def missing_walls(caps: dict) -> list[str]:
    """The walls for which no key of ``caps`` matches and holds a truthy value."""
    def active(pattern: str) -> bool:
        return any(re.search(pattern, str(key), re.I) and value not in (None, False, 0, "", "none")
                   for key, value in caps.items())
    return [wall for wall, pattern in EXPECTED_WALLS.items() if not active(pattern)]


def host_cmdline() -> bytes:
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as handle:
        return handle.read()
