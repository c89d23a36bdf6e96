"""Stage 2a's rounds on replayed samples: who is asked again, with what prompt, and which pairs come out."""

from __future__ import annotations

import json

import pytest

from shared_utils import data, preferences, prompts
from shared_utils.generation import SamplingConfig
from shared_utils.protocol import resolve
from shared_utils.self_generation import SelfGenConfig, SelfGenResult, round_prompt, self_generate

ADD, MAX, REVERSE = 9001, 9002, 9003
WRONG = "```python\ndef wrong(*args):\n    return None\n```"


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```"


@pytest.fixture
def problems():
    return data.demo_problems("train")[:3]


@pytest.fixture
def samples(problems, tmp_path):
    """A checkpoint of two rounds x two samples, as the local backend writes it, to replay."""
    code = {p["task_id"]: p["code"] for p in problems}
    answers = {
        (ADD, 0): [fenced(code[ADD]), fenced("def add_numbers(a, b):\n    total = a + b\n    return total")],
        (MAX, 0): [WRONG, fenced(code[MAX])],
        (MAX, 1): [fenced("def max_of_list(nums):\n    return max(nums)"), WRONG],
        (REVERSE, 0): [WRONG, WRONG],
        (REVERSE, 1): [WRONG, fenced("def reverse_string(s):\n    return s[::-1]")],
    }
    path = tmp_path / "earlier.jsonl"
    path.write_text("".join(json.dumps({"task_id": task_id, "round": round_index, "sample": sample, "text": text,
                                        "tokens": 0}) + "\n"
                            for (task_id, round_index), texts in answers.items()
                            for sample, text in enumerate(texts)))
    return path


def test_rounds_ask_again_only_the_tasks_short_of_two_passing_samples(problems, samples, tmp_path):
    # Replay raises on any sample it does not hold: asking ADD again in round 1 would fail here.
    result = self_generate(problems, sampling=SamplingConfig(n=2), config=SelfGenConfig(rounds=2),
                           checkpoint=tmp_path / "gen.jsonl", progress=False, backend="replay", source=samples)
    assert result.rounds == [
        {"round": 0, "tasks_asked": 3, "samples": 6, "samples_passed": 3, "tasks_with_enough": 1},
        {"round": 1, "tasks_asked": 2, "samples": 4, "samples_passed": 2, "tasks_with_enough": 2},
    ]
    assert [len(result.passing[t]) for t in (ADD, MAX, REVERSE)] == [2, 2, 1]
    assert result.failed[REVERSE] == ["def wrong(*args):\n    return None"] * 3

    # A rerun resumes from its own checkpoint and asks the replay source for nothing new.
    samples.write_text("")
    again = self_generate(problems, sampling=SamplingConfig(n=2), config=SelfGenConfig(rounds=2),
                          checkpoint=tmp_path / "gen.jsonl", progress=False, backend="replay", source=samples)
    assert again.passing == result.passing and again.rounds == result.rounds

    rows = preferences.label_local(problems, result.passing)
    assert sorted(row["task_id"] for row in rows) == [ADD, MAX]
    assert all(row["chosen_mi"] >= row["rejected_mi"] for row in rows)


def test_later_rounds_show_one_failed_solution_with_the_feedback_notice(problems):
    problem, corrected = problems[1], resolve("corrected")

    def state(failed):
        return SelfGenResult(passing={}, failed={problem["task_id"]: failed}, rounds=[])

    assert round_prompt(problem, state([]), 0, True, corrected) == problem["text"]
    assert round_prompt(problem, state(["def wrong(): pass"]), 0, True, corrected) == problem["text"]
    retry = round_prompt(problem, state(["def wrong(): pass", "other"]), 1, True, corrected)
    assert retry == f"{problem['text']}\n{prompts.RETRY_FEEDBACK}\ndef wrong(): pass"
    assert round_prompt(problem, state(["def wrong(): pass"]), 1, False, corrected) == problem["text"]
