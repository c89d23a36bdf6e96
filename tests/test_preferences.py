"""Preference pairs (``shared_utils.preferences``): MI labelling of global and local pairs in TRL's
conversational format, the Stage-1b check of the shared Gemini answers through the sandbox, and saving.

The Gemini answers are the 238 published by the paper's authors (``../shared/data/global_dpo``);
both implementations of each pass their MBPP train asserts, so all 238 tasks must survive the check.
"""

from __future__ import annotations

import ast
import json
import math

import pytest

from shared_utils import data, files, preferences
from shared_utils.generation import PairResponse, replay_pairs
from shared_utils.maintainability import mi_score

# The paper's system prompt, spelled out on purpose: a change to the constant must fail.
PAPER_SYSTEM = (
    "You are a code generation model. Your task is to generate code snippets based on user prompts. "
    "You are to only write the full code for the required function and stop after returning the function output."
)

# Three correct solutions of MBPP task 602 (first repeated character) with different MI.
SLICING = '''def first_repeated_char(str1):
    for index, c in enumerate(str1):
        if str1[:index + 1].count(c) > 1:
            return c
    return "None"'''
SET_BASED = '''def first_repeated_char(str1):
    seen = set()
    for c in str1:
        if c in seen:
            return c
        seen.add(c)
    return "None"'''
COMMENTED = '''def first_repeated_char(str1):
    """Scan the string left to right.

    Return the first character that was already seen, else the string None.
    """
    # the characters met so far
    seen = []
    for i in range(len(str1)):
        # current character
        ch = str1[i]
        if ch in seen:
            return ch
        else:
            seen.append(ch)
    return "None"'''

PROBLEM_602 = {
    "task_id": 602,
    "text": "Write a python function to find the first repeated character in a given string."
            "\nThe main function is defined by the function signature: def first_repeated_char(str1)\n",
    "code": SLICING,
    "test_list": ['assert first_repeated_char("abcabc") == "a"', 'assert first_repeated_char("abc") == "None"',
                  'assert first_repeated_char("123123") == "1"'],
    "test_setup_code": "",
    "challenge_test_list": [],
}
PROBLEM_ADD = {**PROBLEM_602, "task_id": 9001, "text": "Write a function to add one.", "code": "def f(a):\n    return a + 1",
               "test_list": ["assert f(1) == 2", "assert f(0) == 1", "assert f(-1) == 0"]}


def strip_comments(code: str) -> str:
    """Code without comments or docstrings (what MI would be without its comment term)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def mi_without_comments(code: str) -> float:
    return mi_score(strip_comments(code))


def test_fixture_codes_rank_as_the_tests_assume():
    assert mi_score(COMMENTED) > mi_score(SET_BASED) > mi_score(SLICING)
    assert mi_without_comments(SET_BASED) > mi_without_comments(SLICING) > mi_without_comments(COMMENTED)


# --------------------------------------------------------------------------------------------
# label_global


def pair(first: str, second: str, problem: dict = PROBLEM_602) -> dict:
    return {**problem, "code_output_1": first, "code_output_2": second, "generator": "test"}


@pytest.mark.parametrize("first, second", [(SLICING, SET_BASED), (SET_BASED, SLICING)])
def test_label_global_chooses_higher_mi_in_either_order(first, second):
    (row,) = preferences.label_global([pair(first, second)])
    assert row["chosen_code"] == SET_BASED and row["rejected_code"] == SLICING
    assert row["key_chosen"] == mi_score(SET_BASED) and row["key_rejected"] == mi_score(SLICING)
    assert row["chosen_mi"] == mi_score(SET_BASED) and row["rejected_mi"] == mi_score(SLICING)
    assert row["mi_gap"] == pytest.approx(mi_score(SET_BASED) - mi_score(SLICING))
    assert row["mi_gap"] > 0


def test_label_global_ties_keep_the_first():
    one, two = "def f(a):\n    return a + 1", "def f(b):\n    return b + 1"
    assert one != two and mi_score(one) == mi_score(two)
    (row,) = preferences.label_global([pair(one, two, PROBLEM_ADD)])
    assert row["chosen_code"] == one and row["rejected_code"] == two
    (row,) = preferences.label_global([pair(two, one, PROBLEM_ADD)])
    assert row["chosen_code"] == two and row["rejected_code"] == one
    assert row["mi_gap"] == 0


def test_label_global_rows_are_trl_conversational():
    (row,) = preferences.label_global([pair(SLICING, SET_BASED)])
    assert row["task_id"] == 602
    assert row["prompt"] == [
        {"role": "system", "content": PAPER_SYSTEM},
        {"role": "user", "content": PROBLEM_602["text"]},
    ]
    assert row["chosen"] == [{"role": "assistant", "content": f"```python\n{SET_BASED}\n```"}]
    assert row["rejected"] == [{"role": "assistant", "content": f"```python\n{SLICING}\n```"}]
    for side in ("chosen", "rejected"):
        for name in ("mi", "halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines"):
            assert isinstance(row[f"{side}_{name}"], float)


def test_label_global_custom_key():
    rows = preferences.label_global([pair(COMMENTED, SET_BASED)], key=mi_without_comments)
    assert rows[0]["chosen_code"] == SET_BASED
    assert preferences.label_global([pair(COMMENTED, SET_BASED)])[0]["chosen_code"] == COMMENTED


def test_label_global_keeps_one_row_per_pair_in_order():
    pairs = [pair(SLICING, SET_BASED), pair("def f(a):\n    return a + 1", "def f(a):\n    return 1 + a", PROBLEM_ADD)]
    assert [row["task_id"] for row in preferences.label_global(pairs)] == [602, 9001]
    assert preferences.label_global([]) == []


# --------------------------------------------------------------------------------------------
# label_local


def test_label_local_best_against_worst():
    (row,) = preferences.label_local([PROBLEM_602], {602: [SET_BASED, SLICING, COMMENTED]})
    assert row["chosen_code"] == COMMENTED and row["rejected_code"] == SLICING
    assert row["prompt"][0] == {"role": "system", "content": PAPER_SYSTEM}
    assert row["chosen"] == [{"role": "assistant", "content": f"```python\n{COMMENTED}\n```"}]


def test_label_local_custom_key_strips_comments():
    (row,) = preferences.label_local([PROBLEM_602], {602: [SET_BASED, SLICING, COMMENTED]}, key=mi_without_comments)
    assert row["chosen_code"] == SET_BASED and row["rejected_code"] == COMMENTED
    assert row["key_chosen"] == mi_without_comments(SET_BASED)
    # The MI columns still report the plain MI, whichever key chose.
    assert row["chosen_mi"] == mi_score(SET_BASED) and row["rejected_mi"] == mi_score(COMMENTED)


def test_label_local_drops_whitespace_only_differences():
    respaced = "\n" + SLICING.replace("    ", "  ").replace("\n", "  \n") + "\n\n"
    assert respaced != SLICING
    rows = preferences.label_local([PROBLEM_602, PROBLEM_ADD], {
        602: [SLICING, respaced, SLICING],
        9001: ["def f(a):\n    return a + 1"],
    })
    assert rows == []


def test_label_local_keeps_tasks_with_two_distinct_samples_only():
    rows = preferences.label_local([PROBLEM_602, PROBLEM_ADD], {
        602: [SLICING, SLICING + "\n", SET_BASED],
        9001: ["def f(a):\n    return a + 1", "def f(a):\n        return a + 1"],
    })
    assert [row["task_id"] for row in rows] == [602]
    # Either spelling of the duplicated sample may stand for it.
    assert rows[0]["chosen_code"] == SET_BASED and rows[0]["rejected_code"].strip() == SLICING


def test_label_local_min_gap():
    gap = mi_score(SET_BASED) - mi_score(SLICING)
    assert 0 < gap < 1
    samples = {602: [SLICING, SET_BASED]}
    assert len(preferences.label_local([PROBLEM_602], samples, min_gap=gap * 0.99)) == 1
    assert preferences.label_local([PROBLEM_602], samples, min_gap=gap * 1.01) == []
    # A large gap passes a large threshold.
    samples = {602: [SLICING, COMMENTED]}
    assert len(preferences.label_local([PROBLEM_602], samples, min_gap=20.0)) == 1


def test_label_local_equal_keys_kept_without_min_gap_dropped_with_it():
    samples = {9001: ["def f(a):\n    return a + 1", "def f(b):\n    return b + 1"]}
    assert len(preferences.label_local([PROBLEM_ADD], samples)) == 1
    assert preferences.label_local([PROBLEM_ADD], samples, min_gap=0.01) == []


# --------------------------------------------------------------------------------------------
# check_pair_responses: the shared Gemini answers through the sandbox


@pytest.fixture(scope="module")
def train_problems(mbpp_dir, tmp_path_factory):
    paths = data.prepare(mbpp_dir, tmp_path_factory.mktemp("prepared"))
    return data.load_problems(paths["train"])


@pytest.fixture(scope="module")
def gemini_checked(train_problems, gemini_pairs):
    responses = replay_pairs(gemini_pairs)
    assert len(responses) == 238
    rows, counts = preferences.check_pair_responses(train_problems, responses, generator="gemini-2.5-pro",
                                                    progress=False)
    return responses, rows, counts


def test_gemini_pairs_all_pass(gemini_checked, train_problems):
    responses, rows, counts = gemini_checked
    assert len(train_problems) == 372
    assert (counts.requested, counts.answered, counts.malformed) == (372, 238, 0)
    failing = sorted(set(responses) - {row["task_id"] for row in rows})
    assert failing == [], f"Gemini answers that failed the sandbox: {failing}"
    assert (counts.first_passes, counts.second_passes, counts.both) == (238, 238, 238)
    assert len(rows) == 238


def test_gemini_rows_join_the_preprocessed_problem(gemini_checked, train_problems):
    responses, rows, _ = gemini_checked
    by_id = {problem["task_id"]: problem for problem in train_problems}
    for row in rows:
        problem = by_id[row["task_id"]]
        assert row["text"] == problem["text"] and row["test_list"] == problem["test_list"]
        assert row["text"].endswith(f"signature: {problem['signature']}\n")
        assert row["code_output_1"] == responses[row["task_id"]].code_output_1.strip()
        assert row["code_output_2"] == responses[row["task_id"]].code_output_2.strip()
        assert row["generator"] == "gemini-2.5-pro"


def test_gemini_rows_label_into_pairs(gemini_checked):
    _, rows, _ = gemini_checked
    labelled = preferences.label_global(rows[:40])
    assert len(labelled) == 40
    for source, row in zip(rows, labelled):
        assert {row["chosen_code"], row["rejected_code"]} == {source["code_output_1"], source["code_output_2"]}
        assert row["chosen_mi"] >= row["rejected_mi"]
        assert not math.isnan(row["chosen_mi"]) and not math.isnan(row["rejected_mi"])


def test_broken_second_implementation_counts_as_first_only():
    broken = SET_BASED.replace('return "None"', "return None")
    responses = {
        602: PairResponse(602, f"```python\n{SLICING}\n```", broken),
        9001: PairResponse(9001, "def f(a):\n    return a + 1", "def f(a):\n    return 1 + a"),
    }
    rows, counts = preferences.check_pair_responses([PROBLEM_602, PROBLEM_ADD], responses, generator="t",
                                                    progress=False)
    assert [row["task_id"] for row in rows] == [9001]
    assert (counts.requested, counts.answered, counts.malformed) == (2, 2, 0)
    assert (counts.first_passes, counts.second_passes, counts.both) == (2, 1, 1)


def test_malformed_responses_are_counted_not_checked():
    responses = {
        602: PairResponse(602, None, None, error="line 1: malformed JSON"),
        9001: PairResponse(9001, "def f(a):\n    return a + 1", ""),
    }
    rows, counts = preferences.check_pair_responses([PROBLEM_602, PROBLEM_ADD], responses, generator="t",
                                                    progress=False)
    assert rows == []
    assert (counts.answered, counts.malformed, counts.first_passes, counts.both) == (2, 2, 0, 0)


def test_responses_for_unknown_tasks_are_an_error():
    with pytest.raises(ValueError, match="12345"):
        preferences.check_pair_responses([PROBLEM_602], {12345: PairResponse(12345, "x", "y")}, generator="t",
                                         progress=False)


# --------------------------------------------------------------------------------------------
# save_pairs


def test_save_pairs_writes_a_dataset_with_provenance(tmp_path):
    from datasets import load_from_disk

    rows = preferences.label_local([PROBLEM_602], {602: [SET_BASED, SLICING, COMMENTED]}) + \
        preferences.label_global([pair(SLICING, SET_BASED)])
    out = preferences.save_pairs(rows, tmp_path / "pairs", stage="test")
    assert out == tmp_path / "pairs"
    record = json.loads((out / "provenance.json").read_text())
    assert record["content_hash"] == files.content_hash(rows)
    assert len(record["content_hash"]) == 64
    assert record["rows"] == 2 and record["stage"] == "test"
    loaded = list(load_from_disk(str(out)))
    assert [row["chosen_code"] for row in loaded] == [row["chosen_code"] for row in rows]
    assert loaded[0]["prompt"] == rows[0]["prompt"] and loaded[0]["chosen"] == rows[0]["chosen"]
    assert preferences.load_rows(out)[1]["rejected_code"] == SLICING
    assert [p.name for p in tmp_path.iterdir()] == ["pairs"]


def test_content_hash_tracks_content():
    rows = preferences.label_global([pair(SLICING, SET_BASED)])
    same = preferences.label_global([pair(SET_BASED, SLICING)])
    other = preferences.label_global([pair(SLICING, COMMENTED)])
    assert files.content_hash(rows) == files.content_hash(same)
    assert files.content_hash(rows) != files.content_hash(other)


def test_save_pairs_refuses_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no pairs"):
        preferences.save_pairs([], tmp_path / "pairs")
    assert not (tmp_path / "pairs").exists()
