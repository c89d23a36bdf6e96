"""Statistics (``shared_utils.statistics``): the unbiased pass@k estimator, the paper's metrics per run,
paired bootstrap comparisons that resample tasks, runs and training seeds, and Holm's correction."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pandas as pd
import pytest

from shared_utils import statistics

# --------------------------------------------------------------------------------------------
# pass@k


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("c", range(11))
def test_pass_at_k_matches_the_closed_form(c, k):
    n = 10
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert statistics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_known_values():
    assert statistics.pass_at_k(10, 0, 1) == 0.0
    assert statistics.pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert statistics.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert statistics.pass_at_k(10, 1, 10) == 1.0
    assert statistics.pass_at_k(10, 2, 5) == pytest.approx(1 - 56 / 252)  # C(8,5)/C(10,5)
    assert statistics.pass_at_k(10, 10, 1) == 1.0
    assert statistics.pass_at_k(20, 1, 10) == pytest.approx(0.5)  # not 1.0, as "any pass among the samples" says


def test_pass_at_k_is_monotone_in_c_and_k():
    values = [[statistics.pass_at_k(10, c, k) for c in range(11)] for k in (1, 5, 10)]
    for row in values:
        assert row == sorted(row)
    for c in range(11):
        assert values[0][c] <= values[1][c] <= values[2][c]


@pytest.mark.parametrize("n, k", [(10, 11), (1, 5), (5, 10)])
def test_pass_at_k_with_k_above_n_raises(n, k):
    with pytest.raises(ValueError, match=f"pass@{k}"):
        statistics.pass_at_k(n, 0, k)


# --------------------------------------------------------------------------------------------
# A variant's metrics


def simulated(rates: np.ndarray, mi: np.ndarray, *, seed: int, runs: int = 5, seeds: int = 1, n: int = 10,
              seed_offsets=None) -> pd.DataFrame:
    """Observations of a variant whose task t passes with probability rates[t] and has MI about mi[t]."""
    rng = np.random.default_rng(seed)
    rows = []
    for training_seed in range(seeds):
        shift = 0.0 if seed_offsets is None else seed_offsets[training_seed]
        for run in range(runs):
            passed = rng.binomial(n, np.clip(rates + shift, 0, 1))
            for task, c in enumerate(passed):
                value = mi[task] + rng.normal(0, 2) if c else math.nan
                rows.append({"seed": training_seed, "run": run, "task_id": 11 + task, "n": n, "c": int(c), "mi": value})
    return pd.DataFrame(rows)


TASKS = 300
RATES = np.random.default_rng(7).uniform(0.05, 0.6, TASKS)
MI = np.random.default_rng(8).uniform(55, 85, TASKS)
METRICS = statistics.metric_names([1, 10])


def test_metrics_are_the_papers_per_run_then_averaged():
    frame = pd.DataFrame([
        {"seed": 0, "run": 0, "task_id": 1, "n": 10, "c": 3, "mi": 80.0},
        {"seed": 0, "run": 0, "task_id": 2, "n": 10, "c": 0, "mi": math.nan},
        {"seed": 0, "run": 1, "task_id": 1, "n": 10, "c": 10, "mi": 70.0},
        {"seed": 0, "run": 1, "task_id": 2, "n": 10, "c": 1, "mi": 50.0},
    ])
    cube = statistics.Cube.of(frame, [1, 2])
    assert cube.estimate("pass@1") == pytest.approx(((0.3 + 0.0) / 2 + (1.0 + 0.1) / 2) / 2)
    assert cube.estimate("pass@10") == pytest.approx((0.5 + 1.0) / 2)  # the paper's solved share per run
    assert cube.estimate("avg_mi") == pytest.approx((80.0 + (70.0 + 50.0) / 2) / 2)  # run 0: its one solved task


def test_pass_at_10_of_20_samples_uses_the_unbiased_estimator():
    frame = pd.DataFrame([{"seed": 0, "run": 0, "task_id": t, "n": 20, "c": c, "mi": 60.0 if c else math.nan}
                          for t, c in enumerate([1, 2, 0, 20])])
    expected = np.mean([statistics.pass_at_k(20, c, 10) for c in (1, 2, 0, 20)])
    assert statistics.Cube.of(frame, [0, 1, 2, 3]).estimate("pass@10") == pytest.approx(expected)
    assert expected < 3 / 4  # the share of tasks with any pass would say 0.75
    interval = statistics.interval(frame, ["pass@10"], n_boot=200)["pass@10"]
    assert interval["low"] <= interval["estimate"] <= interval["high"]


def test_a_missing_task_in_one_run_is_refused_by_name():
    frame = simulated(RATES[:3], MI[:3], seed=0, runs=2).iloc[:-1]
    with pytest.raises(ValueError, match=r"dpo: no observation for .*\(0, 1, 13\)"):
        statistics.Cube.of(frame, [11, 12, 13], "dpo")


# --------------------------------------------------------------------------------------------
# Paired comparisons


def test_a_known_difference_gives_intervals_that_exclude_zero():
    base = simulated(RATES, MI, seed=1)
    better = simulated(RATES + 0.15, MI + 3.0, seed=2)
    table = statistics.comparisons({"base": base, "tuned": better}, [("base", "tuned")], METRICS, n_boot=2000)
    for row in table.itertuples():
        assert row.low > 0 and row.verdict == "better", row
    pass1 = table.set_index("metric").loc["pass@1"]
    assert pass1["low"] < 0.15 < pass1["high"]  # the interval holds the true difference
    assert table.set_index("metric").loc["avg_mi", "note"] == statistics.MI_NOTE
    worse = statistics.comparisons({"base": base, "tuned": better}, [("tuned", "base")], METRICS, n_boot=2000)
    assert set(worse["verdict"]) == {"worse"}


def test_two_resamples_of_one_variant_give_intervals_that_hold_zero():
    first, second = simulated(RATES, MI, seed=3), simulated(RATES, MI, seed=4)
    table = statistics.comparisons({"a": first, "b": second}, [("a", "b")], METRICS, n_boot=2000)
    for row in table.itertuples():
        assert row.low < 0 < row.high and row.verdict == "no evidence", row


def test_comparisons_are_seeded():
    first, second = simulated(RATES, MI, seed=3, runs=2), simulated(RATES, MI, seed=4, runs=2)
    once, again = (statistics.compare(first, second, METRICS, n_boot=300, seed=5) for _ in range(2))
    assert once == again


def test_training_seeds_widen_the_interval_when_they_disagree():
    base = simulated(RATES, MI, seed=5, runs=3)
    offsets = [-0.1, 0.0, 0.1]  # one variant, three training seeds that learnt rather different things
    seeded = simulated(RATES, MI, seed=6, runs=3, seeds=3, seed_offsets=offsets)
    pooled = seeded.assign(run=seeded["seed"] * 3 + seeded["run"], seed=0)  # the same rows as 9 runs of one seed
    width = {}
    for name, tuned in (("seeds", seeded), ("pooled", pooled)):
        row = statistics.compare(base, tuned, ["pass@1"], n_boot=2000)[0]
        width[name] = row["high"] - row["low"]
    assert width["seeds"] > 1.5 * width["pooled"]


def test_holm_adjusts_step_down():
    adjusted = statistics.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.verdict(0.5, 0.049) == "better" and statistics.verdict(-0.5, 0.01) == "worse"
    assert statistics.verdict(0.5, 0.05) == "no evidence"


def test_holm_can_turn_a_lone_significance_into_no_evidence():
    table = pd.DataFrame({"diff": [1.0, 1.0, 1.0], "p": [0.02, 0.5, 0.6]})
    adjusted = statistics.adjust(table)
    assert list(adjusted["verdict"]) == ["no evidence"] * 3 and list(adjusted["family"]) == [3] * 3
    assert "Holm" in statistics.family_note(adjusted) and "3 comparisons" in statistics.family_note(adjusted)
