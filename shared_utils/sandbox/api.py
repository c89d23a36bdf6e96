"""``check``/``check_many``: run untrusted candidates against asserts, decide verdicts here.

The candidate's process only ever reports plain-data values (see ``asserts``/``plain``);
every verdict - passed, failed, error, timeout, crashed - is decided in this process
from what the worker relayed, and anything outside the protocol counts against the
candidate.  So ``sys.exit(0)``, a printed "passed" or a killed worker can only make a
candidate fail, and a forged result line can only claim values the candidate's own code
could have returned - never the expected ones, which stay here.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

from . import plain
from .asserts import Test, compile_test, relevant_bound
from .pool import POOL, SandboxUnavailable, Worker, WorkerDied, require, summary
from .server import SETUP_FAILED

DEFAULT_MEMORY = 2 << 30
TIMEOUT_MODES = ("per_test", "total")
MESSAGE_CHARS = 300
PIPELINE_DEPTH = 2


@dataclass(frozen=True)
class TestResult:
    """One assert: passed / failed / error / timeout / crashed / not_run."""

    test: str
    status: str
    exc_type: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A candidate's verdict; ``status`` and the exception describe the first problem."""

    status: str
    results: tuple[TestResult, ...]
    exc_type: str | None
    message: str | None
    elapsed: float
    output: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def error(self) -> str | None:
        """``"Type: message"`` of the first problem, None when passed."""
        return None if self.passed else f"{self.exc_type}: {self.message}"


def _unfinished(reply: dict) -> TestResult:
    """Why the candidate stopped reporting: our deadline, its size, or its death."""
    if reply.get("failure"):
        return TestResult("", "crashed", "SandboxFailure", reply["failure"])
    if reply["timed_out"]:
        return TestResult("", "timeout", "Timeout", "time limit exceeded")
    if reply.get("memory_exceeded"):
        return TestResult("", "crashed", "MemoryLimit", "its processes together exceeded the memory limit")
    if reply["oversize"]:
        return TestResult("", "crashed", "ResultTooLarge", "the values it produced are too large to check")
    code = reply["exit"]
    if code == SETUP_FAILED:
        return TestResult("", "crashed", "SandboxSetupFailed", "the isolation could not be set up in the child")
    if code is not None and code < 0:
        return TestResult("", "crashed", signal.Signals(-code).name, f"killed by {signal.Signals(-code).name}")
    how = "ended" if code is None else f"exited with status {code}"
    return TestResult("", "crashed", "Exited", f"{how} before reporting every result")


def _judge(test: Test, line: str) -> TestResult:
    """Decide one test from the candidate's line: parse as plain data, compare here."""
    try:
        message = json.loads(line)
        if "error" in message:
            exc_type, text = message["error"]
            return TestResult(test.source, "error", str(exc_type)[:100], str(text)[:MESSAGE_CHARS])
        values = [plain.decode(v) for v in message["values"]]
        if len(values) != len(test.holes):
            raise ValueError("wrong number of values")
    except (ValueError, TypeError, KeyError):
        return TestResult(test.source, "crashed", "ProtocolViolation", "unreadable result line")
    try:
        if test.verdict(values):
            return TestResult(test.source, "passed")
    except Exception as exc:
        return TestResult(test.source, "error", type(exc).__name__, str(exc)[:MESSAGE_CHARS])
    return TestResult(test.source, "failed", "AssertionError", f"got {', '.join(map(repr, values))}"[:MESSAGE_CHARS])


def _phase_zero(line: str | None, reply: dict) -> TestResult:
    """The setup + candidate definitions: ready, raised, or never reported."""
    if line is None:
        return _unfinished(reply)
    try:
        message = json.loads(line)
        if message == {"ready": 1}:
            return TestResult("<setup+candidate>", "passed")
        exc_type, text = message["error"]
        return TestResult("<setup+candidate>", "error", str(exc_type)[:100], str(text)[:MESSAGE_CHARS])
    except (ValueError, TypeError, KeyError):
        return TestResult("<setup+candidate>", "crashed", "ProtocolViolation", "unreadable result line")


def _outcome(tests: list[Test], reply: dict) -> Outcome:
    lines = reply.get("lines", [])
    start = _phase_zero(lines[0] if lines else None, reply)
    results = []
    for index, test in enumerate(tests):
        if start.status != "passed" or any(r.status in ("timeout", "crashed") for r in results[-1:]):
            results.append(TestResult(test.source, "not_run"))
        elif index + 1 < len(lines):
            results.append(_judge(test, lines[index + 1]))
        else:
            stop = _unfinished(reply)
            results.append(TestResult(test.source, stop.status, stop.exc_type, stop.message))
    first = next((r for r in (start, *results) if r.status not in ("passed", "not_run")), None)
    return Outcome(
        status=first.status if first else "passed", results=tuple(results),
        exc_type=first and first.exc_type, message=first and first.message,
        elapsed=reply.get("elapsed", 0.0), output=reply.get("output", ""),
    )


def _prepare(job: Sequence, timeout: float, timeout_mode: str, memory_limit: int) -> tuple[list[Test], dict]:
    code, tests, setup = (*job, "") if len(job) == 2 else job
    if isinstance(tests, str):
        raise TypeError("tests must be a sequence of assert strings, not one string")
    tests = tuple(tests)
    bound = relevant_bound(tests, setup, code)
    compiled = [compile_test(t, bound) for t in tests]
    wire = {"code": code, "setup": setup, "tests": [t.wire() for t in compiled],
            "timeout": timeout, "mode": timeout_mode, "memory": memory_limit}
    return compiled, wire


class _Lane:
    """One worker fed two jobs deep, so the next job is waiting when one finishes.

    Replies come in order, so when the worker dies the oldest unanswered job is the one
    that killed it: that one is reported crashed and the others go to a fresh worker.
    """

    def __init__(self, outcomes: list, progress):
        self.outcomes, self.progress = outcomes, progress
        self.worker: Worker = POOL.acquire()
        self.pending: deque = deque()  # (index, compiled tests, wire job)

    def _settle(self, index: int, compiled: list, reply: dict) -> None:
        self.outcomes[index] = _outcome(compiled, reply)
        self.progress.update()

    def _recover(self, exc: WorkerDied) -> None:
        index, compiled, _ = self.pending.popleft()
        self._settle(index, compiled, {"failure": str(exc)})
        self.worker = POOL.replace(self.worker)
        for _, _, wire in self.pending:
            self.worker.send(wire)

    def submit(self, index: int, compiled: list, wire: dict) -> None:
        self.pending.append((index, compiled, wire))
        try:
            self.worker.send(wire)
        except WorkerDied as exc:
            self._recover(exc)
        while len(self.pending) >= PIPELINE_DEPTH:
            self.finish_one()

    def finish_one(self) -> None:
        try:
            reply = self.worker.receive()
        except WorkerDied as exc:
            self._recover(exc)
            return
        index, compiled, _ = self.pending.popleft()
        self._settle(index, compiled, reply)

    def close(self) -> None:
        while self.pending:
            self.finish_one()
        POOL.release(self.worker)


def _drive(jobs: list, outcomes: list, order, options: dict, progress) -> None:
    """One thread per worker: take the next job index, run it, store its outcome."""
    lane = _Lane(outcomes, progress)
    try:
        for index in order:
            lane.submit(index, *_prepare(jobs[index], **options))
    except BaseException:
        POOL.discard(lane.worker)  # unread replies would reach its next user
        raise
    lane.close()


def usable_cores() -> int:
    """Cores this process may run on (respects taskset and container CPU sets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_many(jobs: Iterable[Sequence], *, workers: int | None = None, timeout: float = 5.0,
               timeout_mode: str = "per_test", memory_limit: int = DEFAULT_MEMORY,
               progress: bool = True, isolation: str | None = None) -> list[Outcome]:
    """Check many ``(code, tests)`` or ``(code, tests, setup)`` jobs in parallel.

    Outcomes come back in input order.  ``workers`` defaults to every core; each worker
    runs one candidate at a time, so a hung candidate costs its worker ``timeout`` while
    the others carry on.  ``timeout_mode``: ``per_test`` gives the setup+definitions and
    each assert ``timeout`` seconds (the paper's SIGALRM per assert); ``total`` gives the
    whole candidate ``timeout`` seconds.  ``memory_limit`` bounds all of a candidate's
    processes together.  ``isolation="strict"`` refuses with ``SandboxUnavailable`` where a
    wall cannot be built; ``"none"`` runs with whatever this machine grants, and is unsafe
    for untrusted code.  The default is ``isolation_mode()``.
    """
    from tqdm.auto import tqdm

    if timeout_mode not in TIMEOUT_MODES:
        raise ValueError(f"timeout_mode must be one of {TIMEOUT_MODES}")
    require(POOL.capabilities(), isolation or isolation_mode())
    jobs = list(jobs)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    options = {"timeout": float(timeout), "timeout_mode": timeout_mode, "memory_limit": int(memory_limit)}
    order = iter(range(len(jobs)))  # shared: each next() hands out a distinct index
    errors = []

    def guarded(bar):
        try:
            _drive(jobs, outcomes, order, options, bar)
        except BaseException as exc:
            errors.append(exc)

    count = max(1, min(workers or usable_cores(), len(jobs)))
    with tqdm(total=len(jobs), disable=not progress, desc="sandbox", unit="cand") as bar:
        threads = [threading.Thread(target=guarded, args=(bar,), daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return outcomes


def check(code: str, tests: Sequence[str], *, setup: str = "", timeout: float = 5.0,
          timeout_mode: str = "per_test", memory_limit: int = DEFAULT_MEMORY, isolation: str | None = None) -> Outcome:
    """Run one candidate: setup, then the candidate code, then each assert, in the sandbox."""
    return check_many([(code, tests, setup)], workers=1, timeout=timeout, timeout_mode=timeout_mode,
                      memory_limit=memory_limit, progress=False, isolation=isolation)[0]


CALIBRATION_JOBS = 20
ISOLATION_VARIABLE = "SANDBOX_ISOLATION"


def isolation_mode() -> str:
    """The isolation every check uses unless told otherwise: ``strict``, or ``none`` where the
    ``SANDBOX_ISOLATION`` environment variable says so (for machines that cannot build the
    walls; every report that scores code then names the run unsafe)."""
    return os.environ.get(ISOLATION_VARIABLE, "strict")


def capabilities() -> dict:
    """The walls this machine grants a candidate, and what each costs per candidate.

    Raw flags from a worker, plus ``walls`` (name -> active), ``missing`` (the walls that
    make ``isolation="strict"`` refuse) and ``cost_us`` (mean CPU microseconds per candidate
    of each set-up step, measured on a few empty candidates).
    """
    caps = POOL.capabilities()
    walls = summary(caps)
    missing = [name for name, active in walls.items() if not active]
    if not missing and not POOL.candidates:
        POOL.calibrate(CALIBRATION_JOBS, DEFAULT_MEMORY)
    return {**caps, "walls": walls, "missing": missing, "cost_us": POOL.mean_costs_us()}

