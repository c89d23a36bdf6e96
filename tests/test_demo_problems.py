"""The demo problem set (``shared_utils/resources/demo_problems.jsonl``): every reference solution passes
its own three asserts, run through the real sandbox (``shared_utils.sandbox.check_many``), and a broken
solution does not."""

from __future__ import annotations

import pytest

from shared_utils import data
from shared_utils.sandbox import check_many


@pytest.fixture(scope="module")
def demo():
    rows = data.demo_problems()
    assert len(rows) == 40
    return rows


def jobs(rows, transform=lambda code: code):
    return [(transform(row["code"]), row["test_list"], row["test_setup_code"]) for row in rows]


def describe(rows, outcomes) -> list[str]:
    return [f"{row['task_id']}: {outcome.status} {outcome.exc_type}: {outcome.message}"
            for row, outcome in zip(rows, outcomes) if not outcome.passed]


def test_every_demo_problem_has_three_asserts(demo):
    for row in demo:
        assert len(row["test_list"]) == 3, row["task_id"]
        assert all(test.strip().startswith("assert ") for test in row["test_list"]), row["task_id"]


def test_every_reference_solution_passes_its_own_asserts(demo):
    outcomes = check_many(jobs(demo), timeout=5.0, progress=False)
    assert len(outcomes) == len(demo)
    assert describe(demo, outcomes) == []
    assert all(outcome.passed for outcome in outcomes)


def test_a_solution_that_returns_none_fails(demo):
    # Every "return X" becomes "return None  # X": the code still runs, the answers are wrong.
    broken = lambda code: code.replace("return ", "return None  # ")  # noqa: E731
    assert all(broken(row["code"]) != row["code"] for row in demo)
    outcomes = check_many(jobs(demo, broken), timeout=5.0, progress=False)
    passing = [row["task_id"] for row, outcome in zip(demo, outcomes) if outcome.passed]
    assert passing == []
    assert {outcome.status for outcome in outcomes} == {"failed"}


def test_a_solution_checked_against_another_problems_asserts_fails(demo):
    # Each reference solution against its neighbour's tests: the names (or answers) do not match.
    shifted = [(row["code"], other["test_list"], other["test_setup_code"])
               for row, other in zip(demo, demo[1:] + demo[:1])]
    outcomes = check_many(shifted, timeout=5.0, progress=False)
    assert not any(outcome.passed for outcome in outcomes)
