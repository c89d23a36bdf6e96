"""The sandbox against hostile programs, legitimate ones, and real MBPP problems.

Every test uses short timeouts, so the file runs in seconds.  After each test no process
the candidate started may remain: each worker's process tree must be back to the worker
itself.  Tests skip only where ``capabilities()`` says the kernel withholds a protection.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from shared_utils.sandbox import SandboxUnavailable, capabilities, check, check_many
from shared_utils.sandbox import pool
from shared_utils.sandbox.pool import POOL

CAPS = capabilities()
FAST = {"timeout": 1.0}
WORKER_PROCESSES = 2  # below the outer process: the supervisor and the zygote


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Each worker is an outer process, its supervisor and its zygote, and nothing else."""
    yield
    for worker in list(POOL.all):
        assert len(_descendants(worker.process.pid)) == WORKER_PROCESSES, "a candidate process outlived check()"


def _run(code: str, tests: list[str], **kwargs):
    return check(code, tests, **{**FAST, **kwargs})


# --- hostile programs ------------------------------------------------------------------

def test_infinite_loop_times_out_at_the_deadline():
    started = time.monotonic()
    outcome = _run("def f():\n    while True:\n        pass", ["assert f() == 1"], timeout=0.5)
    assert outcome.status == "timeout" and not outcome.passed
    assert time.monotonic() - started < 3


def test_sigterm_ignoring_loop_is_killed():
    code = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ndef f():\n    while True:\n        pass"
    assert _run(code, ["assert f() == 1"], timeout=0.5).status == "timeout"


def test_memory_bomb_hits_the_address_space_limit():
    outcome = _run("def f():\n    return len(bytearray(10 ** 10))", ["assert f() == 10 ** 10"])
    assert outcome.status == "error" and outcome.exc_type == "MemoryError"
    growing = "def f():\n    a = []\n    while True:\n        a.append(' ' * 10 ** 6)"
    assert _run(growing, ["assert f() == 1"], memory_limit=256 << 20, timeout=10).exc_type == "MemoryError"


def test_bounded_fork_storm_is_contained():
    code = ("import os, time\ndef f():\n    for _ in range(200):\n        try:\n            if os.fork() == 0:\n"
            "                time.sleep(60)\n                os._exit(0)\n        except OSError:\n            return 'limited'\n"
            "    return 'unlimited'")
    outcome = _run(code, ["assert f() == 'limited'"])
    if CAPS["candidate_uid"] is not None:
        assert outcome.passed, outcome  # RLIMIT_NPROC on the candidate's own uid stops it


def test_daemonised_double_fork_is_killed():
    code = ("import os, time\ndef f():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
            "            signal_free = time.sleep(300)\n        os._exit(0)\n    time.sleep(0.1)\n    return 1")
    assert _run(code, ["assert f() == 1"]).passed  # the fixture checks the daemon is gone


def test_cannot_delete_a_file_outside_the_work_dir(tmp_path):
    if not (CAPS["filesystem_whitelist"] or CAPS["candidate_uid"] is not None):
        pytest.skip("neither a read-only filesystem nor a separate uid is available here")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.chmod(tmp_path, 0o777)  # even a world-writable directory must not let it through
    code = f"import os\ndef f():\n    os.remove({str(victim)!r})\n    return 'deleted'"
    assert not _run(code, ["assert f() == 'deleted'"]).passed
    assert victim.read_text() == "keep me"


def test_cannot_reach_a_loopback_listener():
    if not CAPS["network_namespace"]:
        pytest.skip("no network namespace on this kernel")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (f"import socket\ndef f():\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                "    return 'connected'")
        outcome = _run(code, ["assert f() == 'connected'"])
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert outcome.status == "error" and "Error" in outcome.exc_type


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "hunter2")
    POOL.close()  # fresh workers, started while the secret is set
    code = "import os\ndef f():\n    return os.environ.get('SANDBOX_TEST_SECRET')"
    assert not _run(code, ["assert f() == 'hunter2'"]).passed
    assert _run(code + "\ndef g():\n    return os.environ.get('OMP_NUM_THREADS')", ["assert g() == '1'"]).passed


def test_huge_output_is_truncated_and_harmless():
    code = "def f():\n    line = 'x' * (1 << 20)\n    for _ in range(100):\n        print(line)\n    return 1"
    outcome = _run(code, ["assert f() == 1"], timeout=10)
    assert outcome.passed and 0 < len(outcome.output) <= 64 << 10


def test_segfault_is_a_crash_and_the_harness_goes_on():
    outcome = _run("import ctypes\ndef f():\n    return ctypes.string_at(0)", ["assert f() == b''"])
    assert outcome.status == "crashed" and outcome.exc_type == "SIGSEGV"
    assert _run("def f():\n    return 1", ["assert f() == 1"]).passed


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)",
    "import os\nos._exit(0)",
    "import os\ndef f(x):\n    os._exit(0)",
    "import sys\ndef f(x):\n    sys.exit(0)",
    "print('passed')\nprint('{\"ready\":1}')\nprint('{\"values\":[9]}')\ndef f(x):\n    return x",
    "import atexit, os\natexit.register(lambda: os._exit(0))\ndef f(x):\n    return x",
    "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return x",
    "class Always:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n        return False\n"
    "def f(x):\n    return Always()",
    "class Sneaky(int):\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return Sneaky(x)",
    # frame walking: lift the expected value from the code that called us (works in-process)
    "import sys\ndef f(x):\n    consts = [c for c in sys._getframe(1).f_code.co_consts if c is not None]\n"
    "    return consts[-1]",
    # scan the heap for the expected value
    "import gc\ndef f(x):\n    return next((o for o in gc.get_objects() if type(o) is list and 'needle' in o), [])",
    # forge the result channel directly, then leave
    "import os\nos.write(3, b'{\"ready\":1}\\n{\"values\":[true]}\\n{\"values\":[true]}\\n')\nos._exit(0)",
    "import os\ndef f(x):\n    os.write(3, b'{\"values\":[{\"o\":\"x\"}]}\\n{\"values\":[9]}\\n')\n    return x",
])
def test_verdict_cannot_be_forged(code):
    tests = ["assert f(3) == 9", "assert f(4) == ['needle', 16]"]
    outcome = _run(code, tests)
    assert not outcome.passed, outcome
    assert _run("def f(x):\n    return x * x", ["assert f(3) == 9"]).passed  # and the harness goes on


def test_exit_between_asserts_keeps_the_first_result():
    code = "import os\ndef f(x):\n    if x == 2:\n        os._exit(0)\n    return x"
    outcome = _run(code, ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"])
    assert [r.status for r in outcome.results] == ["passed", "crashed", "not_run"]


# --- legitimate programs ---------------------------------------------------------------

LEGIT = [
    ("import collections, heapq, itertools, re, math, functools\n"
     "def f(x):\n    return sorted(heapq.nsmallest(2, [x, 1, 5])) + [math.gcd(12, 18), len(re.findall('a', 'aa'))]",
     "assert f(3) == [1, 3, 6, 2]"),
    ("def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)", "assert f(900) == 900"),
    ("def f(x):\n    with open('scratch.txt', 'w') as out:\n        out.write(x)\n    return open('scratch.txt').read()",
     "assert f('hello') == 'hello'"),
    ("import time\ndef f():\n    time.sleep(0.2)\n    return 1", "assert f() == 1"),
    ("from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef f():\n    return P(1, 2)",
     "assert f() == (1, 2)"),
    ("def f():\n    return 4", "assert f() == 4.0"),
    ("def f():\n    return 0.1 + 0.2", "assert f() == 0.30000000000000004"),
    ("from collections import Counter\ndef f(s):\n    return Counter(s)", "assert f('aab') == {'a': 2, 'b': 1}"),
    ("def f():\n    return [3, 4]", "assert set(f()) == set((3, 4))"),
    ("def f():\n    return 10 ** 5000", "assert f() == 10 ** 5000"),
    ("import math\ndef f():\n    return 3.14159", "assert math.isclose(f(), 3.1416, rel_tol=0.001)"),
    ("def f():\n    return []", "assert not f()"),
]


@pytest.mark.parametrize("code,test", LEGIT)
def test_legitimate_program_passes(code, test):
    outcome = _run(code, [test])
    assert outcome.passed, outcome


def test_lingering_thread_does_not_hold_the_verdict():
    code = "import threading, time\ndef f():\n    threading.Thread(target=time.sleep, args=(300,)).start()\n    return 1"
    outcome = _run(code, ["assert f() == 1"], timeout=5)
    assert outcome.passed and outcome.elapsed < 2


def test_timeout_modes():
    code = "import time\ndef f():\n    time.sleep(0.4)\n    return 1"
    tests = ["assert f() == 1"] * 3
    assert _run(code, tests, timeout=0.7, timeout_mode="per_test").passed
    assert _run(code, tests, timeout=0.7, timeout_mode="total").status == "timeout"


def test_check_many_keeps_order_and_runs_timeouts_in_parallel():
    loop = ("def f(x):\n    while True:\n        pass", ["assert f(1) == 1"])
    jobs = [loop if i % 5 == 0 else (f"def f(x):\n    return x + {i}", [f"assert f(1) == {i + 1}"]) for i in range(20)]
    started = time.monotonic()
    outcomes = check_many(jobs, workers=2, timeout=0.5, progress=False)
    assert time.monotonic() - started < 4 * 0.5 + 1.5  # 4 loops: about two timeouts per worker
    assert [o.status for o in outcomes] == ["timeout" if i % 5 == 0 else "passed" for i in range(20)]


SLOW_PASS = ("import time\ndef f():\n    time.sleep(2)\n    return 1", ["assert f() == 1"])


def _kill_workers() -> None:
    for pid in {pid for worker in list(POOL.all) for pid in _descendants(worker.process.pid)}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_killed_under_a_job_costs_no_job():
    """A worker dies of something else than its candidate (killed from outside): the job it was
    running runs again on a fresh worker, and every job gets its own verdict."""
    jobs = [SLOW_PASS] + [(f"def f():\n    return {i}", [f"assert f() == {i}"]) for i in range(5)]
    POOL.close()
    killer = threading.Timer(0.5, _kill_workers)
    killer.start()
    outcomes = check_many(jobs, workers=1, progress=False)
    killer.join()
    assert [o.message for o in outcomes if not o.passed] == []


def test_a_job_whose_worker_dies_twice_is_the_sandboxs_failure_not_a_wrong_answer():
    """Every worker is killed while the job runs, so its second try dies too: the job is reported
    crashed (SandboxFailure), never failed, and the next job still gets its verdict."""
    POOL.close()
    done = threading.Event()

    def keep_killing():
        while not done.wait(0.3):
            _kill_workers()

    killer = threading.Thread(target=keep_killing)
    killer.start()
    try:
        first = check_many([SLOW_PASS], workers=1, progress=False)[0]
    finally:
        done.set()
        killer.join()
    assert (first.status, first.exc_type) == ("crashed", "SandboxFailure"), first.message
    assert check("def f():\n    return 2", ["assert f() == 2"]).passed


def test_the_next_candidate_gets_its_job_only_once_the_previous_one_is_gone():
    """The next job's candidate is forked while the current one runs, but must not run before it ends."""
    slow = ("import time\ndef f():\n    time.sleep(0.3)\n    print(time.monotonic())\n    return 1", ["assert f() == 1"])
    quick = ("import time\nprint(time.monotonic())\ndef f():\n    return 1", ["assert f() == 1"])
    outcomes = check_many([slow, quick, slow, quick], workers=1, progress=False)
    assert all(o.passed for o in outcomes), [o.message for o in outcomes]
    ends = [float(o.output) for o in outcomes]
    assert ends[0] < ends[1] < ends[2] < ends[3]


def test_jobs_longer_than_the_worker_pipe_neither_block_nor_get_lost():
    """Unanswered jobs never hold more bytes than the worker's stdin pipe; a longer one waits for an idle worker."""
    jobs = [(f"padding = '{'x' * (700 << 10)}'\ndef f():\n    return {i}", [f"assert f() == {i}"]) for i in range(3)]
    jobs += [(f"print('y' * 70000)\ndef f():\n    return {i}", [f"assert f() == {i}"]) for i in range(6)]
    outcomes = check_many(jobs, workers=1, progress=False)
    assert all(o.passed for o in outcomes), [o.message for o in outcomes]


def test_worker_takes_job_lines_whole_and_peeks_without_waiting():
    from shared_utils.sandbox.server import _Requests

    read, write = os.pipe()
    try:
        requests = _Requests(read)
        assert requests.ready() is None
        os.write(write, b'{"a": 1}\n{"b"')
        assert requests.ready() == b'{"a": 1}'
        assert requests.ready() is None  # half a line is not a job yet
        os.write(write, b': 2}\n')
        assert requests.wait() == b'{"b": 2}'
        os.close(write)
        write = None
        assert requests.wait() is None and requests.ready() is None
    finally:
        os.close(read)
        if write is not None:
            os.close(write)


def test_setup_and_capabilities():
    assert _run("class Box:\n    def __init__(self, v):\n        self.v = v", ["assert box.v == 7"],
                setup="box = Box(7)").passed
    assert set(CAPS) >= {"pid_namespace", "network_namespace", "mount_namespace", "filesystem_whitelist"}


def test_without_namespaces_it_refuses_unless_told_and_then_still_cleans_up(monkeypatch):
    """The container/macOS-like fallback: every unshare refused.  Strict mode refuses to run;
    ``isolation="none"`` runs with process isolation only, and still leaves nothing behind."""
    refuse = ("from shared_utils.sandbox import kernel\n"
              "def _refuse(*args):\n    raise PermissionError(1, 'refused')\n"
              "kernel.unshare = _refuse\n")
    marker = "from shared_utils.sandbox.server import main"
    monkeypatch.setattr(pool, "_BOOT", pool._BOOT.replace(marker, refuse + marker))
    POOL.close()
    try:
        caps = capabilities()
        assert not any(caps[k] for k in ("pid_namespace", "network_namespace", "mount_namespace", "ipc_namespace"))
        assert caps["missing"]
        with pytest.raises(SandboxUnavailable, match="pid namespace"):
            _run("def f():\n    return 1", ["assert f() == 1"])
        daemon = ("import os, time\ndef f():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
                  "            time.sleep(300)\n        os._exit(0)\n    time.sleep(0.1)\n    return 1")
        assert _run(daemon, ["assert f() == 1"], isolation="none").passed
        assert _run("def f():\n    while True:\n        pass", ["assert f() == 1"], timeout=0.5, isolation="none").status == "timeout"
        assert _run("import ctypes\ndef f():\n    return ctypes.string_at(0)", ["assert f() == 1"], isolation="none").status == "crashed"
        assert not _run("def f(x):\n    return x", ["assert f(3) == 9"], isolation="none").passed
        batch = check_many([(daemon, ["assert f() == 1"])] * 3 + [("def f():\n    return 1", ["assert f() == 1"])] * 3,
                           workers=1, timeout=1.0, isolation="none", progress=False)
        assert all(o.passed for o in batch), [o.message for o in batch]
        for worker in list(POOL.all):
            assert len(_descendants(worker.process.pid)) == WORKER_PROCESSES
    finally:
        POOL.close()


# --- real MBPP problems ----------------------------------------------------------------

def _mbpp(mbpp_dir: Path, count: int) -> list[dict]:
    """The first rows of MBPP's train split in the local data folder (``$SHARED_DATA_DIR`` when set)."""
    with (mbpp_dir / "train.jsonl").open() as handle:
        return [json.loads(line) for _, line in zip(range(count), handle)]


def _in_process_verdict(code: str, tests: list[str], setup: str) -> bool:
    """The paper's checker, minus the alarm: fine for MBPP's own (trusted) reference code."""
    namespace = {}
    try:
        exec(code + "\n" + setup, namespace)
        for test in tests:
            exec(test, namespace)
    except Exception:
        return False
    return True


def test_real_mbpp_references_pass_and_mutants_agree_with_in_process_exec(mbpp_dir):
    rows = _mbpp(mbpp_dir, 12)
    jobs = [(r["code"], r["test_list"], r["test_setup_code"]) for r in rows]
    mutants = [(r["code"].replace("return ", "return not ", 1), r["test_list"], r["test_setup_code"]) for r in rows]
    outcomes = check_many(jobs + mutants, workers=2, progress=False)
    assert all(o.passed for o in outcomes[: len(rows)]), outcomes
    assert [o.passed for o in outcomes[len(rows):]] == [_in_process_verdict(*m) for m in mutants]
    assert sum(not o.passed for o in outcomes[len(rows):]) >= len(rows) // 2
