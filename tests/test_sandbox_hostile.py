"""Hostile candidates against the sandbox's walls: privileges, system calls, the host's
filesystem and processes, and whatever outlives one candidate on its worker.

Each test is one attack, written as the candidate an attacker would submit, and asserts the
safe outcome: the call is refused inside the candidate, nothing appears on the host, later
candidates are unaffected.  ``sandbox_probes`` says how the probes stay harmless.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import socket
import threading
import time

import pytest

from sandbox_probes import (CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWUTS, ISOLATED_VIEW_GUARD,
                            MNT_DETACH, MS_BIND, MS_REMOUNT, SYSCALL_PRELUDE, UNCOVER_PROC, describe,
                            fresh_workers, host_cmdline, indented, needs_x86_64, refused, run,
                            syscall_candidate)
from shared_utils.paths import REPO_ROOT, shared_data_dir
from shared_utils.sandbox import capabilities, check_many, isolation
from shared_utils.sandbox.pool import POOL

pytestmark = needs_x86_64
__all__ = ["fresh_workers"]  # a fixture, used by name

REFUSED = ["assert f() == 'refused'"]


# --- privileged operations -------------------------------------------------------------

def test_remount_cannot_make_the_host_writable(tmp_path):
    target = tmp_path / "written-by-candidate"
    code = SYSCALL_PRELUDE + f"""
def f():
    result = sys_call('mount', 0, '/', 0, {MS_REMOUNT | MS_BIND}, 0)
    if said_no(*result):
        return 'refused'
    try:
        open({str(target)!r}, 'w').write('escaped')
        return 'remounted and wrote on the host'
    except OSError as exc:
        return f'remounted ({{exc}})'
"""
    outcome = run(code, REFUSED)
    assert not target.exists(), "the candidate wrote a file on the host"
    assert refused(outcome), describe(outcome)


PRIVILEGED_CALLS = {
    "tmpfs mount": f"""
os.mkdir('m')
result = sys_call('mount', 'none', 'm', 'tmpfs', 0, 'size=64k')
if result[0] == 0:
    sys_call('umount2', 'm', {MNT_DETACH})
""",
    "mknod of a character device": """
import stat
try:
    os.mknod('null-copy', stat.S_IFCHR | 0o600, os.makedev(1, 3))
    result = (0, 0)
except OSError as exc:
    result = (-1, exc.errno)
""",
    "chroot": """
pid = os.fork()
if pid == 0:
    os._exit(0 if sys_call('chroot', '.')[0] == 0 else ctypes.get_errno())
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
result = (0, 0) if code == 0 else (-1, code)
""",
    # the current name again: harmless even if the candidate shared the host's UTS namespace
    "sethostname": """
import socket
name = socket.gethostname().encode()
result = sys_call('sethostname', ctypes.c_char_p(name), len(name))
""",
}


@pytest.mark.parametrize("attack", PRIVILEGED_CALLS.values(), ids=PRIVILEGED_CALLS.keys())
def test_privileged_call_is_refused(attack):
    outcome = run(syscall_candidate(attack), REFUSED)
    assert refused(outcome), describe(outcome)


def test_candidate_holds_no_capability():
    code = SYSCALL_PRELUDE + """
class Header(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32), ('inheritable', ctypes.c_uint32)]
def f():
    data = (Data * 2)()
    _libc.capget(ctypes.byref(Header(0x20080522, 0)), data)
    held = []
    for kind in ('effective', 'permitted', 'inheritable'):
        mask = getattr(data[0], kind) | getattr(data[1], kind) << 32
        if mask:
            held.append(f'{kind} {mask:#x}')
    bounding = [cap for cap in range(64) if _libc.prctl(23, cap, 0, 0, 0) == 1]
    if bounding:
        held.append(f'bounding set of {len(bounding)}')
    if any(_libc.prctl(47, 1, cap, 0, 0) == 1 for cap in range(64)):
        held.append('ambient capabilities')
    return held
"""
    outcome = run(code, ["assert f() == []"])
    assert outcome.passed, describe(outcome)


def test_candidate_has_no_new_privs_a_seccomp_filter_and_locked_securebits():
    code = SYSCALL_PRELUDE + """
def f():
    missing = []
    if _libc.prctl(39, 0, 0, 0, 0) != 1:
        missing.append('no_new_privs')
    if _libc.prctl(21, 0, 0, 0, 0) != 2:
        missing.append('seccomp filter')
    if _libc.prctl(27, 0, 0, 0, 0) & 0x2a != 0x2a:
        missing.append('locked securebits')
    return missing
"""
    outcome = run(code, ["assert f() == []"])
    assert outcome.passed, describe(outcome)


# --- system calls a seccomp filter must refuse --------------------------------------------

SECCOMP_PROBES = {
    "ptrace": """
child = os.fork()
if child == 0:
    import time
    time.sleep(30)
    os._exit(0)
result = sys_call('ptrace', 16, child, 0, 0)
if result[0] == 0:
    os.waitpid(child, 0)
    sys_call('ptrace', 17, child, 0, 0)
os.kill(child, 9)
os.waitpid(child, 0)
""",
    "process_vm_readv": """
class IOVec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('length', ctypes.c_size_t)]
source, target = ctypes.create_string_buffer(b'secret', 16), ctypes.create_string_buffer(16)
local, remote = IOVec(ctypes.addressof(target), 16), IOVec(ctypes.addressof(source), 16)
result = sys_call('process_vm_readv', os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
""",
    "bpf": """
attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)  # BPF_MAP_CREATE: an array map of one int
result = sys_call('bpf', 0, ctypes.byref(attr), ctypes.sizeof(attr))
if result[0] >= 0:
    os.close(result[0])
""",
    "keyctl": """
result = sys_call('keyctl', 0, -3, 1)  # KEYCTL_GET_KEYRING_ID of the session keyring
""",
    "unshare of a mount namespace": f"""
result = sys_call('unshare', {CLONE_NEWNS})
""",
    "unshare of a user namespace": f"""
result = sys_call('unshare', {CLONE_NEWUSER})
""",
    "setns": f"""
result = sys_call('setns', os.pidfd_open(os.getpid()), {CLONE_NEWUTS})
""",
    # paths that do not exist: permitted, the call fails with ENOENT and changes nothing
    "pivot_root": """
result = sys_call('pivot_root', '/no-such-new-root', '/no-such-old-root')
""",
    "mount": f"""
os.mkdir('m')
result = sys_call('mount', '.', 'm', 0, {MS_BIND}, 0)
if result[0] == 0:
    sys_call('umount2', 'm', {MNT_DETACH})
""",
    # the work directory is no mount point: permitted, umount2 fails with EINVAL
    "umount": """
result = sys_call('umount2', '.', 0)
""",
}


@pytest.mark.parametrize("attack", SECCOMP_PROBES.values(), ids=SECCOMP_PROBES.keys())
def test_dangerous_system_call_is_refused(attack):
    outcome = run(syscall_candidate(attack), REFUSED)
    assert refused(outcome), describe(outcome)


# Families a candidate has no use for, each with an address to bind where one is cheap to
# write: outside the network namespace (vsock reaches the hypervisor), or into the host kernel
# (netlink, packet capture, the crypto API, key management, TIPC and RDS clusters).
FOREIGN_FAMILIES = """
import socket
FAMILIES = {'AF_VSOCK': (40, ('VMADDR', 0)), 'AF_PACKET': (17, None), 'AF_NETLINK': (16, (0, 0)),
            'AF_ALG': (38, ('hash', 'sha256')), 'AF_KEY': (15, None), 'AF_TIPC': (30, None),
            'AF_RDS': (21, None), 'AF_CAN': (29, None), 'AF_XDP': (44, None), 'AF_BLUETOOTH': (31, None)}
TYPES = (socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_STREAM, socket.SOCK_SEQPACKET)

def opened(family, address):
    for kind in TYPES:
        try:
            sock = socket.socket(family, kind)
        except OSError:
            continue
        with sock:
            if address is None:
                return 'opened'
            if address[0] == 'VMADDR':
                address = (socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY)
            try:
                sock.bind(address)
                return 'opened and bound'
            except OSError:
                return 'opened'
    return None

def f():
    got = {name: opened(family, address) for name, (family, address) in FAMILIES.items()}
    for name, (family, _) in FAMILIES.items():
        try:
            pair = socket.socketpair(family, socket.SOCK_DGRAM)
        except OSError:
            continue
        for sock in pair:
            sock.close()
        got[name] = 'socketpair'
    return sorted(f'{name} {how}' for name, how in got.items() if how)
"""


def test_socket_families_outside_the_allowed_ones_cannot_be_opened():
    """Only Unix, IPv4 and IPv6 sockets (the latter two inside the empty network namespace)."""
    outcome = run(FOREIGN_FAMILIES, ["assert f() == []"])
    assert outcome.passed, describe(outcome)


# --- the host's processes ---------------------------------------------------------------

def _host_proc_probe(action: str) -> str:
    """A candidate that uncovers /proc, then does ``action`` to the verdict process (this one)."""
    return UNCOVER_PROC + f"""
def f():
    uncover_host_proc()
    pid = {os.getpid()}
    try:
{indented(action, 8)}
    except OSError:
        return 'refused'
"""


def test_host_processes_stay_hidden():
    code = _host_proc_probe(f"""
with open(f'/proc/{{pid}}/cmdline', 'rb') as handle:
    seen = handle.read() == {host_cmdline()!r}
return 'saw the verdict process' if seen else 'refused'
""")
    outcome = run(code, REFUSED)
    assert refused(outcome), describe(outcome)


def test_verdict_process_environment_is_unreadable():
    code = _host_proc_probe("""
with open(f'/proc/{pid}/environ', 'rb') as handle:
    return f'read {len(handle.read())} bytes of its environment'
""")
    outcome = run(code, REFUSED)
    assert refused(outcome), describe(outcome)


def test_verdict_process_memory_cannot_be_opened():
    code = _host_proc_probe("""
os.close(os.open(f'/proc/{pid}/mem', os.O_RDWR))
return 'opened its memory read-write'
""")
    outcome = run(code, REFUSED)
    assert refused(outcome), describe(outcome)


def test_cannot_join_the_verdict_process_mount_namespace(tmp_path):
    """From the host's mount namespace the whole host is writable: a plain file write escapes."""
    target = tmp_path / "written-by-candidate"
    code = _host_proc_probe(f"""
result = sys_call('setns', os.open(f'/proc/{{pid}}/ns/mnt', os.O_RDONLY), {CLONE_NEWNS})
if said_no(*result):
    return 'refused'
open({str(target)!r}, 'w').write('escaped')
return 'joined the host mount namespace and wrote on the host'
""")
    outcome = run(code, REFUSED)
    assert not target.exists(), "the candidate wrote a file on the host"
    assert refused(outcome), describe(outcome)


def test_host_kernel_settings_stay_closed():
    """Opened for writing, never written: the host's core_pattern runs a program as root on the host."""
    code = _host_proc_probe("""
os.close(os.open('/proc/sys/kernel/core_pattern', os.O_WRONLY))
return 'could rewrite the host core_pattern'
""")
    outcome = run(code, REFUSED)
    assert refused(outcome), describe(outcome)


def test_scanning_the_verdict_process_memory_does_not_pass():
    """No solution at all: read the expected value out of the process that holds it."""
    token = f"tok-{secrets.token_hex(6)}"
    code = _host_proc_probe(r"""
import re
wanted = re.compile(rb"assert f\(3\) == '(tok-[0-9a-f]{12})'")
with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/mem', 'rb', 0) as mem:
    for line in maps:
        span, perms, *rest = line.split()
        if not perms.startswith('rw') or (len(rest) > 3 and not rest[3].startswith('[heap')):
            continue
        start, end = (int(x, 16) for x in span.split('-'))
        for offset in range(start, end, 16 << 20):
            try:
                mem.seek(offset)
                found = wanted.search(mem.read(min(16 << 20, end - offset) + 64))
            except (OSError, ValueError, OverflowError):
                break
            if found:
                return found.group(1).decode()
return 'nothing found'
""").replace("def f():", "def f(x):")
    outcome = run(code, [f"assert f(3) == '{token}'"], timeout=15)
    assert not outcome.passed, "a candidate with no solution passed by reading the verdict process's memory"


def test_cannot_join_the_verdict_process_network():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = _host_proc_probe(f"""
import socket
result = sys_call('setns', os.open(f'/proc/{{pid}}/ns/net', os.O_RDONLY), {CLONE_NEWNET})
socket.create_connection(('127.0.0.1', {port}), timeout=1).close()
return 'connected to the host loopback'
""")
        outcome = run(code, REFUSED)
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert refused(outcome), describe(outcome)


def test_cannot_corrupt_another_candidates_result_pipe():
    """One candidate writes junk into the result pipes of its neighbours on other workers."""
    attacker = _host_proc_probe(f"""
import time
me = int(os.readlink('/proc/self'))
def family(root):
    kids, frontier = set(), {{root}}
    while frontier:
        found = set()
        for parent in frontier:
            try:
                for task in os.listdir(f'/proc/{{parent}}/task'):
                    with open(f'/proc/{{parent}}/task/{{task}}/children') as handle:
                        found |= {{int(p) for p in handle.read().split()}}
            except OSError:
                pass
        frontier = found - kids
        kids |= found
    return kids
writes, deadline = 0, time.monotonic() + 3
while time.monotonic() < deadline:
    for victim in family(pid) - {{me}}:
        try:
            if os.readlink(f'/proc/{{victim}}/fd/3').startswith('pipe:'):
                fd = os.open(f'/proc/{{victim}}/fd/3', os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, b'{{"values":[0]}}\\n')
                os.close(fd)
                writes += 1
        except OSError:
            pass
    time.sleep(0.02)
return f'{{writes}} junk lines written' if writes else 'refused'
""")
    victims = [(f"import time\ntime.sleep(0.3)\ndef f(x):\n    return x + {i}", [f"assert f(1) == {i + 1}"])
               for i in range(8)]
    outcomes = check_many([(attacker, REFUSED)] + victims, workers=2, timeout=5, progress=False)
    assert [describe(o) for o in outcomes[1:] if not o.passed] == []


# --- what one candidate leaves to the next on its worker --------------------------------

def test_bind_mount_over_stdlib_does_not_reach_later_candidates(fresh_workers):
    attacker = SYSCALL_PRELUDE + ISOLATED_VIEW_GUARD + """
import importlib.util
def f():
    target = importlib.util.find_spec('heapq').origin
    if not host_mounts_are_out_of_reach(target):
        return 'not attempted: this could be the host mount table'
    with open('heapq.py', 'w') as fake:
        fake.write('def nsmallest(n, iterable, key=None):\\n    return [\"poisoned\"]\\n')
    return verdict(*sys_call('mount', os.path.abspath('heapq.py'), target, 0, 0x1000, 0))
"""
    honest = ("import heapq\ndef f():\n    return heapq.nsmallest(1, [3, 1, 2])", ["assert f() == [1]"])
    first = check_many([(attacker, REFUSED), honest], workers=1, progress=False)
    later = check_many([honest], workers=1, progress=False)
    assert [describe(o) for o in first[1:] + later if not o.passed] == []


def test_mount_inside_the_work_dir_does_not_break_later_jobs(fresh_workers):
    attacker = SYSCALL_PRELUDE + ISOLATED_VIEW_GUARD + """
def f():
    if not host_mounts_are_out_of_reach():
        return 'not attempted: this could be the host mount table'
    os.mkdir('m')
    return verdict(*sys_call('mount', 'none', 'm', 'tmpfs', 0, 'size=64k'))
"""
    honest = [(f"def f():\n    return {i}", [f"assert f() == {i}"]) for i in range(3)]
    first = check_many([(attacker, REFUSED)] + honest, workers=1, progress=False)
    later = check_many(honest, workers=1, progress=False)
    assert [describe(o) for o in first[1:] + later if not o.passed] == []


def test_scratch_flood_does_not_starve_the_next_candidate(fresh_workers):
    flood = """
import os
def f():
    if os.statvfs('.').f_blocks * os.statvfs('.').f_frsize > 4 << 30:
        return 'not attempted: the scratch space is no bounded tmpfs'
    written = 0
    for i in range(40):
        try:
            with open(os.path.join('..', f'flood-{i}'), 'wb') as out:
                out.write(b'x' * (15 << 20))
            written += 15
        except OSError:
            break
    return f'{written} MiB outside the work directory'
"""
    honest = ("def f():\n    with open('data.bin', 'wb') as out:\n        out.write(b'y' * (8 << 20))\n"
              "    return len(open('data.bin', 'rb').read())", ["assert f() == 8 << 20"])
    outcomes = check_many([(flood, ["assert f() == 0"]), honest], workers=1, timeout=10, progress=False)
    assert outcomes[1].passed, describe(outcomes[1])


# --- totals across all of a candidate's processes ---------------------------------------

def test_children_share_one_memory_limit():
    code = """
import os, select, time
def f():
    ready_r, ready_w = os.pipe()
    for _ in range(3):
        if os.fork() == 0:
            try:
                block = b'x' * (300 << 20)
                os.write(ready_w, b'1')
            except MemoryError:
                os.write(ready_w, b'0')
            time.sleep(30)
            os._exit(0)
    os.close(ready_w)
    answers, deadline = b'', time.monotonic() + 5
    while len(answers) < 3 and select.select([ready_r], [], [], max(0, deadline - time.monotonic()))[0]:
        answer = os.read(ready_r, 3)
        if not answer:
            break
        answers += answer
    return f"{answers.count(b'1') * 300} MiB held at once"
"""
    outcome = run(code, ["assert f() == '900 MiB held at once'"], memory_limit=512 << 20, timeout=15)
    assert not outcome.passed, "three children held 900 MiB under a 512 MiB limit"


PROCESS_HOG = """
import os, time
def f():
    started = 0
    for _ in range(300):
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            started += 1
        except OSError:
            break
    return started
"""


def test_process_count_is_bounded():
    outcome = run(PROCESS_HOG, ["assert f() == 300"], timeout=15)
    assert not outcome.passed, "300 live processes were allowed"


def test_exhausted_budgets_cost_the_next_candidate_nothing(fresh_workers):
    """The next candidate is forked while this one runs, under the same budgets: a candidate
    that takes every process and more memory than it may must not cost the next one its verdict."""
    hog = """
import os, time
def f():
    started = 0
    for _ in range(300):
        try:
            if os.fork() == 0:
                block = b'x' * (100 << 20)
                time.sleep(30)
                os._exit(0)
            started += 1
        except OSError:
            break
    time.sleep(1)
    return started
"""
    honest = [(f"def f():\n    return {i}", [f"assert f() == {i}"]) for i in range(3)]
    outcomes = check_many([(hog, ["assert f() == 300"])] + honest, workers=1, memory_limit=512 << 20, timeout=10,
                          progress=False)
    assert not outcomes[0].passed
    assert [describe(o) for o in outcomes[1:] if not o.passed] == []


INOTIFY_HOG = """
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
def f():
    held = 0
    while held < 1000 and libc.inotify_init1(0o2000000) >= 0:
        held += 1
    time.sleep(1.5)
    return held
"""


def test_per_user_kernel_quotas_of_the_caller_stay_its_own():
    """A candidate takes every inotify instance it can and holds them: the caller's own
    ``inotify_init1`` must keep working meanwhile (the kernel counts instances per user, and
    on the user-namespace path the candidate's count is also the caller's)."""
    libc = ctypes.CDLL(None, use_errno=True)
    finished = {}
    thread = threading.Thread(target=lambda: finished.update(outcome=run(INOTIFY_HOG, ["assert f() == 0"], timeout=10)))
    thread.start()
    failures, tries = [], 0
    while thread.is_alive():
        fd = libc.inotify_init1(os.O_CLOEXEC)
        if fd < 0:
            failures.append(errno.errorcode.get(ctypes.get_errno(), "?"))
        else:
            os.close(fd)
        tries += 1
        time.sleep(0.02)
    thread.join()
    assert not failures, (f"the caller's inotify_init1 failed {len(failures)} of {tries} times ({failures[0]}) "
                          f"while the candidate held its instances ({describe(finished['outcome'])})")


def test_queued_signals_are_bounded():
    """Queued signals are kernel memory and a per-user count (the caller's too, on the
    user-namespace path): a candidate may hold only a few."""
    code = """
import ctypes, signal, os
libc = ctypes.CDLL(None, use_errno=True)
def f():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
    queued = 0
    while queued < 200000 and libc.sigqueue(os.getpid(), signal.SIGRTMIN, ctypes.c_void_p(0)) == 0:
        queued += 1
    return queued
"""
    outcome = run(code, ["assert f() == 0"], timeout=10)
    queued = int(outcome.results[0].message.removeprefix("got "))
    assert queued <= isolation.SIGNALS_PENDING_LIMIT, f"{queued} signals queued at once"


SOCKET_FLOOD = """
import os, select, socket, time
def fill():
    held, pairs = 0, []
    try:
        while len(pairs) < 120:
            a, b = socket.socketpair()
            a.setblocking(False)
            pairs.append((a, b))
            try:
                while True:
                    held += a.send(b'x' * 65536)
            except BlockingIOError:
                pass
    except OSError:
        pass
    return held, pairs
def f():
    ready_r, ready_w = os.pipe()
    for _ in range(15):
        if os.fork() == 0:
            held, pairs = fill()
            os.write(ready_w, (str(held >> 20) + ',').encode())
            time.sleep(30)
            os._exit(0)
    os.close(ready_w)
    answers, deadline = b'', time.monotonic() + 8
    while answers.count(b',') < 15 and select.select([ready_r], [], [], max(0, deadline - time.monotonic()))[0]:
        chunk = os.read(ready_r, 100)
        if not chunk:
            break
        answers += chunk
    return sum(int(x) for x in answers.decode().split(',') if x)
"""


def test_socket_buffers_count_against_the_memory_budget(fresh_workers):
    """Fifteen processes fill Unix socket buffers (kernel memory, no resident page of theirs):
    together more than the budget, which a cgroup or the socket-buffer count must see.

    Run after the process-count probe, each on fresh workers, several times: in that order
    the cgroup's out-of-memory killer used to take the zygote now and then (its processes
    were no larger than the zygote, and all had the same score), and the worker died
    instead of reporting MemoryLimit.  About 4 s."""
    if capabilities()["memory_accounting"] == "resident-size sum":
        pytest.skip("no cgroup, and this kernel does not report Unix sockets (capabilities' not_covered)")
    for _ in range(4):
        POOL.close()
        assert not run(PROCESS_HOG, ["assert f() == 300"], timeout=15).passed
        POOL.close()
        outcome = run(SOCKET_FLOOD, ["assert f() == 0"], memory_limit=256 << 20, timeout=15)
        assert outcome.status == "crashed" and outcome.exc_type == "MemoryLimit", f"{describe(outcome)} (MiB held)"


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, depth below ``pid``) of every process descended from it."""
    found, frontier = [], [(pid, 0)]
    while frontier:
        parent, depth = frontier.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{task}/children") as handle:
                    frontier += [(int(child), depth + 1) for child in handle.read().split()]
        found += [(parent, depth)] if parent != pid else []
    return found


def _oom_score_adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj") as handle:
        return int(handle.read())


def test_the_out_of_memory_killer_takes_a_candidate_before_the_zygote(fresh_workers):
    """Whatever the sizes, the kernel's OOM killer must choose a candidate's process, never the
    zygote that forks the next ones: the candidate's score is the highest there is, the
    zygote's lower (the worker's outer process, its supervisor, then the zygote)."""
    code = "def f():\n    return int(open('/proc/self/oom_score_adj').read())"
    assert run(code, ["assert f() == 1000"]).passed
    worker = POOL.acquire()
    try:
        zygotes = [pid for pid, depth in _descendants(worker.process.pid) if depth == 2]
        assert len(zygotes) == 1, _descendants(worker.process.pid)
        assert _oom_score_adj(zygotes[0]) < 1000
    finally:
        POOL.release(worker)


# --- what the candidate can see of the host ---------------------------------------------

def _readable_targets() -> dict[str, str]:
    data = shared_data_dir()
    return {
        "/sys": "/sys/kernel/uevent_seqnum",
        "/dev/kmsg": "/dev/kmsg",
        "a home directory": "/root/.bashrc",
        "the repository checkout": str(REPO_ROOT / "README.md"),
        "the shared data": str(data / "mbpp" / "train.jsonl") if data else "",
    }


@pytest.mark.parametrize("what", _readable_targets().keys())
def test_host_file_is_unreadable(what):
    path = _readable_targets()[what]
    if not path or not os.access(path, os.R_OK):
        pytest.skip(f"{what}: {path or 'absent'} is not readable by the test process itself")
    code = f"""
import os
def f():
    try:
        fd = os.open({path!r}, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = os.read(fd, 256)
        except BlockingIOError:
            data = b'(open)'
        os.close(fd)
        return f'read {{len(data)}} bytes'
    except OSError:
        return 'refused'
"""
    outcome = run(code, REFUSED)
    assert refused(outcome), describe(outcome)


def test_dev_shm_is_private_and_writable():
    host_name, candidate_name = (f"probe-{role}-{secrets.token_hex(6)}" for role in ("host", "candidate"))
    host_file = f"/dev/shm/{host_name}"
    with open(host_file, "w") as handle:
        handle.write("the host's")
    try:
        code = f"""
import os
def f():
    with open('/dev/shm/{candidate_name}', 'w') as out:
        out.write('mine')
    return [os.path.exists('/dev/shm/{host_name}'), open('/dev/shm/{candidate_name}').read()]
"""
        outcome = run(code, ["assert f() == [False, 'mine']"])
    finally:
        os.remove(host_file)
    leaked = os.path.exists(f"/dev/shm/{candidate_name}")
    if leaked:
        os.remove(f"/dev/shm/{candidate_name}")
    assert not leaked, "the candidate's /dev/shm file appeared on the host"
    assert outcome.passed, describe(outcome)
