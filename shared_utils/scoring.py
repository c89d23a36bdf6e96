"""Scoring completions: pass@k and average MI of passing code, as the paper reports them.

The published protocol: extract with the ``paper`` mode, run every sample with ``exec(code, {})``
(no MBPP set-up code) against the problem's asserts (5 s per assert), pass@10 = share of
problems with at least one passing sample out of 10, average MI = mean over solved problems of
the mean MI of their passing samples. The same completions are scored three ways side by side
(``SCORINGS``): ``paper`` exactly so, ``corrected`` with the same extraction but the corrected
execution (a real ``__main__``, set-up code run), ``fenced`` with the first fenced block as well.
Beyond the paper: the unbiased pass@k estimator for any k <= n (``statistics``, which also compares variants).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable

from shared_utils import files
from shared_utils.extraction import extract_code
from shared_utils.maintainability import score

DEFAULT_KS = (1, 5, 10)


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How a completion becomes a verdict: an ``extraction`` mode and a ``protocol``'s execution."""

    extract: str
    protocol: str


SCORINGS = {
    "paper": Scoring(extract="paper", protocol="paper"),  # the published numbers
    "corrected": Scoring(extract="paper", protocol="corrected"),
    "fenced": Scoring(extract="fenced", protocol="corrected"),
}


def scorings(names: "str | Iterable[str] | None" = None) -> list[str]:
    """Scoring names from a comma-separated string or a list; all of them by default."""
    if names is None:
        return list(SCORINGS)
    chosen = [name.strip() for name in (names.split(",") if isinstance(names, str) else names) if name.strip()]
    unknown = [name for name in chosen if name not in SCORINGS]
    if unknown or not chosen:
        raise ValueError(f"unknown scoring(s) {unknown or names!r}; expected some of {', '.join(SCORINGS)}")
    return chosen


def score_completions(completions: dict, problems: Iterable[dict], *, extract: str = "paper", protocol=None,
                      timeout: float = 5.0, workers: int | None = None, progress: bool = True):
    """One row per sample: extracted code, sandbox verdict, per-assert results, MI and components.

    ``protocol`` (a name or ``protocol.Protocol``) sets how the candidate runs: its globals
    and whether MBPP's set-up code runs before the asserts.
    """
    import pandas as pd

    from shared_utils.protocol import check_candidates
    from shared_utils.sandbox import isolation_mode

    by_id = {problem["task_id"]: problem for problem in problems}
    unknown = [task_id for task_id in completions if task_id not in by_id]
    if unknown:
        raise ValueError(f"completions for task_id(s) not in the problem set: {unknown[:10]}")
    samples = [(task_id, index, extract_code(text, extract))
               for task_id, texts in completions.items() for index, text in enumerate(texts)]
    outcomes = check_candidates(by_id, [(task_id, code) for task_id, _, code in samples], protocol, timeout=timeout,
                                workers=workers, progress=progress)
    isolation = isolation_mode()
    rows = []
    for (task_id, index, code), outcome in zip(samples, outcomes):
        rows.append({
            "task_id": task_id, "sample": index, "code": code, "status": outcome.status,
            "passed": outcome.passed, "assert_results": [result.status for result in outcome.results],
            "error": outcome.error or "", "sandbox": isolation, **score(code).as_dict(),
        })
    return pd.DataFrame(rows)


def per_task(frame) -> "pd.DataFrame":
    """Per problem: samples n, passing c, and the mean MI of its passing samples (NaN if none)."""
    grouped = frame.groupby("task_id", sort=False)
    table = grouped.agg(n=("passed", "size"), c=("passed", "sum"))
    table["mi_passing"] = frame[frame["passed"]].groupby("task_id")["mi"].mean()
    return table


def observations(frame) -> "pd.DataFrame":
    """A variant's per-sample frame of several (seed, run) as ``statistics`` observations: one row per (seed, run, task)."""
    import pandas as pd

    from shared_utils import statistics

    return pd.concat([statistics.observations(per_task(part), seed=seed, run=run)
                      for (seed, run), part in frame.groupby(["seed", "run"], sort=True)], ignore_index=True)


def summarize(frame, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """The metrics the CLI prints and the notebooks tabulate, for one run, each with its 95% interval."""
    import numpy as np  # here, not at the top: the CLI imports this module for every verb

    from shared_utils import statistics

    table = per_task(frame)
    n_min = int(table["n"].min()) if len(table) else 0
    pass_k = {int(k): float(np.mean([statistics.pass_at_k(int(n), int(c), int(k))
                                     for n, c in zip(table["n"], table["c"])]))
              for k in ks if k <= n_min}
    solved = table["c"] > 0
    intervals = (statistics.interval(statistics.observations(table), statistics.metric_names(pass_k))
                 if len(table) else {})
    return {
        "tasks": int(len(table)),
        "candidates": int(len(frame)),
        "passed_candidates": int(frame["passed"].sum()),
        "solved_tasks": int(solved.sum()),
        "pass_at_k": pass_k,
        "avg_mi": float(table.loc[solved, "mi_passing"].mean()) if solved.any() else math.nan,
        "intervals": {metric: [found["low"], found["high"]] for metric, found in intervals.items()},  # 95%, tasks resampled
        "sandbox": sandbox_label(frame),
    }


def sandbox_label(frame) -> str:
    """How the verdicts were obtained: ``strict``, or a loud UNSAFE where any ran without the walls."""
    modes = set(frame["sandbox"]) if "sandbox" in frame else {"strict"}
    return "strict" if modes <= {"strict"} else "UNSAFE: isolation=none (candidates ran without every wall)"


def score_files(stem: str | Path, scoring: str) -> dict[str, Path]:
    """``<stem>.<scoring>.samples.parquet`` (one row per sample) and ``<stem>.<scoring>.summary.json``."""
    stem = Path(stem)
    return {part: stem.with_name(f"{stem.name}.{scoring}.{part}.{suffix}")
            for part, suffix in (("samples", "parquet"), ("summary", "json"))}


def save_scores(frame, summary: dict, stem: str | Path, scoring: str) -> dict[str, Path]:
    """The per-sample table and the summary of one scoring, each written atomically."""
    written = score_files(stem, scoring)
    with files.atomic_path(written["samples"]) as tmp:
        frame.to_parquet(tmp, index=False)
    files.write_json(written["summary"], summary)
    return written


def score_all(completions: dict, problems: list[dict], names: Iterable[str], *, ks: Iterable[int] = DEFAULT_KS,
              timeout: float = 5.0, progress: bool = True, **metadata) -> dict[str, tuple]:
    """``{scoring: (per-sample frame, summary)}`` for the same completions under each named scoring."""
    scored = {}
    for name in names:
        how = SCORINGS[name]
        frame = score_completions(completions, problems, extract=how.extract, protocol=how.protocol,
                                  timeout=timeout, progress=progress)
        scored[name] = frame, {**metadata, "scoring": name, **dataclasses.asdict(how), "timeout": timeout,
                               **summarize(frame, ks)}
    return scored


def evaluate_file(completions_path: str | Path, problems_path: str | Path, *, scoring: "str | Iterable[str] | None" = None,
                  ks: Iterable[int] = DEFAULT_KS, timeout: float = 5.0, out: str | Path | None = None,
                  baseline: str | Path | None = None, progress: bool = True) -> dict:
    """Score a completions file in the paper's format against a problem set (the ``evaluate`` verb).

    Returns ``{scoring: summary}``, every scoring of ``SCORINGS`` unless ``scoring`` names some.
    With ``baseline`` (a second completions file of the same problems), each summary also holds
    ``versus_baseline``: per metric the paired difference (these - baseline), its 95% interval, the
    Holm-adjusted p (the family: this scoring's metrics) and the verdict.
    """
    from shared_utils.data import TEST_FIELDS, load_problems
    from shared_utils.generation import read_paper_format

    problems = load_problems(problems_path, TEST_FIELDS)
    chosen = scorings(scoring)
    scored = score_all(read_paper_format(completions_path), problems, chosen, ks=ks, timeout=timeout,
                       progress=progress, source=str(completions_path))
    if out is not None:
        for name, (frame, summary) in scored.items():
            save_scores(frame, summary, Path(out) / Path(completions_path).stem, name)
    summaries = {name: summary for name, (_, summary) in scored.items()}
    if baseline is not None:
        before = score_all(read_paper_format(baseline), problems, chosen, ks=ks, timeout=timeout, progress=progress)
        for name, summary in summaries.items():
            summary["versus_baseline"] = versus(before[name][0], scored[name][0], summary["pass_at_k"])
    return summaries


def versus(before, after, ks: Iterable[int]) -> dict:
    """``{metric: {diff, low, high, p_holm, verdict}}`` of ``after`` against ``before`` (per-sample frames of one run)."""
    from shared_utils import statistics

    observed = {"baseline": statistics.observations(per_task(before)), "these": statistics.observations(per_task(after))}
    table = statistics.comparisons(observed, [("baseline", "these")], statistics.metric_names(ks))
    return {row["metric"]: {key: row[key] for key in ("diff", "low", "high", "p_holm", "verdict", "tasks", "note")}
            for row in table.to_dict("records")}
