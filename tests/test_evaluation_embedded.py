"""`evaluate` on a completions file that the generation layer wrote for the
embedded model gives the numbers of an independent hand computation (one `sandbox.check`
per sample, radon directly, the closed-form pass@k)."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from radon.metrics import mi_visit

from shared_utils import data
from shared_utils.cli import main
from shared_utils.sandbox import check

pytestmark = pytest.mark.slow
N = 4


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Real SmolLM2 answers to six easy demo problems, in the paper's output format."""
    root = tmp_path_factory.mktemp("eval")
    problems = root / "problems.jsonl"
    problems.write_text("".join(json.dumps(row) + "\n" for row in data.demo_problems()[:6]))
    out = root / "smollm2.json"
    assert main(["generate", "--model", "smollm2-135m", "--backend", "local", "--problems", str(problems),
                 "--n", str(N), "--max-new-tokens", "160", "--seed", "1", "--paper-protocol", "--out", str(out)]) == 0
    return problems, out


def hand_computed(problems_file, completions_file) -> dict:
    problems = {row["task_id"]: row for row in map(json.loads, problems_file.read_text().splitlines())}
    answers = {row["task_id"]: row["generated_sequences"] for row in json.loads(completions_file.read_text())}
    solved_mi, passing, pass1, pass10 = [], 0, [], []
    for task_id, texts in answers.items():
        codes = [text.replace("```python", "").replace("```", "").strip() for text in texts]
        problem = problems[task_id]
        ok = [check(code, problem["test_list"], setup=problem["test_setup_code"]).passed for code in codes]
        passing += sum(ok)
        pass1.append(sum(ok) / len(ok))
        pass10.append(1.0 if any(ok) else 0.0)
        if any(ok):
            solved_mi.append(statistics.mean(mi_visit(code, multi=True) for code, good in zip(codes, ok) if good))
    return {"tasks": len(answers), "candidates": sum(map(len, answers.values())), "passed_candidates": passing,
            "solved_tasks": len(solved_mi), "pass@1": statistics.mean(pass1), "pass@N": statistics.mean(pass10),
            "avg_mi": statistics.mean(solved_mi) if solved_mi else math.nan}


def test_evaluate_equals_the_hand_computation(generated, capsys):
    problems, completions = generated
    assert main(["evaluate", "--completions", str(completions), "--problems", str(problems), "--k", f"1,{N}",
                 "--json"]) == 0
    reported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["corrected"]
    expected = hand_computed(problems, completions)
    assert expected["candidates"] == 6 * N and expected["passed_candidates"] > 0, "the model solved nothing"
    for key in ("tasks", "candidates", "passed_candidates", "solved_tasks"):
        assert reported[key] == expected[key], key
    assert reported["pass_at_k"]["1"] == pytest.approx(expected["pass@1"])
    assert reported["pass_at_k"][str(N)] == pytest.approx(expected["pass@N"])
    assert reported["avg_mi"] == pytest.approx(expected["avg_mi"])
