"""Statistics a reviewer accepts: the unbiased pass@k, paired bootstrap comparisons, Holm's correction.

A variant is observed as one row per (training seed, run, task): ``n`` samples, ``c`` of them
passing, and ``mi`` the mean MI of the passing ones (NaN when none passed). Its metrics are those
the paper reports, computed per run and averaged over runs and seeds:

- ``pass@k``: the mean over tasks of Chen et al.'s (2021) unbiased estimator
  1 - C(n-c, k) / C(n, k) (pass@10 of 10 samples is the paper's "solved tasks" / tasks);
- ``avg_mi``: the authors' "overall average": the mean, over the tasks a run solves, of the mean
  MI of that task's passing samples. Each variant keeps its own solved tasks; nothing is
  restricted to the tasks both variants solve.

A comparison of variant A to B resamples what varies (a hierarchical bootstrap): the tasks, once
for both variants (the pairing), and within each variant its training seeds and, per seed, its
runs. The interval is the percentile interval of B - A; the p-value is the two-sided bootstrap
one. Every comparison of one table is one family: Holm's step-down correction sets the verdict
(better / worse / no evidence) at ``ALPHA`` for the family, while each interval stays a plain 95%
interval, so an interval that barely excludes zero may still read "no evidence".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
ALPHA = 0.05
N_BOOT = 10_000
KEYS = ("seed", "run", "task_id")
VERDICTS = ("better", "worse", "no evidence")
MI_NOTE = "each variant's mean over its own solved tasks (the authors' average MI); tasks resampled jointly"
MI_BOTH_NOTE = ("each variant's average MI over the tasks both variants solve (in any run or seed); those tasks "
                "resampled jointly")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021): 1 - C(n-c, k) / C(n, k), the chance that k of n samples hold a pass."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def metric_names(ks: Iterable[int]) -> list[str]:
    """``pass@k`` for each k, then ``avg_mi``: the order every table lists them in."""
    return [f"pass@{k}" for k in ks] + ["avg_mi"]


def observations(per_task: pd.DataFrame, *, seed: int = 0, run: int = 0) -> pd.DataFrame:
    """A ``scoring.per_task`` table (index task_id; n, c, mi_passing) as one replicate's observation rows."""
    frame = per_task.reset_index().rename(columns={"mi_passing": "mi"})
    return frame.assign(seed=seed, run=run)[[*KEYS, "n", "c", "mi"]]


@dataclasses.dataclass(frozen=True)
class Cube:
    """One variant's observations as arrays [seed, run, task] over a fixed task order."""

    n: np.ndarray
    c: np.ndarray
    mi: np.ndarray  # NaN where the task was not solved in that run

    @classmethod
    def of(cls, frame: pd.DataFrame, tasks: Sequence, name: str = "variant") -> "Cube":
        missing = [column for column in (*KEYS, "n", "c", "mi") if column not in frame]
        if missing:
            raise ValueError(f"{name}: observations lack column(s) {', '.join(missing)}")
        if frame.duplicated(list(KEYS)).any():
            raise ValueError(f"{name}: more than one row for a (seed, run, task_id)")
        seeds = sorted(frame["seed"].unique())
        runs = {seed: sorted(frame.loc[frame["seed"] == seed, "run"].unique()) for seed in seeds}
        counts = {len(found) for found in runs.values()}
        if len(counts) != 1:
            raise ValueError(f"{name}: every training seed needs the same number of runs, got {runs}")
        indexed = frame.set_index(list(KEYS))
        full = pd.MultiIndex.from_tuples([(seed, run, task) for seed in seeds for run in runs[seed] for task in tasks])
        aligned = indexed.reindex(full)
        if aligned["n"].isna().any():
            absent = aligned[aligned["n"].isna()].index[:5].tolist()
            raise ValueError(f"{name}: no observation for (seed, run, task_id) {absent}; every run needs every task")
        shape = (len(seeds), counts.pop(), len(tasks))
        return cls(n=aligned["n"].to_numpy(int).reshape(shape), c=aligned["c"].to_numpy(int).reshape(shape),
                   mi=aligned["mi"].to_numpy(float).reshape(shape))

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-(seed, run, task) numerator and weight of ``metric``: the per-run metric is their weighted mean."""
        if metric == "avg_mi":
            solved = self.c > 0
            return np.where(solved, self.mi, 0.0), solved.astype(float)
        k = int(metric.removeprefix("pass@"))
        estimates = np.vectorize(pass_at_k, otypes=[float])(self.n, self.c, k)
        return estimates, np.ones_like(estimates)

    def estimate(self, metric: str) -> float:
        """The metric as reported: per run over tasks, then the mean over runs and seeds."""
        numerator, weight = self.values(metric)
        per_run = _ratio(numerator.sum(axis=2), weight.sum(axis=2))
        return float(np.nanmean(per_run)) if np.isfinite(per_run).any() else float("nan")  # nan: nothing solved

    def draws(self, metric: str, task_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The metric under each bootstrap draw: tasks weighted as given, seeds and runs resampled here."""
        numerator, weight = self.values(metric)
        seeds, runs, _ = numerator.shape
        per_run = _ratio(np.einsum("srt,bt->bsr", numerator, task_weights),
                         np.einsum("srt,bt->bsr", weight, task_weights))
        boots = len(task_weights)
        seed_weights = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=boots)
        run_weights = rng.multinomial(runs, np.full(runs, 1 / runs), size=(boots, seeds))
        replicate = seed_weights[:, :, None] * run_weights * np.isfinite(per_run)
        return _ratio((np.nan_to_num(per_run) * replicate).sum(axis=(1, 2)), replicate.sum(axis=(1, 2)))


def _ratio(numerator: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """numerator / weight, nan where the weight is 0 (average MI of a run or a draw that solved nothing)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / weight


def _task_weights(count: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each task is drawn in each bootstrap resample (rows sum to ``count``)."""
    return rng.multinomial(count, np.full(count, 1 / count), size=n_boot).astype(float)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    return tuple(float(x) for x in np.quantile(draws, [tail, 1 - tail])) if draws.size else (math.nan, math.nan)


def common_tasks(*frames: pd.DataFrame) -> list:
    """The tasks every frame observes, in the first frame's order."""
    shared = set.intersection(*(set(frame["task_id"]) for frame in frames))
    return [task for task in dict.fromkeys(frames[0]["task_id"]) if task in shared]


def solved_by_both(a: pd.DataFrame, b: pd.DataFrame) -> list:
    """The tasks each of the two variants solves in at least one of its (seed, run) rows, in ``a``'s order: where
    average MI can be compared task for task."""
    solved = [set(frame.loc[frame["c"] > 0, "task_id"]) for frame in (a, b)]
    return [task for task in dict.fromkeys(a["task_id"]) if task in solved[0] & solved[1]]


def compare(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0,
            level: float = LEVEL, names: tuple[str, str] = ("a", "b")) -> list[dict]:
    """B - A for each metric: the point estimate, its percentile interval and the two-sided bootstrap p-value.

    Tasks are the ones both observe, resampled jointly; seeds and runs are resampled per variant.
    """
    tasks = common_tasks(a, b)
    if not tasks:
        raise ValueError(f"{names[0]} and {names[1]} share no task")
    cube_a, cube_b = Cube.of(a, tasks, names[0]), Cube.of(b, tasks, names[1])
    rng = np.random.default_rng(seed)
    task_weights = _task_weights(len(tasks), n_boot, rng)
    rows = []
    for metric in metrics:
        diffs = cube_b.draws(metric, task_weights, rng) - cube_a.draws(metric, task_weights, rng)
        diffs = diffs[np.isfinite(diffs)]
        low, high = _percentiles(diffs, level)
        below, above = (diffs <= 0).sum(), (diffs >= 0).sum()
        rows.append({
            "metric": metric, "a": cube_a.estimate(metric), "b": cube_b.estimate(metric),
            "diff": cube_b.estimate(metric) - cube_a.estimate(metric), "low": float(low), "high": float(high),
            "p": min(1.0, 2 * (min(below, above) + 1) / (diffs.size + 1)), "tasks": len(tasks),
            "runs": f"{cube_a.n.shape[1]}x{cube_a.n.shape[0]} vs {cube_b.n.shape[1]}x{cube_b.n.shape[0]}",
            "note": MI_NOTE if metric == "avg_mi" else "",
        })
    return rows


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: the family-wise error stays at alpha for any dependence."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def verdict(diff: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    """``better`` / ``worse`` where the family-adjusted p-value is below alpha, else ``no evidence``."""
    if not p_adjusted < alpha:
        return "no evidence"
    return "better" if diff > 0 else "worse"


def comparisons(variants: dict[str, pd.DataFrame], pairs: Iterable[tuple[str, str]], metrics: Sequence[str], *,
                n_boot: int = N_BOOT, seed: int = 0, alpha: float = ALPHA, **group) -> pd.DataFrame:
    """Every pair (A -> B) on every metric, Holm-corrected over all of them; ``group`` columns lead each row.

    The family is the table returned: its size is in column ``family``, the adjusted p in
    ``p_holm``, the verdict in ``verdict``.
    """
    rows = [{**group, "from": a, "to": b, **row}
            for a, b in pairs
            for row in compare(variants[a], variants[b], metrics, n_boot=n_boot, seed=seed, names=(a, b))]
    return adjust(pd.DataFrame(rows), alpha=alpha)


def adjust(table: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm over every row of ``table`` (one family) and the verdicts that follow."""
    if table.empty:
        return table
    table = table.assign(p_holm=holm(table["p"]), family=len(table))
    return table.assign(verdict=[verdict(d, p, alpha) for d, p in zip(table["diff"], table["p_holm"])])


def family_note(table: pd.DataFrame, alpha: float = ALPHA, level: float = LEVEL) -> str:
    """The sentence that states how the table's multiplicity is handled."""
    return (f"{level:.0%} percentile bootstrap intervals; verdicts at alpha {alpha:g} after Holm's correction over "
            f"the {len(table)} comparisons of this table (better / worse / no evidence)")


def interval(frame: pd.DataFrame, metrics: Sequence[str], *, n_boot: int = N_BOOT, seed: int = 0,
             level: float = LEVEL) -> dict[str, dict]:
    """One variant's metrics with a percentile interval (tasks, seeds and runs resampled), for a lone report."""
    tasks = list(dict.fromkeys(frame["task_id"]))
    cube = Cube.of(frame, tasks)
    rng = np.random.default_rng(seed)
    task_weights = _task_weights(len(tasks), n_boot, rng)
    found = {}
    for metric in metrics:
        draws = cube.draws(metric, task_weights, rng)
        low, high = _percentiles(draws[np.isfinite(draws)], level)
        found[metric] = {"estimate": cube.estimate(metric), "low": float(low), "high": float(high)}
    return found
