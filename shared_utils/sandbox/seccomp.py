"""The system calls a candidate may not make, as a seccomp filter.

Capabilities already make most of these fail; the filter is the second wall, for the
kernel paths that need no capability at all (``unshare(CLONE_NEWUSER)`` grants a fresh
set, ``ptrace`` and ``process_vm_readv`` of a same-uid process, ``bpf``, ``keyctl``,
``io_uring`` which bypasses seccomp for the operations it queues) and for any capability
check we did not anticipate.  Refused calls fail with EPERM, so well-behaved code sees an
ordinary error; ``clone3`` fails with ENOSYS so that the C library falls back to ``clone``,
whose namespace flags the filter can inspect.  Sockets are allowed by family, not refused by
family: ``socket`` and ``socketpair`` work for Unix, IPv4 and IPv6 (the latter two inside the
worker's empty network namespace) and fail with EAFNOSUPPORT, as for a family this kernel was
built without, for everything else: vsock reaches the hypervisor from any network namespace,
netlink, packet, crypto (``AF_ALG``) and key sockets reach into the host kernel, and families
added by future kernels are refused before anyone has looked at them.  Only x86-64 is described here: anywhere
else the filter is unavailable, and the sandbox refuses to run without it.  The list is
loaded in two parts (``FOR_ZYGOTE`` once, ``FOR_CANDIDATE`` per candidate); a candidate is
under both.
"""

from __future__ import annotations

import errno
import os
import struct

from .kernel import NAMESPACE_FLAGS

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

DENIED_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "bpf": 321, "keyctl": 250,
    "add_key": 248, "request_key": 249, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "perf_event_open": 298, "userfaultfd": 323, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "syslog": 103, "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227,
    "adjtimex": 159, "clock_adjtime": 305, "iopl": 172, "ioperm": 173, "quotactl": 179, "vhangup": 153,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "kcmp": 312, "pidfd_getfd": 438,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "mount_setattr": 442, "mknod": 133, "mknodat": 259, "lookup_dcookie": 212, "uselib": 134,
    "fanotify_init": 300, "personality": 135,
    # System V IPC and POSIX message queues live in the worker's IPC namespace, which the
    # candidates of one worker share: refused, so that nothing passes from one to the next.
    "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65, "semctl": 66,
    "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "mq_open": 240,
    "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245,
}
CLONE_X86_64 = 56
CLONE3_X86_64 = 435
SOCKET_X86_64 = {"socket": 41, "socketpair": 53}
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
ALLOWED_FAMILIES = (AF_UNIX, AF_INET, AF_INET6)

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian: low half of args[0])


def available() -> bool:
    return os.uname().machine == "x86_64"


# The zygote keeps what it needs to fork a candidate into fresh namespaces; each candidate
# then adds the second filter before its own code runs.  Two filters because loading one
# costs a BPF compilation per candidate, which grows with its length.  The socket families
# are checked in the zygote's part: the zygote opens no socket once it is loaded.
FOR_CANDIDATE = frozenset({"mount", "umount2", "unshare", "setns"})
FOR_ZYGOTE = frozenset(DENIED_X86_64) - FOR_CANDIDATE


def _assemble(lines: list) -> bytes:
    """Classic BPF from ``(code, k, true_label, false_label)`` lines and label strings.

    A label names the next line; a jump target is a label (forward only, as BPF requires)."""
    ops = [line for line in lines if not isinstance(line, str)]
    at, index = {}, 0
    for line in lines:
        if isinstance(line, str):
            at[line] = index
        else:
            index += 1

    def offset(label, here: int) -> int:
        return 0 if label is None else at[label] - here - 1

    return b"".join(struct.pack("HBBI", code, offset(true, here), offset(false, here), k)
                    for here, (code, k, true, false) in enumerate(ops))


def program(names: frozenset[str] = frozenset(DENIED_X86_64), families: tuple[int, ...] | None = None) -> bytes:
    """The filter as BPF bytes: wrong architecture kills, ``names`` and namespace flags to
    ``clone`` get EPERM, ``clone3`` gets ENOSYS, and with ``families`` a ``socket`` or
    ``socketpair`` of any other family gets EAFNOSUPPORT."""
    lines = [(_LD_W_ABS, _ARCH, None, None),
             (_JEQ, AUDIT_ARCH_X86_64, "native", None),
             (_RET, _RET_KILL_PROCESS, None, None),
             "native", (_LD_W_ABS, _NR, None, None),
             (_JGE, X32_SYSCALL_BIT, "eperm", None)]  # x32 numbers alias the same calls: refuse them all
    lines += [(_JEQ, number, "eperm", None) for number in sorted(DENIED_X86_64[name] for name in names)]
    if families is not None:
        lines += [(_JEQ, number, "socket", None) for number in SOCKET_X86_64.values()]
    lines += [(_JEQ, CLONE3_X86_64, "enosys", None),
              (_JEQ, CLONE_X86_64, None, "allow"),
              (_LD_W_ABS, _ARG0, None, None),
              (_JSET, NAMESPACE_FLAGS, "eperm", "allow")]
    if families is not None:
        lines += ["socket", (_LD_W_ABS, _ARG0, None, None)]
        lines += [(_JEQ, family, "allow", None) for family in families]
        lines += [(_RET, _RET_ERRNO | errno.EAFNOSUPPORT, None, None)]
    lines += ["allow", (_RET, _RET_ALLOW, None, None),
              "eperm", (_RET, _RET_ERRNO | errno.EPERM, None, None),
              "enosys", (_RET, _RET_ERRNO | errno.ENOSYS, None, None)]
    return _assemble(lines)
