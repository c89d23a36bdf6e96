"""``check``/``check_many``: run untrusted candidates against asserts, decide verdicts here.

The candidate's process only ever reports plain-data values (see ``asserts``/``plain``);
every verdict - passed, failed, error, timeout, crashed - is decided in this process
from what the worker relayed, and anything outside the protocol counts against the
candidate.  So ``sys.exit(0)``, a printed "passed" or a killed worker can only make a
candidate fail, and a forged result line can only claim values the candidate's own code
could have returned - never the expected ones, which are literals kept here or values
from a *reference run*: the same sandbox with no candidate code, run once per distinct
set-up and tests in a ``check_many`` call, before the candidates that need it.

Judging never raises: whatever a line holds (malformed, deeply nested, huge, slow to
hash, unprintable) makes that candidate ``crashed`` or ``failed``, never the batch.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from . import plain
from .asserts import Block, Plan, Site, compile_job, evaluate
from .child import MESSAGE_CHARS
from .pool import POOL, SandboxUnavailable, Worker, WorkerDied, encode, not_covered, require, summary  # noqa: F401 (re-exported)
from .zygote import SETUP_FAILED

DEFAULT_MEMORY = 2 << 30
TIMEOUT_MODES = ("per_test", "total")
NAMESPACES = ("main", "exec")
# Jobs in flight per worker: one running, the next one's candidate forking meanwhile, one
# more on its way.  Unanswered jobs never hold more bytes than the worker's stdin pipe, so
# sending never waits for the worker (else the two could block each other: we writing a
# job, it writing a reply); a longer job is sent only to an idle worker.
PIPELINE_DEPTH = 3
MAX_REPORTS = 100_000  # asserts run per test; a loop of HumanEval's runs 100


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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_MEMORY_EXCEEDED = TestResult("", "crashed", "MemoryLimit", "its processes together exceeded the memory limit")


def _unfinished(reply: dict) -> TestResult:
    """Why the candidate stopped reporting: our deadline, its size, or its death."""
    if reply.get("failure"):
        return TestResult("", "crashed", "SandboxFailure", str(reply["failure"])[:MESSAGE_CHARS])
    if reply.get("timed_out"):
        return TestResult("", "timeout", "Timeout", "time limit exceeded")
    if reply.get("memory_exceeded"):
        return _MEMORY_EXCEEDED
    if reply.get("oversize"):
        return TestResult("", "crashed", "ResultTooLarge", "the values it produced are too large to check")
    code = reply.get("exit")
    if code == SETUP_FAILED:
        return TestResult("", "crashed", "SandboxSetupFailed", "the isolation could not be set up in the child")
    if isinstance(code, int) and code < 0:
        return TestResult("", "crashed", _signal_name(-code), f"killed by {_signal_name(-code)}")
    how = "ended" if code is None else f"exited with status {code}"
    return TestResult("", "crashed", "Exited", f"{how} before reporting every result")


def _error_fields(value) -> tuple[str, str]:
    """An ``[exception type, message]`` pair as the candidate's process sent it, bounded."""
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise plain.Unreadable("malformed error report")
    return plain.printable(value[0][:100]), plain.printable(value[1][:MESSAGE_CHARS])


class _Raised(Exception):
    """A hole (or an expected operand) whose evaluation raised in its process."""

    def __init__(self, exc_type: str, message: str):
        super().__init__(exc_type, message)
        self.exc_type, self.text = exc_type, message


class _Missing(Exception):
    """A replaying site's template needed a value its hole never reported."""


class _Values:
    """A site's operand values by index; one that raised in its process raises when used.

    A replaying site's are queues, one per hole: each use takes the next value it reported.
    """

    def __init__(self, results, unavailable: str | None = None):
        self.results, self.unavailable, self.seen = results, unavailable, []

    def __getitem__(self, index: int):
        if self.results is None:
            raise _Raised("ExpectedValueError", f"the expected value could not be computed: {self.unavailable}")
        if isinstance(self.results, dict):
            if not self.results.get(index):
                raise _Missing
            result = self.results[index].popleft()
        else:
            result = self.results[index]
        if isinstance(result, _Raised):
            raise result
        self.seen.append(result)
        return result


def _hole_results(results, count: int) -> list:
    """The candidate's ``{"v": value}`` / ``{"e": [type, msg]}`` list for one site, decoded."""
    if not isinstance(results, list) or len(results) != count:
        raise plain.Unreadable("wrong number of values")
    return [_hole_result(result) for result in results]


def _replayed_results(pairs, count: int) -> dict:
    """A replaying site's ``[[hole, value], ...]``, decoded into one queue per hole."""
    if not isinstance(pairs, list):
        raise plain.Unreadable("malformed values")
    queues = {}
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int and 0 <= pair[0] < count):
            raise plain.Unreadable("malformed value")
        queues.setdefault(pair[0], deque()).append(_hole_result(pair[1]))
    return queues


def _hole_result(result):
    if not isinstance(result, dict) or len(result) != 1:
        raise plain.Unreadable("malformed value")
    if "e" in result:
        return _Raised(*_error_fields(result["e"]))
    if "v" not in result:
        raise plain.Unreadable("malformed value")
    return plain.decode(result["v"])


def _safe_str(exc: BaseException) -> str:
    try:
        return plain.printable(str(exc)[:MESSAGE_CHARS])
    except Exception:
        return "<unprintable>"


def _decide(source: str, site: Site, holes: list, expected: _Values) -> TestResult | None:
    """One report of one assert: None when it holds, else why not."""
    values = _Values(holes)
    try:
        if evaluate(site, values, expected):
            return None
    except _Raised as exc:
        return TestResult(source, "error", exc.exc_type, exc.text[:MESSAGE_CHARS])
    except _Missing:
        raise plain.Unreadable("an assert was not reported") from None
    except Exception as exc:  # the comparison itself raised, as it would have in the paper's exec
        return TestResult(source, "error", type(exc).__name__, _safe_str(exc))
    got = ", ".join(plain.short_repr(value, MESSAGE_CHARS) for value in values.seen)
    return TestResult(source, "failed", "AssertionError", f"got {got}"[:MESSAGE_CHARS])


@dataclass(frozen=True)
class _Expected:
    """A test's expected operand values from the reference run, per site."""

    values: dict  # site -> decoded results (a _Raised where it raised)
    unavailable: str | None = None  # why the sites without values have none

    def at(self, site: int) -> _Values:
        if site in self.values:
            return _Values(self.values[site])
        return _Values(None, self.unavailable or "the reference run did not report it")


NO_EXPECTED = _Expected({}, "no reference run")


def _judge(block: Block, line: str, expected: _Expected) -> TestResult:
    """Decide one test from the candidate's line: parse as plain data, compare here."""
    try:
        return _judge_reports(block, plain.loads(line), expected)
    except plain.Unreadable as exc:
        return TestResult(block.source, "crashed", "ProtocolViolation", str(exc)[:MESSAGE_CHARS])
    except Exception as exc:  # fail closed on anything we did not foresee
        return TestResult(block.source, "crashed", "ProtocolViolation", f"unjudgeable result ({type(exc).__name__})")


def _judge_reports(block: Block, message, expected: _Expected) -> TestResult:
    if not isinstance(message, dict) or not isinstance(message.get("c"), list) or not set(message) <= {"c", "e"}:
        raise plain.Unreadable("unreadable result line")
    if len(message["c"]) > MAX_REPORTS:
        raise plain.Unreadable(f"more than {MAX_REPORTS:,} asserts reported")
    tops, reached, seen, pinned = block.top_sites, 0, Counter(), dict(block.pinned)
    for report in message["c"]:
        if not (isinstance(report, list) and len(report) == 2 and type(report[0]) is int
                and 0 <= report[0] < len(block.sites)):
            raise plain.Unreadable("malformed report")
        site = block.sites[report[0]]
        seen[report[0]] += 1
        if site.top:
            if reached >= len(tops) or tops[reached] != report[0]:
                raise plain.Unreadable("asserts reported out of order")
            reached += 1
        holes = (_replayed_results if site.replay else _hole_results)(report[1], site.holes)
        if report[0] in pinned:  # a loop this side follows: its variables are known here, not taken
            turns = pinned[report[0]]
            if seen[report[0]] > len(turns):
                raise plain.Unreadable("an assert reported more often than its loop turns")
            holes = [turns[seen[report[0]] - 1].get(index, hole) for index, hole in enumerate(holes)]
        verdict = _decide(block.source, site, holes, expected.at(report[0]))
        if verdict is not None:
            return verdict
    if "e" in message:
        return TestResult(block.source, "error", *_error_fields(message["e"]))
    if reached != len(tops) or Counter(block.required) - seen:
        raise plain.Unreadable("an assert was not reported")
    return TestResult(block.source, "passed")


def _phase_zero(line: str | None, reply: dict) -> TestResult:
    """The setup + candidate definitions: ready, raised, or never reported."""
    if line is None:
        return _unfinished(reply)
    try:
        message = plain.loads(line)
        if message == {"ready": 1}:
            return TestResult("<setup+candidate>", "passed")
        if not isinstance(message, dict) or set(message) != {"error"}:
            raise plain.Unreadable("unreadable result line")
        return TestResult("<setup+candidate>", "error", *_error_fields(message["error"]))
    except plain.Unreadable as exc:
        return TestResult("<setup+candidate>", "crashed", "ProtocolViolation", str(exc)[:MESSAGE_CHARS])


def _outcome(plan: Plan, reply: dict, expected: list[_Expected] | None) -> Outcome:
    """The verdict from a worker's reply; never raises (a judging failure is a crash)."""
    try:
        return _outcome_of(plan, reply, expected)
    except Exception as exc:
        problem = TestResult("", "crashed", "JudgeError", f"{type(exc).__name__} while judging")
        return Outcome("crashed", tuple(TestResult(b.source, "not_run") for b in plan.blocks),
                       problem.exc_type, problem.message, 0.0, "")


def _outcome_of(plan: Plan, reply: dict, expected: list[_Expected] | None) -> Outcome:
    lines = reply.get("lines") or []
    start = _phase_zero(lines[0] if lines else None, reply)
    results = []
    for index, block in enumerate(plan.blocks):
        if start.status != "passed" or any(r.status in ("timeout", "crashed") for r in results[-1:]):
            results.append(TestResult(block.source, "not_run"))
        elif index + 1 < len(lines):
            results.append(_judge(block, lines[index + 1], expected[index] if expected else NO_EXPECTED))
        else:
            stop = _unfinished(reply)
            results.append(TestResult(block.source, stop.status, stop.exc_type, stop.message))
    first = next((r for r in (start, *results) if r.status not in ("passed", "not_run")), None)
    if reply.get("memory_exceeded"):  # the kernel killed one of its processes: over budget, whatever it reported
        first = _MEMORY_EXCEEDED
    elapsed, output = reply.get("elapsed", 0.0), reply.get("output", "")
    return Outcome(
        status=first.status if first else "passed", results=tuple(results),
        exc_type=first and first.exc_type, message=first and first.message,
        elapsed=elapsed if isinstance(elapsed, float) else 0.0, output=output if isinstance(output, str) else "",
    )


def _reference_values(plan: Plan, reply: dict) -> list[_Expected]:
    """Each test's expected values from the reference run's reply; never raises."""
    try:
        return _reference_values_of(plan, reply)
    except Exception as exc:
        return [_Expected({}, f"{type(exc).__name__} while reading it")] * len(plan.blocks)


def _reference_values_of(plan: Plan, reply: dict) -> list[_Expected]:
    lines = reply.get("lines") or []
    start = _phase_zero(lines[0] if lines else None, reply)
    tables, stopped = [], None if start.status == "passed" else f"{start.exc_type}: {start.message}"
    for index, block in enumerate(plan.blocks):
        if stopped is None and index + 1 >= len(lines):
            stop = _unfinished(reply)
            stopped = f"{stop.exc_type}: {stop.message}"
        if stopped is not None:
            tables.append(_Expected({}, f"the reference run failed: {stopped}"))
            continue
        try:
            message = plain.loads(lines[index + 1])
            values = {site: _hole_results(results, block.sites[site].expected) for site, results in message["c"]
                      if block.sites[site].top and block.sites[site].expected}
            raised = f"the test's statements raised {' '.join(_error_fields(message['e']))}" if "e" in message else None
            tables.append(_Expected(values, raised))
        except Exception as exc:
            tables.append(_Expected({}, f"unreadable reference result ({type(exc).__name__})"))
    return tables


def _prepare(job: Sequence, timeout: float, timeout_mode: str, memory_limit: int, namespace: str) -> tuple[Plan, dict]:
    code, tests, setup = (*job, "") if len(job) == 2 else job
    if isinstance(tests, str):
        raise TypeError("tests must be a sequence of test strings, not one string")
    plan = compile_job(tuple(tests), setup, code)
    wire = {"code": code, "setup": plan.setup, "tests": [list(block.steps) for block in plan.blocks],
            **_run_options(timeout, timeout_mode, memory_limit, namespace)}
    return plan, wire


def _run_options(timeout: float, timeout_mode: str, memory_limit: int, namespace: str) -> dict:
    """How the worker runs a job (a candidate's or a reference run), in its wire names."""
    return {"timeout": timeout, "mode": timeout_mode, "memory": memory_limit, "namespace": namespace}


class _Lane:
    """One worker fed ``PIPELINE_DEPTH`` jobs deep, so the next job and its candidate are
    ready when one finishes.

    Replies come in order, so when the worker dies the oldest unanswered job is the one
    it died under.  That job runs once more on a fresh worker with the others (a worker
    can die of something else: an out-of-memory kill, a signal from outside), and only if
    the worker dies under it again is it reported crashed (``SandboxFailure``), never
    failed.
    """

    def __init__(self, settle: Callable[[int, dict], None]):
        self.settle = settle
        self.worker: Worker = POOL.acquire()
        self.pending: deque = deque()  # (index, encoded job)
        self.pending_bytes = 0
        self.retried: set[int] = set()

    def _recover(self, exc: WorkerDied) -> None:
        index, line = self.pending[0]
        if index in self.retried:
            self.pending.popleft()
            self.pending_bytes -= len(line)
            self.settle(index, {"failure": str(exc)})
        self.retried.add(index)
        self.worker = POOL.replace(self.worker)
        for _, line in self.pending:
            self.worker.send(line)

    def submit(self, index: int, wire: dict) -> None:
        line = encode(wire)
        while self.pending and self.pending_bytes + len(line) > self.worker.capacity:
            self.finish_one()
        self.pending.append((index, line))
        self.pending_bytes += len(line)
        try:
            self.worker.send(line)
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
        index, line = self.pending.popleft()
        self.pending_bytes -= len(line)
        self.settle(index, reply)

    def close_pending(self) -> None:
        while self.pending:
            self.finish_one()

    def close(self) -> None:
        self.close_pending()
        POOL.release(self.worker)


def _drive(wires: list[dict], order, settle: Callable[[int, dict], None]) -> None:
    """One thread per worker: take the next job index, run it, settle its reply."""
    lane = _Lane(settle)
    try:
        for index in order:
            lane.submit(index, wires[index])
    except BaseException:
        POOL.discard(lane.worker)  # unread replies would reach its next user
        raise
    lane.close()


def _run_all(wires: list[dict], settle: Callable[[int, dict], None], workers: int) -> None:
    """Run every wire job on ``workers`` lanes; ``settle`` gets each reply as it comes."""
    if not wires:
        return
    order = iter(range(len(wires)))  # shared: each next() hands out a distinct index
    errors = []

    def guarded():
        try:
            _drive(wires, order, settle)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(max(1, min(workers, len(wires))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _references(plans: list[Plan], options: dict, workers: int) -> dict[str, list[_Expected]]:
    """Run each distinct reference job once; its expected values per test, by reference key."""
    unique = {}
    for plan in plans:
        if plan.reference is not None:
            unique.setdefault(plan.reference_key, plan)
    keys, owners = list(unique), list(unique.values())
    tables: dict[str, list[_Expected]] = {}

    def settle(index: int, reply: dict) -> None:
        tables[keys[index]] = _reference_values(owners[index], reply)

    wires = [{**plan.reference, **_run_options(**options)} for plan in owners]
    _run_all(wires, settle, workers)
    return tables


def usable_cores() -> int:
    """Cores this process may run on (respects taskset and container CPU sets)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_many(jobs: Iterable[Sequence], *, workers: int | None = None, timeout: float = 5.0,
               timeout_mode: str = "per_test", memory_limit: int = DEFAULT_MEMORY,
               progress: bool = True, isolation: str | None = None, namespace: str = "main") -> list[Outcome]:
    """Check many ``(code, tests)`` or ``(code, tests, setup)`` jobs in parallel.

    Outcomes come back in input order.  ``workers`` defaults to every core; each worker
    runs one candidate at a time, so a hung candidate costs its worker ``timeout`` while
    the others carry on.  ``timeout_mode``: ``per_test`` gives the setup+definitions and
    each assert ``timeout`` seconds (the paper's SIGALRM per assert); ``total`` gives the
    whole candidate ``timeout`` seconds.  ``memory_limit`` bounds all of a candidate's
    processes together.  ``isolation="strict"`` refuses with ``SandboxUnavailable`` where a
    wall cannot be built; ``"none"`` runs with whatever this machine grants, and is unsafe
    for untrusted code.  The default is ``isolation_mode()``.  ``namespace``: ``main`` runs the
    candidate as a real ``__main__`` module; ``exec`` in an empty dict, as the paper's
    ``exec(code, {})`` (``__name__`` is ``"builtins"``, ``if __name__ == "__main__":`` is skipped).
    """
    from tqdm.auto import tqdm

    if timeout_mode not in TIMEOUT_MODES:
        raise ValueError(f"timeout_mode must be one of {TIMEOUT_MODES}")
    if namespace not in NAMESPACES:
        raise ValueError(f"namespace must be one of {NAMESPACES}, not {namespace!r}")
    jobs = list(jobs)
    if jobs:
        require(POOL.capabilities(), isolation or isolation_mode())
    options = {"timeout": float(timeout), "timeout_mode": timeout_mode, "memory_limit": int(memory_limit),
               "namespace": namespace}
    plans, wires = zip(*(_prepare(job, **options) for job in jobs)) if jobs else ((), ())
    count = workers or usable_cores()
    expected = _references(list(plans), options, count)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), disable=not progress, desc="sandbox", unit="cand") as bar:
        def settle(index: int, reply: dict) -> None:
            plan = plans[index]
            outcomes[index] = _outcome(plan, reply, expected.get(plan.reference_key))
            bar.update()

        _run_all(list(wires), settle, count)
    return outcomes


def check(code: str, tests: Sequence[str], *, setup: str = "", timeout: float = 5.0,
          timeout_mode: str = "per_test", memory_limit: int = DEFAULT_MEMORY, isolation: str | None = None,
          namespace: str = "main") -> Outcome:
    """Run one candidate: the candidate code, then the setup, then each test, in the sandbox."""
    return check_many([(code, tests, setup)], workers=1, timeout=timeout, timeout_mode=timeout_mode,
                      memory_limit=memory_limit, progress=False, isolation=isolation, namespace=namespace)[0]


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
    make ``isolation="strict"`` refuse), ``not_covered`` (what the standing walls leave open
    on this machine, in words) and ``cost_us`` (mean CPU microseconds per candidate of each
    set-up step, measured on a few empty candidates).
    """
    caps = POOL.capabilities()
    walls = summary(caps)
    missing = [name for name, active in walls.items() if not active]
    if not missing and not POOL.candidates:
        POOL.calibrate(CALIBRATION_JOBS, DEFAULT_MEMORY)
    return {**caps, "walls": walls, "missing": missing, "not_covered": not_covered(caps),
            "cost_us": POOL.mean_costs_us()}

