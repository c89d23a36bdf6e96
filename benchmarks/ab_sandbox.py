"""This checkout's sandbox against another checkout's (an earlier commit), on the same candidates.

What a change to the sandbox costs is a ratio of two throughputs, and on a shared machine
the load moves between two runs more than a change moves them.  So the two sides run
alternately, A B B A A B B A ..., each in a fresh process with its own checkout on
``PYTHONPATH`` and its pool warmed before the clock starts, on the same candidates
(``bench_sandbox.build_candidates``); the report gives each side's median candidates/s and
CPU per candidate, their ratio, the load average around each run, and whether both sides
gave the same verdict on every candidate.

Run (from the repository root; the other side as a worktree, removed afterwards):
    git worktree add /tmp/base <commit>
    nice .venv/bin/python benchmarks/ab_sandbox.py --against /tmp/base --rounds 6
    git worktree remove /tmp/base
The section "A/B against an earlier commit" of ``benchmarks/results/sandbox.md`` is
replaced (the rest of that file is ``bench_sandbox.py``'s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO  # the script's own folder is on sys.path
from bench_sandbox import RESULTS, TIMEOUT, build_candidates

SECTION = "## A/B against an earlier commit"
# One side's run: warm the pool, time every candidate, close the pool so its CPU is counted.
MEASURE = """
import json, resource, sys, time
from shared_utils.sandbox import check_many
from shared_utils.sandbox.pool import POOL
def cpu():
    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
candidates = [tuple(c) for c in json.load(open(sys.argv[1]))]
check_many(candidates[:20], progress=False)
before, started = cpu(), time.perf_counter()
outcomes = check_many(candidates, timeout=float(sys.argv[2]), progress=False)
wall = time.perf_counter() - started
POOL.close()
print(json.dumps({"wall": wall, "cpu": cpu() - before, "passed": [o.passed for o in outcomes],
                  "timeouts": sum(o.status == "timeout" for o in outcomes)}))
"""


def run_side(checkout: Path, candidates_file: str) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, "-c", MEASURE, candidates_file, str(TIMEOUT)], cwd=checkout,
                          env=environment, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load"] = (before, os.getloadavg()[0])
    return result


def commit_of(checkout: Path) -> str:
    return subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True).stdout.strip()[:90]


def render(sides: dict[str, list[dict]], names: dict[str, str], count: int) -> list[str]:
    def median(side: str, key) -> float:
        return statistics.median(key(run) for run in sides[side])

    rate = {side: median(side, lambda r: count / r["wall"]) for side in sides}
    cpu = {side: median(side, lambda r: r["cpu"] / count * 1e3) for side in sides}
    same = all(run["passed"] == sides["A"][0]["passed"] for runs in sides.values() for run in runs)
    loads = [load for runs in sides.values() for run in runs for load in run["load"]]
    lines = [SECTION, "",
             f"{len(sides['A'])} runs per side on {count} MBPP candidates of scenario 1, alternating A B B A "
             f"(each a fresh process under `nice`, pool warmed first), on a machine shared with other work: "
             f"1-minute load average {min(loads):.1f} to {max(loads):.1f} (median {statistics.median(loads):.1f}) "
             "around the runs.  Medians:", "",
             "| side | commit | candidates/s (wall) | CPU ms / candidate |", "|---|---|---:|---:|"]
    lines += [f"| {side} | {names[side]} | {rate[side]:,.0f} | {cpu[side]:.2f} |" for side in sides]
    lines += ["",
              f"A / B: **{rate['A'] / rate['B']:.2f}x** the throughput (wall), **{cpu['B'] / cpu['A']:.2f}x** "
              f"the CPU efficiency; same verdict on every candidate in every run: **{'yes' if same else 'NO'}**.",
              "A side's CPU per run moves in steps between runs (each run below), so the wall medians are "
              "the figure to compare.  Each run (candidates/s, CPU ms / candidate, load before-after): "
              + "; ".join(f"{side}{i + 1} {count / run['wall']:,.0f}, {run['cpu'] / count * 1e3:.2f}, "
                          f"{run['load'][0]:.1f}-{run['load'][1]:.1f}"
                          for side, runs in sides.items() for i, run in enumerate(runs)) + ".", ""]
    return lines


def publish_section(lines: list[str]) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    head, _, rest = text.partition(SECTION)
    tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
    RESULTS.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines) + tail.lstrip("\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout (side B)")
    parser.add_argument("--rounds", type=int, default=6, help="runs per side")
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    candidates = build_candidates(args.count)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(candidates, handle)
    checkouts = {"A": REPO, "B": args.against.resolve()}
    sides: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        for round_ in range(args.rounds):
            order = "AB" if round_ % 2 == 0 else "BA"
            for side in order:
                sides[side].append(run_side(checkouts[side], handle.name))
                print(side, f"{len(candidates) / sides[side][-1]['wall']:.0f}/s", flush=True)
    finally:
        os.unlink(handle.name)
    lines = render(sides, {side: commit_of(path) for side, path in checkouts.items()}, len(candidates))
    print("\n".join(lines))
    publish_section(lines)


if __name__ == "__main__":
    main()
