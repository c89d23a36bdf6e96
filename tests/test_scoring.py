"""Scoring (``shared_utils.scoring``): the unbiased pass@k estimator, the per-run summary the paper
reports (pass@k and average MI of passing code) and scoring real MBPP test problems through the sandbox.
The estimator and the comparisons between variants are ``test_statistics.py``'s."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from shared_utils import data, scoring, statistics
from shared_utils.maintainability import mi_score

# --------------------------------------------------------------------------------------------
# summarize on a hand-built frame


def hand_frame() -> pd.DataFrame:
    """Three tasks, five samples each.

    task 1: samples 0 and 3 pass (MI 80, 90); failing samples have other MI values (one unscorable).
    task 2: all five pass (MI 60, 70, 60, 70, 65).
    task 3: nothing passes.
    """
    rows = []
    spec = {
        1: [(True, 80.0), (False, 10.0), (False, math.nan), (True, 90.0), (False, 20.0)],
        2: [(True, 60.0), (True, 70.0), (True, 60.0), (True, 70.0), (True, 65.0)],
        3: [(False, 99.0), (False, 95.0), (False, math.nan), (False, 50.0), (False, 40.0)],
    }
    for task_id, samples in spec.items():
        for index, (passed, mi) in enumerate(samples):
            rows.append({"task_id": task_id, "sample": index, "passed": passed, "mi": mi})
    return pd.DataFrame(rows)


def test_summarize_hand_computed():
    summary = scoring.summarize(hand_frame(), ks=(1, 5))
    assert summary["tasks"] == 3
    assert summary["candidates"] == 15
    assert summary["passed_candidates"] == 7
    assert summary["solved_tasks"] == 2
    # pass@1: (2/5 + 5/5 + 0) / 3; pass@5 with n = 5: (1 + 1 + 0) / 3.
    assert summary["pass_at_k"] == pytest.approx({1: (0.4 + 1.0 + 0.0) / 3, 5: 2 / 3})
    # avg MI: mean over solved tasks of the mean MI of passing samples = mean(85, 65) = 75,
    # not the mean over all passing samples (495 / 7) nor over all samples.
    assert summary["avg_mi"] == pytest.approx(75.0)
    json.dumps(summary)  # plain types only


def test_summary_names_runs_without_every_wall_unsafe():
    frame = hand_frame()
    assert scoring.summarize(frame)["sandbox"] == "strict"
    frame["sandbox"] = ["strict"] * (len(frame) - 1) + ["none"]
    assert scoring.summarize(frame)["sandbox"].startswith("UNSAFE")


def test_isolation_mode_follows_the_environment(monkeypatch):
    from shared_utils.sandbox import isolation_mode

    monkeypatch.delenv("SANDBOX_ISOLATION", raising=False)
    assert isolation_mode() == "strict"
    monkeypatch.setenv("SANDBOX_ISOLATION", "none")
    assert isolation_mode() == "none"


def test_summarize_drops_k_above_the_samples_per_task():
    summary = scoring.summarize(hand_frame())  # default ks 1, 5, 10; n = 5
    assert set(summary["pass_at_k"]) == {1, 5}


def test_summarize_uneven_samples_uses_the_smallest_n():
    frame = hand_frame()
    frame = frame[~((frame.task_id == 2) & (frame["sample"] >= 3))]  # task 2 keeps 3 samples
    summary = scoring.summarize(frame, ks=(1, 3, 5))
    assert set(summary["pass_at_k"]) == {1, 3}
    assert summary["pass_at_k"][3] == pytest.approx((statistics.pass_at_k(5, 2, 3) + 1.0 + 0.0) / 3)
    assert summary["candidates"] == 13 and summary["passed_candidates"] == 5


def test_summarize_nothing_solved():
    frame = hand_frame()
    frame["passed"] = False
    summary = scoring.summarize(frame, ks=(1,))
    assert summary["solved_tasks"] == 0 and summary["passed_candidates"] == 0
    assert summary["pass_at_k"] == {1: 0.0}
    assert math.isnan(summary["avg_mi"])


def test_per_task_table():
    table = scoring.per_task(hand_frame())
    assert table["n"].tolist() == [5, 5, 5]
    assert table["c"].tolist() == [2, 5, 0]
    assert table.loc[1, "mi_passing"] == pytest.approx(85.0)
    assert table.loc[2, "mi_passing"] == pytest.approx(65.0)
    assert math.isnan(table.loc[3, "mi_passing"])


# --------------------------------------------------------------------------------------------
# score_completions on real MBPP test problems (through the sandbox)


@pytest.fixture(scope="module")
def problems(mbpp_dir):
    by_id = {row["task_id"]: row for row in data.load_mbpp(mbpp_dir, "test")}
    return [by_id[17], by_id[18], by_id[20]]


def fence(code: str) -> str:
    return f"```python\n{code}\n```"


@pytest.fixture(scope="module")
def completions(problems):
    p17, p18, p20 = problems
    return {
        17: [
            fence(p17["code"]),
            fence("def square_perimeter(a):\n    return 4 + a"),  # wrong answer
            fence("def square_perimeter(a)\n    return 4 * a"),  # syntax error
        ],
        18: [
            fence(p18["code"]),
            "Here is the solution:\n" + fence(p18["code"]) + "\nIt removes the characters of the second string.",
        ],
        20: [
            "```python\ndef is_woodall(x):\n    return False\n```",  # fails is_woodall(383) == True
            fence(p20["code"]),
        ],
    }


@pytest.fixture(scope="module")
def scored(completions, problems):
    return scoring.score_completions(completions, problems, extract="paper", progress=False)


def test_score_completions_paper_flags(scored):
    assert scored[["task_id", "sample"]].values.tolist() == [[17, 0], [17, 1], [17, 2], [18, 0], [18, 1], [20, 0], [20, 1]]
    assert scored["passed"].tolist() == [True, False, False, True, False, False, True]


def test_score_completions_statuses_and_asserts(scored):
    rows = {(row.task_id, row.sample): row for row in scored.itertuples()}
    assert rows[17, 0].status == "passed" and list(rows[17, 0].assert_results) == ["passed"] * 3
    assert rows[17, 1].status == "failed" and "failed" in list(rows[17, 1].assert_results)
    assert rows[17, 2].status == "error" and "SyntaxError" in rows[17, 2].error
    # The paper's extraction keeps the prose, which is a syntax error.
    assert rows[18, 1].status == "error"
    # is_woodall always False: the first assert fails, the two others (False expected) pass.
    assert list(rows[20, 0].assert_results) == ["failed", "passed", "passed"]


def test_score_completions_mi_columns(scored, problems):
    rows = {(row.task_id, row.sample): row for row in scored.itertuples()}
    assert rows[17, 0].code == problems[0]["code"].strip()
    assert rows[17, 0].mi == pytest.approx(mi_score(problems[0]["code"].strip()))
    assert rows[17, 0].scorable
    assert math.isnan(rows[17, 2].mi) and not rows[17, 2].scorable
    for name in ("halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines"):
        assert name in scored.columns


def test_score_completions_fenced_extraction_rescues_prose(completions, problems):
    frame = scoring.score_completions(completions, problems, extract="fenced", progress=False)
    assert frame["passed"].tolist() == [True, False, False, True, True, False, True]


def test_score_then_summarize(scored, problems):
    summary = scoring.summarize(scored, ks=(1, 2))
    assert summary["tasks"] == 3 and summary["candidates"] == 7
    assert summary["passed_candidates"] == 3 and summary["solved_tasks"] == 3
    assert summary["pass_at_k"][1] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert summary["pass_at_k"][2] == pytest.approx((statistics.pass_at_k(3, 1, 2) + 1.0 + 1.0) / 3)
    expected_mi = sum(mi_score(p["code"].strip()) for p in problems) / 3
    assert summary["avg_mi"] == pytest.approx(expected_mi)


def test_score_completions_unknown_task(problems):
    with pytest.raises(ValueError, match="999"):
        scoring.score_completions({999: ["x = 1"]}, problems, progress=False)


def test_evaluate_file_paper_format(tmp_path, completions, problems):
    completions_path = tmp_path / "smollm2-135m_base_model_output_run_1.json"
    completions_path.write_text(json.dumps(
        [{"task_id": task_id, "generated_sequences": texts} for task_id, texts in completions.items()]))
    problems_path = tmp_path / "problems.jsonl"
    problems_path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    out = tmp_path / "scores"
    summaries = scoring.evaluate_file(completions_path, problems_path, ks=(1,), out=out, progress=False)
    assert list(summaries) == ["paper", "corrected", "fenced"]
    summary = summaries["paper"]
    assert (summary["tasks"], summary["candidates"], summary["passed_candidates"], summary["solved_tasks"]) == (3, 7, 3, 3)
    assert summary["pass_at_k"][1] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    samples = pd.read_parquet(out / "smollm2-135m_base_model_output_run_1.paper.samples.parquet")
    assert samples["passed"].tolist() == [True, False, False, True, False, False, True]
    saved = json.loads((out / "smollm2-135m_base_model_output_run_1.paper.summary.json").read_text())
    assert saved["passed_candidates"] == 3 and (saved["extract"], saved["protocol"]) == ("paper", "paper")
    low, high = summary["intervals"]["pass@1"]
    assert low <= summary["pass_at_k"][1] <= high and set(summary["intervals"]) == {"pass@1", "avg_mi"}


def test_evaluate_file_against_a_baseline_gives_paired_verdicts(tmp_path, completions, problems):
    def written(name, answers):
        path = tmp_path / name
        path.write_text(json.dumps([{"task_id": task_id, "generated_sequences": texts} for task_id, texts in answers.items()]))
        return path

    wrong = {task_id: ["def nothing():\n    return None"] * len(texts) for task_id, texts in completions.items()}
    problems_path = tmp_path / "problems.jsonl"
    problems_path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    summaries = scoring.evaluate_file(written("tuned.json", completions), problems_path, scoring="paper", ks=(1,),
                                      baseline=written("base.json", wrong), progress=False)
    versus = summaries["paper"]["versus_baseline"]
    assert versus["pass@1"]["diff"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    assert versus["pass@1"]["low"] > 0 and versus["pass@1"]["verdict"] == "better"  # every task gains
    assert versus["avg_mi"]["verdict"] == "no evidence"  # the baseline solves nothing: no MI to compare
