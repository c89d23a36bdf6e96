"""Wall time of scoring one evaluation run (500 MBPP test problems x 10 samples = 5,000 candidates).

Is scoring bounded by the sandbox, not by the Python around it? Same candidates, same run:
  * sandbox only: ``check_many`` on the extracted jobs (warm pool);
  * ``evaluate_file``: reading the paper-format file, extraction, sandbox, MI and components
    per sample, pass@k and the summary (warm pool);
  * the command a user runs: ``python -m shared_utils evaluate --json`` in a fresh process
    (interpreter start, imports and worker start-up included).
Candidates are the reference solutions and mutants of them, fenced as a model would answer.
Figures go to ``benchmarks/results/evaluate.md``.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py`` from the repository root.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, RESULTS, machine, publish, timed  # the script's own folder is on sys.path
from bench_sandbox import _mutant

from shared_utils import data
from shared_utils.scoring import evaluate_file
from shared_utils.extraction import extract_code
from shared_utils.sandbox import check_many
from shared_utils.sandbox.api import usable_cores


MBPP = Path(os.environ.get("MBPP_DIR", REPO.parent / "shared" / "data" / "mbpp"))
OUT = RESULTS / "evaluate.md"
SAMPLES = 10
TIMEOUT = 5.0
SCORING = "corrected"  # paper extraction, the candidate as __main__ with the set-up code: what check_many runs by default


def completions(problems: list[dict], rng: random.Random) -> list[dict]:
    """Ten answers per problem: the reference, or a mutant of it, in a fenced block with some prose."""
    rows = []
    for problem in problems:
        answers = []
        for _ in range(SAMPLES):
            code = problem["code"] if rng.random() < 0.6 else (_mutant(problem["code"], rng) or problem["code"])
            answers.append(f"```python\n{code}\n```")
        rows.append({"task_id": problem["task_id"], "generated_sequences": answers})
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        test_set = data.prepare(MBPP, tmp)["test"]
        problems = data.load_problems(test_set)
        by_id = {problem["task_id"]: problem for problem in problems}
        rows = completions(problems, random.Random(0))
        file = tmp / "run.json"
        file.write_text(json.dumps(rows))
        jobs = [(extract_code(text, "paper"), by_id[row["task_id"]]["test_list"], by_id[row["task_id"]]["test_setup_code"])
                for row in rows for text in row["generated_sequences"]]
        check_many(jobs[:50], progress=False)  # start the pool once, for the two warm figures
        sandbox_s, outcomes = timed(lambda: check_many(jobs, progress=False))
        # One scoring, the one whose jobs are those above (paper extraction, corrected execution).
        evaluate_s, summaries = timed(lambda: evaluate_file(file, test_set, scoring=SCORING, progress=False))
        summary = summaries[SCORING]
        command = [sys.executable, "-m", "shared_utils", "evaluate", "--completions", str(file), "--problems",
                   str(test_set), "--scoring", SCORING, "--json"]
        cli_s, done = timed(lambda: subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True))
        cli_summary = json.loads(done.stdout.strip().splitlines()[-1])[SCORING]

    timeouts = sum(outcome.status == "timeout" for outcome in outcomes)
    workers = usable_cores()
    assert summary["passed_candidates"] == sum(outcome.passed for outcome in outcomes) == cli_summary["passed_candidates"]
    lines = [
        "# Scoring one evaluation run: `evaluate` on 5,000 candidates",
        "",
        f"Machine: {machine()}.",
        f"{summary['candidates']:,} candidates on {summary['tasks']} MBPP test problems, "
        f"{summary['passed_candidates']:,} pass; pass@10 {summary['pass_at_k'][10]:.3f}, average MI "
        f"{summary['avg_mi']:.2f}.",
        "",
        "| what | seconds | candidates/s |",
        "|---|---:|---:|",
        f"| sandbox only (`check_many`, warm pool) | {sandbox_s:.1f} | {len(jobs) / sandbox_s:,.0f} |",
        f"| `evaluate_file` (extraction, sandbox, MI, summary; warm pool) | {evaluate_s:.1f} | "
        f"{len(jobs) / evaluate_s:,.0f} |",
        f"| `python -m shared_utils evaluate --scoring {SCORING} --json` (fresh process) | {cli_s:.1f} | {len(jobs) / cli_s:,.0f} |",
        "",
        f"Everything around the sandbox costs {evaluate_s - sandbox_s:.1f} s of the warm run "
        f"({(evaluate_s - sandbox_s) / evaluate_s:.0%}). {timeouts} mutants loop until the paper's 5 s "
        f"per-assert limit; with {workers} workers they alone account for about {timeouts * TIMEOUT / workers:.0f} s "
        "of the sandbox time: scoring is bounded by the protocol's timeouts, then by the sandbox.",
        "",
    ]
    publish(OUT, lines)


if __name__ == "__main__":
    main()
