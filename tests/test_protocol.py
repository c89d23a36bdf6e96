"""The paper's protocol, behaviour by behaviour, on constructed inputs and on the shared data.

Each test pins one difference between the authors' code (``protocol="paper"``) and ours
(``"corrected"``), so that both stay exactly what the README's protocol table says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared_utils import data, files, preferences, prompts, protocol, recipes, runner, scoring, stages
from shared_utils.generation import SamplingConfig
from shared_utils.generation.replay import PairResponse
from shared_utils.layout import STAGES, GlobalLayout
from shared_utils.maintainability import mi_score
from shared_utils.self_generation import SelfGenConfig, local_pairs, round_prompt, self_generate

PAPER, CORRECTED = protocol.resolve("paper"), protocol.resolve("corrected")


# --------------------------------------------------------------------------------------------
# The switch itself


def test_the_default_is_corrected_and_switches_override_one_by_one():
    assert protocol.resolve() == CORRECTED
    mixed = protocol.resolve("corrected", training_format="as_published")
    assert mixed.training_format == "as_published" and mixed.signature == "corrected"
    assert mixed.name == "corrected+training_format=as_published"
    assert protocol.resolve("paper", signature="paper") == PAPER  # no change, no new name
    with pytest.raises(ValueError, match="unknown protocol 'authors'"):
        protocol.resolve("authors")
    with pytest.raises(ValueError, match="protocol switch feedback='both'"):
        protocol.resolve(feedback="both")
    assert protocol.parse_overrides(["run-setup=false", "training_format=as_published"]) == {
        "run_setup": False, "training_format": "as_published"}


def test_recipes_carry_the_protocol_and_training_loads_float32_under_the_papers():
    assert recipes.load("qwen3-4b").protocol() == CORRECTED
    paper = recipes.load("qwen3-4b", protocol="paper")
    assert paper.protocol() == PAPER
    assert paper.training("stage1").load_dtype == "float32" and paper.training("stage1").protocol == "paper"
    assert recipes.load("qwen3-4b").training("stage2c").load_dtype is None
    ablation = recipes.load("qwen3-4b", {"protocol": {"switches": {"training_dtype": "float32"}}})
    assert ablation.protocol().name == "corrected+training_dtype=float32"


def test_the_runner_hands_the_protocol_to_every_notebook_but_evaluation_and_grpo(tmp_path):
    options = runner.RunOptions(model="smollm2-135m", protocol="paper", artifacts=tmp_path)
    recipe = recipes.load("smollm2-135m")
    layout = runner.artifact_layout(options, tmp_path)
    for stage, step in STAGES.items():
        for template in step.templates:
            params = runner.stage_parameters(options, stage, template, recipe, layout)
            assert ("protocol" in params) == (stage not in ("evaluation", "grpo")), (stage, template)


# --------------------------------------------------------------------------------------------
# 1. Preprocessing: the signature pattern


@pytest.mark.parametrize("code, paper, corrected", [
    ("def f (x):\n    return x", None, "def f (x)"),
    ("def helper(a):\n    return a\n\ndef main (a, b):\n    return helper(a) + b", "def helper(a)", "def main (a, b)"),
    ("def f(t): # e.g. f((1, 2))\n    return t", "def f(t): # e.g. f((1, 2))", "def f(t)"),
    ("def g(x):\n    return x", "def g(x)", "def g(x)"),
])
def test_signature_rules(code, paper, corrected):
    assert data.signature(code, "paper") == paper
    assert data.signature(code, "corrected") == corrected


def test_no_paper_signature_leaves_the_text_as_it_was():
    row = {"task_id": 1, "text": "Do it.", "code": "def f (x):\n    return x", "test_list": ["assert f(1) == 1"]}
    assert data.add_signature(row, "test", 0, "paper")["text"] == "Do it."
    assert data.add_signature(row, "test", 0)["text"] == "Do it." + data.SIGNATURE_TEMPLATE.format(sig="def f (x)")


def authors_text(row: dict) -> str:
    """The authors' preprocessing, written out independently."""
    matches = re.findall(r"def\s+[\w_]+\(.*\)\s*", row["code"])
    return row["text"] + (f"\nThe main function is defined by the function signature: {matches[-1].strip()}\n"
                          if matches else "")


def test_prepare_paper_gives_the_authors_texts_for_all_372_and_500_problems(tmp_path, mbpp_dir):
    written = data.prepare(mbpp_dir, tmp_path / "paper", "paper")
    corrected = data.prepare(mbpp_dir, tmp_path / "corrected")
    differing = {}
    for split, size in (("train", 372), ("test", 500)):
        source = {row["task_id"]: row for row in data.load_mbpp(mbpp_dir, split)}
        rows = data.load_problems(written[split])
        assert len(rows) == size
        assert all(row["text"] == authors_text(source[row["task_id"]]) for row in rows)
        ours = {row["task_id"]: row["text"] for row in data.load_problems(corrected[split])}
        differing[split] = sorted(row["task_id"] for row in rows if row["text"] != ours[row["task_id"]])
    assert differing == {"train": [966], "test": [32, 134, 160, 181, 318, 392]}
    recorded = json.loads((written["train"] / "provenance.json").read_text())
    assert recorded["protocol"]["name"] == "paper" and recorded["protocol"]["signature"] == "paper"


# --------------------------------------------------------------------------------------------
# 2, 3. Stage 1b/1c: implementations run and are wrapped as returned


PROBLEM = {"task_id": 7, "text": "Add two numbers.", "code": "def add(a, b):\n    return a + b",
           "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": "",
           "challenge_test_list": []}


def test_stage_1b_runs_the_generator_code_as_returned_under_the_papers_protocol():
    fenced = "```python\ndef add(a, b):\n    return a + b\n```"
    plain = "def add(a, b):\n    return b + a\n\n"
    responses = {7: PairResponse(7, fenced, plain)}
    kept, _ = preferences.check_pair_responses([PROBLEM], responses, generator="g", progress=False, protocol="paper")
    assert kept == []  # the fences are a syntax error when run as returned
    kept, _ = preferences.check_pair_responses([PROBLEM], responses, generator="g", progress=False)
    assert [row["code_output_2"] for row in kept] == ["def add(a, b):\n    return b + a"]

    responses = {7: PairResponse(7, "def add(a, b):\n    return a + b\n", plain)}
    (raw,), _ = preferences.check_pair_responses([PROBLEM], responses, generator="g", progress=False,
                                                 protocol="paper")
    assert (raw["code_output_1"], raw["code_output_2"]) == ("def add(a, b):\n    return a + b\n", plain)
    labelled = preferences.label_global([raw], pair_format="authors")[0]
    assert {labelled["chosen"], labelled["rejected"]} == {
        "```python\ndef add(a, b):\n    return a + b\n\n```", "```python\ndef add(a, b):\n    return b + a\n\n\n```"}
    assert labelled["prompt"] == [{"role": "system", "content": [{"type": "text", "text": prompts.SYSTEM_PROMPT}]},
                                  {"role": "user", "content": [{"type": "text", "text": "Add two numbers."}]}]


def test_the_shared_gemini_answers_labelled_both_ways(tmp_path, mbpp_dir, gemini_pairs):
    """Stage 1b+1c over the 238 shared answers: same pairs and choices, the paper's texts keep trailing newlines."""
    answers = files.read_jsonl(gemini_pairs)
    problems = data.preprocess([row for row in data.load_mbpp(mbpp_dir, "train") if "class" not in row["code"]],
                               "mbpp[train]", drop_classes=True, rule="paper")
    out = {name: GlobalLayout(tmp_path / name) for name in ("paper", "corrected")}
    for name, layout in out.items():
        data.save_dataset(problems, layout.train_problems)
        recipe = recipes.load(None, protocol=name)
        stages.global_pairs(layout, recipe, backend="replay", responses=gemini_pairs, progress=False)
        stages.label(layout.pairs, layout)
    paper, corrected = (preferences.load_rows(out[name].dataset) for name in ("paper", "corrected"))
    assert len(paper) == len(corrected) == len(answers) == 238
    by_id = {row["task_id"]: row for row in answers}
    problems_by_id = {row["task_id"]: row for row in problems}
    differing_texts = 0
    for ours, theirs in zip(corrected, paper):
        answer = by_id[theirs["task_id"]]
        first, second = answer["code_output_1"], answer["code_output_2"]
        chosen, rejected = (first, second) if mi_score(first) >= mi_score(second) else (second, first)
        assert (theirs["chosen"], theirs["rejected"]) == (f"```python\n{chosen}\n```", f"```python\n{rejected}\n```")
        assert theirs["prompt"][1]["content"] == [{"type": "text", "text": problems_by_id[theirs["task_id"]]["text"]}]
        assert ours["chosen_code"] == chosen.strip() and ours["rejected_code"] == rejected.strip()
        differing_texts += sum(mine[0]["content"] != published
                               for mine, published in ((ours["chosen"], theirs["chosen"]),
                                                       (ours["rejected"], theirs["rejected"])))
    assert differing_texts == 45  # answers ending in "\n": a blank line before the closing fence
    with pytest.raises(ValueError, match="pair_code=raw"):
        stages.label(out["paper"].pairs, out["paper"], "corrected")


# --------------------------------------------------------------------------------------------
# 4. Stage 1a: the Gemini prompt and matching answers by the id they name


def test_the_authors_gemini_prompt_and_matching_by_the_answered_task_id():
    from shared_utils.generation.pairs import _parse_inlined

    assert prompts.paper_global_pair_prompt(602, "Find it.") == (
        f"Task_ID:602\n\n{prompts.GLOBAL_PAIR_INSTRUCTION}\n\nFind it.")

    class Item:
        def __init__(self, task_id, answered):
            self.metadata, self.error = {"task_id": str(task_id)}, None
            self.response = type("R", (), {"text": json.dumps(
                {"task_id": answered, "code_output_1": "def a(): pass", "code_output_2": "def b(): pass"})})()

    swapped = [Item(1, 2), Item(2, 1)]
    by_request = _parse_inlined(swapped, [1, 2])
    assert not by_request[1].ok and "names task_id 2" in by_request[1].error
    by_answer = _parse_inlined(swapped, [1, 2], match_by_answer=True)
    assert by_answer[1].ok and by_answer[2].ok


# --------------------------------------------------------------------------------------------
# 5-8. Stage 2a/2b


TASK = 9002  # the demo set's max_of_list
FIRST_WRONG = "```python\ndef max_of_list(nums):\n    return nums[0]\n```"
SECOND_WRONG = "Try:\n```python\ndef max_of_list(nums):\n    return min(nums)\n```"
LATER_WRONG = "```python\ndef max_of_list(nums):\n    return None\n```"
GOOD = "```python\ndef max_of_list(nums):\n    return max(nums)\n```"


def sampling_of(name: str, **fields) -> SamplingConfig:
    """Two samples per prompt (unless ``fields`` say), with the code-end stop the protocol asks for."""
    return SamplingConfig(**{"n": 2, **fields}, stop_at_code_end=protocol.resolve(name).stop_at_code_end)


def replayed(tmp_path, answers: dict) -> Path:
    path = tmp_path / "earlier.jsonl"
    path.write_text("".join(json.dumps({"task_id": TASK, "round": r, "sample": s, "text": text, "tokens": 0}) + "\n"
                            for r, texts in answers.items() for s, text in enumerate(texts)))
    return path


def test_the_feedback_prompt_after_two_failing_rounds(tmp_path, monkeypatch):
    from shared_utils import generation

    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    answers = replayed(tmp_path, {0: [FIRST_WRONG, SECOND_WRONG], 1: [LATER_WRONG, FIRST_WRONG], 2: [GOOD, GOOD]})
    asked = []

    def recording(requests, **options):
        asked.extend(requests)
        return real(requests, **options)

    real = generation.generate
    monkeypatch.setattr(generation, "generate", recording)
    users = {}
    for name in ("paper", "corrected"):
        asked.clear()
        self_generate([problem], sampling=sampling_of(name), config=SelfGenConfig(rounds=3, protocol=name),
                      checkpoint=tmp_path / f"{name}.jsonl", progress=False, backend="replay", source=answers)
        users[name] = [request.messages[-1]["content"] for request in asked]
    # The paper: the notice, a label, then the latest round's last failing answer as generated, and "\n".
    assert users["paper"] == [
        problem["text"],
        f"{problem['text']}\n{prompts.RETRY_FEEDBACK}\nFailed solution:\n{SECOND_WRONG}\n",
        f"{problem['text']}\n{prompts.RETRY_FEEDBACK}\nFailed solution:\n{FIRST_WRONG}\n",
    ]
    # Ours: always the first failure's extracted code, unlabelled.
    first = "def max_of_list(nums):\n    return nums[0]"
    assert users["corrected"] == [problem["text"]] + [f"{problem['text']}\n{prompts.RETRY_FEEDBACK}\n{first}"] * 2


def test_stage_2a_extraction_and_mi_text_follow_the_protocol(tmp_path):
    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    prose = "Here you go:\n```python\ndef max_of_list(nums):\n    return max(nums)\n```\nDone."
    answers = replayed(tmp_path, {0: [prose, GOOD]})
    results = {name: self_generate([problem], sampling=sampling_of(name),
                                   config=SelfGenConfig(rounds=1, protocol=name), checkpoint=tmp_path / f"{name}.jsonl",
                                   progress=False, backend="replay", source=answers)
               for name in ("paper", "corrected")}
    assert len(results["corrected"].passing[TASK]) == 2
    assert results["paper"].passing[TASK] == ["def max_of_list(nums):\n    return max(nums)"]  # prose fails
    # The paper scored MI on the answer without backticks: "python" stays as a first line.
    from shared_utils.self_generation import mi_text

    assert mi_text(GOOD, "code", PAPER) == "python\ndef max_of_list(nums):\n    return max(nums)\n"
    assert mi_text(GOOD, "code", CORRECTED) == "code"


def test_argmax_pairing_on_ties_and_equal_samples():
    problem = {**PROBLEM, "task_id": 1}
    a, b, c = ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a+b",
               "def add(a, b):\n    # sum\n    total = a + b\n    return total")
    key = {a: 50.0, b: 50.0, c: 40.0}.__getitem__
    # Ties: the first maximum and the first minimum (numpy's argmax/argmin).
    (row,) = preferences.label_local([problem], {1: [c, a, b]}, key=key, pairing="argmax")
    assert (row["chosen_code"], row["rejected_code"]) == (a, c)
    # Two different samples with the same MI: the paper drops the task (argmax == argmin) ...
    assert preferences.label_local([problem], {1: [a, b]}, key=key, pairing="argmax") == []
    # ... and keeps whitespace-only twins with different MI, which ours counts as one sample.
    twin = a + "\n"
    key2 = {a: 50.0, twin: 49.0}.__getitem__
    assert len(preferences.label_local([problem], {1: [a, twin]}, key=key2, pairing="argmax")) == 1
    assert preferences.label_local([problem], {1: [a, twin]}, key=key2) == []


def test_local_pairs_score_the_papers_text_and_record_its_keys(tmp_path):
    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    longer = "```python\ndef max_of_list(nums):\n    best = nums[0]\n    for n in nums:\n        if n > best:\n" \
             "            best = n\n    return best\n```"
    answers = replayed(tmp_path, {0: [GOOD, longer]})
    result = self_generate([problem], sampling=sampling_of("paper"), config=SelfGenConfig(rounds=1, protocol="paper"),
                           checkpoint=tmp_path / "c.jsonl", progress=False, backend="replay", source=answers)
    (row,) = local_pairs([problem], result, protocol="paper")
    assert row["key_chosen"] == mi_score(GOOD.replace("```", ""))
    assert row["key_rejected"] == mi_score(longer.replace("```", ""))
    assert row["chosen"] == "```python\ndef max_of_list(nums):\n    return max(nums)\n```"


def test_twins_in_whitespace_or_comments_under_each_pairing():
    """argmax and argmin name two different samples only when the MIs differ (all equal: both are index 0).
    The edge case is twins: whitespace leaves radon's MI unchanged, comments raise it."""
    problem = {**PROBLEM, "task_id": 1}
    plain, blank_lines, spacing = ("def add(a, b):\n    return a + b", "def add(a, b):\n\n    return a + b\n",
                                   "def add(a, b):\n    return a+b")
    commented = "def add(a, b):\n    # the sum of the two\n    return a + b"
    assert mi_score(plain) == mi_score(blank_lines) == mi_score(spacing) < mi_score(commented)
    for pairing in ("argmax", "distinct"):
        assert preferences.label_local([problem], {1: [plain, blank_lines]}, pairing=pairing) == []
        (row,) = preferences.label_local([problem], {1: [plain, commented]}, pairing=pairing)
        assert (row["chosen_code"], row["rejected_code"]) == (commented, plain)
    # Spacing inside a line survives the whitespace normalisation: ours pairs the twins at a gap of 0 unless
    # min_gap > 0; the paper's argmax == argmin drops them.
    assert preferences.label_local([problem], {1: [plain, spacing]}, pairing="argmax") == []
    (row,) = preferences.label_local([problem], {1: [plain, spacing]}, pairing="distinct")
    assert (row["chosen_code"], row["rejected_code"], row["mi_gap"]) == (plain, spacing, 0.0)
    assert preferences.label_local([problem], {1: [plain, spacing]}, pairing="distinct", min_gap=0.1) == []


# --------------------------------------------------------------------------------------------
# 12-14. Stage 2a's generation and answers, against the authors' notebook worked by hand:
#   generated_solution = decoded.split(<chat marker>)[-1].strip()   # model.generate ran to EOS
#   code = generated_solution.replace("```python", "").replace("```", "").strip()
#   ... valid_solutions.append(generated_solution)


SAID = GOOD + "\nIt returns the largest number.\n"  # what a model says when nothing stops it at the block's end


def test_stage_2a_runs_past_the_code_block_only_under_the_papers_protocol(tiny_model_factory, tmp_path):
    import dataclasses

    from shared_utils.models import load_model
    from stand_ins import Scripted

    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    tiny = load_model(str(tiny_model_factory("smollm2-135m")))
    script = tiny.tokenizer(SAID, add_special_tokens=False).input_ids + [tiny.tokenizer.eos_token_id]

    def run(name, sampling):
        return self_generate([problem], dataclasses.replace(tiny, model=Scripted(tiny.model, script)),
                             sampling=sampling, config=SelfGenConfig(rounds=1, protocol=name),
                             checkpoint=tmp_path / f"{name}.jsonl", progress=False)

    results = {name: run(name, sampling_of(name, n=1, max_new_tokens=len(script) + 5))
               for name in ("paper", "corrected")}
    assert results["corrected"].passing_texts[TASK] == [GOOD]  # stopped at the closing fence
    # The authors' answer ran to EOS and was stripped; their extraction kept the prose, so it failed.
    assert results["paper"].passing[TASK] == []
    assert results["paper"].failed_texts[TASK] == [GOOD + "\nIt returns the largest number."]
    assert results["paper"].failed[TASK] == ["def max_of_list(nums):\n    return max(nums)\n\nIt returns the largest number."]
    with pytest.raises(ValueError, match="stop_at_code_end=True, but protocol 'paper'"):
        run("paper", SamplingConfig(n=1))


def test_the_papers_feedback_quotes_the_answer_stripped(tmp_path):
    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    padded = "\n" + FIRST_WRONG + "\n\n"
    result = self_generate([problem], sampling=sampling_of("paper"), config=SelfGenConfig(rounds=1, protocol="paper"),
                           checkpoint=tmp_path / "c.jsonl", progress=False, backend="replay",
                           source=replayed(tmp_path, {0: [padded, padded]}))
    assert round_prompt(problem, result, 1, True, PAPER) == (
        f"{problem['text']}\n{prompts.RETRY_FEEDBACK}\nFailed solution:\n{FIRST_WRONG}\n")


def test_the_papers_local_pairs_store_the_answers_as_generated(tmp_path):
    """chosen/rejected are the stripped answers themselves, not the extracted code in a new python fence."""
    problem = next(p for p in data.demo_problems("train") if p["task_id"] == TASK)
    bare = "def max_of_list(nums):\n    return max(nums)\n"  # no fence at all
    untagged = "```\ndef max_of_list(nums):\n    best = nums[0]\n    for n in nums:\n        if n > best:\n" \
               "            best = n\n    return best\n```\n\n"  # a fence without "python"
    result = self_generate([problem], sampling=sampling_of("paper"), config=SelfGenConfig(rounds=1, protocol="paper"),
                           checkpoint=tmp_path / "c.jsonl", progress=False, backend="replay",
                           source=replayed(tmp_path, {0: [bare, untagged]}))
    (row,) = local_pairs([problem], result, protocol="paper")
    assert (row["chosen"], row["rejected"]) == (bare.strip(), untagged.strip())
    assert row["chosen_code"] == bare.strip() and row["rejected_code"].startswith("def max_of_list")
    (fenced,) = local_pairs([problem], result, protocol=protocol.resolve("paper", local_answer="fenced"))
    assert fenced["chosen"] == "```python\n" + bare.strip() + "\n```"
    assert fenced["rejected"] == "```python\n" + row["rejected_code"] + "\n```"


# --------------------------------------------------------------------------------------------
# 9. Execution: exec(code, {}) and no set-up code


MAIN_BLOCK = "def add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    raise SystemExit('demo run')\n"


def test_a_main_block_runs_only_under_the_corrected_protocol():
    completions = {7: [MAIN_BLOCK]}
    frames = {name: scoring.score_completions(completions, [PROBLEM], protocol=name, progress=False)
              for name in ("paper", "corrected")}
    assert frames["paper"]["passed"].tolist() == [True]
    assert frames["corrected"]["passed"].tolist() == [False]


def test_mbpp_set_up_code_runs_only_under_the_corrected_protocol(mbpp_dir):
    (problem,) = [row for row in data.load_mbpp(mbpp_dir, "test") if row["task_id"] == 367]
    frames = {name: scoring.score_completions({367: [problem["code"]]}, [problem], protocol=name, progress=False)
              for name in ("paper", "corrected")}
    assert frames["paper"]["passed"].tolist() == [False]  # `root` is never built: unsolvable, as published
    assert frames["corrected"]["passed"].tolist() == [True]


def test_evaluate_scores_every_protocol_side_by_side(tmp_path, capsys):
    from shared_utils.cli import main

    completions = tmp_path / "run.json"
    completions.write_text(json.dumps([{"task_id": 7, "generated_sequences": [
        MAIN_BLOCK, "Sure:\n```python\ndef add(a, b):\n    return a + b\n```"]}]))
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps(PROBLEM) + "\n")
    assert main(["evaluate", "--completions", str(completions), "--problems", str(problems), "--k", "1",
                 "--json"]) == 0
    summaries = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {name: s["passed_candidates"] for name, s in summaries.items()} == {"paper": 1, "corrected": 0, "fenced": 1}
    assert main(["evaluate", "--completions", str(completions), "--problems", str(problems), "--k", "1",
                 "--protocol", "paper", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == ["paper"]


def test_humaneval_keeps_its_test_prelude_under_the_papers_protocol():
    (problem,) = data.humaneval_problems()[:1]
    assert protocol.setup_code(problem, PAPER) == problem["test_setup_code"] != ""
    assert protocol.setup_code({**PROBLEM, "test_setup_code": "x = 1"}, PAPER) == ""
    assert protocol.setup_code({**PROBLEM, "test_setup_code": "x = 1"}, CORRECTED) == "x = 1"


def test_the_authors_rows_train_in_either_format():
    from shared_utils.training import formats

    answers = {**PROBLEM, "code_output_1": "def add(a, b):\n    return a + b\n",
               "code_output_2": "def add(a, b):\n    return b + a"}
    row = preferences.label_global([answers], pair_format="authors")[0]
    chat = preferences.label_global([answers])[0]
    # As chat: exactly our own rows' messages, the trailing newline aside.
    converted = formats.conversational_example(row)
    assert converted["prompt"] == chat["prompt"]
    assert converted["chosen"] == [{"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n\n```"}]
    # As published: the common prefix of the two strings (its last space moved to the answers), the task gone.
    published = formats.as_published_example(row)
    assert published["prompt"] == "```python\ndef add(a, b):\n    return"
    assert (published["chosen"], published["rejected"]) == (" a + b\n\n```", " b + a\n```")


def test_distinct_pairing_ranks_by_the_scored_texts_too():
    """An ablation (paper MI text, corrected pairing) must rank by the text the switch names."""
    problem = {**PROBLEM, "task_id": 1}
    a, b = "def add(a, b):\n    return a + b", "def add(a, b):\n    total = a + b\n    return total"
    key = {a: 50.0, b: 40.0, "A": 10.0, "B": 90.0}.__getitem__
    (by_code,) = preferences.label_local([problem], {1: [a, b]}, key=key)
    (by_text,) = preferences.label_local([problem], {1: [a, b]}, key=key, scored={1: ["A", "B"]})
    assert (by_code["chosen_code"], by_code["key_chosen"]) == (a, 50.0)
    assert (by_text["chosen_code"], by_text["key_chosen"], by_text["key_rejected"]) == (b, 90.0, 10.0)
