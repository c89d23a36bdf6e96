"""What DPO trains on (``shared_utils.training.formats``): the authors' TRL 0.23 replaced the chat
prompt by the longest common prefix of the two answer strings, and tokenised the plain text
without special tokens. Pinned on constructed answers, on the 238 published Gemini pairs, and
through one real training step.
"""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
from datasets import Dataset

from shared_utils import data, files, prompts, recipes
from shared_utils.cli import main
from shared_utils.preferences import label_global, preference_row
from shared_utils.training import build_trainer, formats, load_pairs, train_dpo
from test_training_reference import toy_rows, toy_settings

TASK = "Write a function to find the maximum of nth column from the given tuple list."
LIST_COMPREHENSION = "def max_of_nth(test_list, N):\n    return max(sub[N] for sub in test_list)"
LOOP = ("def max_of_nth(lst, n):\n    best = lst[0][n]\n    for row in lst:\n        best = max(best, row[n])\n"
        "    return best")


def stored_row(chosen: str, rejected: str) -> dict:
    return preference_row({"task_id": 611, "text": TASK}, chosen, rejected, keys=(len(chosen), len(rejected)))


def extracted(chosen: str, rejected: str) -> dict:
    return formats.as_published_example(stored_row(chosen, rejected))


def test_the_prompt_is_the_answers_common_prefix_and_the_task_is_gone():
    example = extracted(LIST_COMPREHENSION, LOOP)
    assert example == {"prompt": "```python\ndef max_of_nth(",
                       "chosen": "test_list, N):\n    return max(sub[N] for sub in test_list)\n```",
                       "rejected": LOOP.removeprefix("def max_of_nth(") + "\n```"}


def test_a_space_before_the_first_difference_moves_to_the_answers():
    example = extracted("x = 1", "x = 2")
    assert example == {"prompt": "```python\nx =", "chosen": " 1\n```", "rejected": " 2\n```"}


def test_identical_answers_keep_only_their_last_character_as_answers():
    """TRL 0.23's loop finds no difference and stops one character short of the end."""
    assert extracted("x = 1", "x = 1") == {"prompt": "```python\nx = 1\n``", "chosen": "`", "rejected": "`"}


def test_answers_differing_at_once_have_an_empty_prompt():
    row = stored_row("a = 1", "b = 1")
    row["chosen"][0]["content"], row["rejected"][0]["content"] = "a = 1", "b = 1"
    assert formats.as_published_example(row) == {"prompt": "", "chosen": "a = 1", "rejected": "b = 1"}


def test_a_prefix_of_the_other_answer_loses_its_last_character_to_the_answers():
    row = stored_row("x", "x")
    row["chosen"][0]["content"], row["rejected"][0]["content"] = "return x", "return x + 1"
    assert formats.as_published_example(row) == {"prompt": "return ", "chosen": "x", "rejected": "x + 1"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from shared_utils.models import embedded_model_dir

    return AutoTokenizer.from_pretrained(embedded_model_dir())


def test_tokenised_as_trl_023_each_string_alone_with_eos_and_no_template(tokenizer):
    example = {"prompt": "```python\ndef find_max", "chosen": "(xs):\n    return max(xs)\n```",
               "rejected": "imum(xs):\n    return sorted(xs)[-1]\n```"}
    ids = formats.tokenize_as_trl_023(example, tokenizer)
    alone = {side: tokenizer(text, add_special_tokens=False)["input_ids"] for side, text in example.items()}
    assert ids == {"prompt_ids": alone["prompt"], "chosen_ids": alone["chosen"] + [tokenizer.eos_token_id],
                   "rejected_ids": alone["rejected"] + [tokenizer.eos_token_id]}
    # Together, "find_max" + "imum" tokenise differently: TRL 1.16's plain-text path would not give these ids.
    joint = tokenizer(example["prompt"] + example["rejected"], add_special_tokens=False)["input_ids"]
    assert joint != ids["prompt_ids"] + ids["rejected_ids"][:-1]
    assert "<|im_start|>" not in tokenizer.decode(ids["prompt_ids"] + ids["chosen_ids"])


def test_no_bos_even_where_the_tokenizer_adds_one():
    """Gemma's tokenizer adds a BOS; TRL 0.23 passed ``add_special_tokens=False`` for decoder-only models."""
    from transformers import AutoTokenizer

    from shared_utils.models import embedded_model_dir

    with_bos = AutoTokenizer.from_pretrained(embedded_model_dir(), add_bos_token=True)
    assert with_bos("x")["input_ids"][0] == with_bos.bos_token_id
    ids = formats.tokenize_as_trl_023({"prompt": "```python\nx =", "chosen": " 1", "rejected": " 2"}, with_bos)
    assert with_bos.bos_token_id not in ids["prompt_ids"] + ids["chosen_ids"] + ids["rejected_ids"]


def test_a_long_prompt_keeps_its_last_1024_tokens_as_the_authors_config_said(tokenizer):
    """The authors' DPOConfig set max_prompt_length=1024: a 600-token prompt (cut by TRL 0.23's default of 512)
    stays whole, a 1100-token one keeps its end."""
    whole = formats.tokenize_as_trl_023({"prompt": " a" * 600, "chosen": " b" * 600, "rejected": " c"}, tokenizer)
    assert whole["prompt_ids"] == tokenizer(" a" * 600, add_special_tokens=False)["input_ids"]
    assert len(whole["chosen_ids"]) == 601  # answers are not truncated here (max_completion_length was unset)
    long = formats.tokenize_as_trl_023({"prompt": " z" + " a" * 1100, "chosen": " b", "rejected": " c"}, tokenizer)
    assert long["prompt_ids"] == tokenizer(" a" * 1024, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------------------
# The 238 published Gemini pairs, labelled as the authors did


@pytest.fixture(scope="module")
def published_examples(mbpp_dir, gemini_pairs, tmp_path_factory):
    """The authors' chosen/rejected: each generator answer unchanged (trailing newlines kept) in a python
    fence, the higher MI chosen, ties keeping the first; then TRL 0.23's prompt extraction."""
    problems = {problem["task_id"]: problem
                for problem in data.load_problems(data.prepare(mbpp_dir, tmp_path_factory.mktemp("mbpp"))["train"])}
    answers = files.read_jsonl(gemini_pairs)
    rows = label_global([{**problems[answer["task_id"]], **answer} for answer in answers])
    return [(problems[row["task_id"]], row, formats.as_published_example(row)) for row in rows]


def test_no_published_prompt_keeps_any_task_text(published_examples):
    assert len(published_examples) == 238
    for problem, row, example in published_examples:
        task_sentence = problem["text"].splitlines()[0]
        assert task_sentence not in example["prompt"] and prompts.SYSTEM_PROMPT not in example["prompt"]
        assert "signature:" not in example["prompt"]
        assert example["prompt"].startswith("```python\n")
        assert row["chosen"][0]["content"] == example["prompt"] + example["chosen"]
        assert row["rejected"][0]["content"] == example["prompt"] + example["rejected"]


def test_published_prompt_lengths(published_examples):
    lengths = [len(example["prompt"]) for _, _, example in published_examples]
    assert sum(length == len("```python\n") for length in lengths) == 69  # the fence alone
    assert (min(lengths), statistics.median(lengths), max(lengths)) == (10, 92, 206)
    # Both remainders start with a space exactly where the rule moved one out of the prompt.
    trailing_space_rule = sum(example["chosen"].startswith(" ") and example["rejected"].startswith(" ")
                              for _, _, example in published_examples)
    assert trailing_space_rule == 131
    # What the prompt holds instead of the task: the start of the answer itself.
    assert sum("def " in example["prompt"] for _, _, example in published_examples) == 166
    assert sum('"""' in example["prompt"] for _, _, example in published_examples) == 157  # into Gemini's docstring


def test_published_pairs_fit_max_length_and_tokenise_apart(published_examples, tokenizer):
    """No pair reaches the recipe's max_length, so TRL 0.23's keep_end and 1.16's keep_start truncation agree;
    tokenising prompt and answer together, as TRL 1.16 does plain text, changes 41 of the 476 sequences."""
    longest, merged = 0, 0
    for _, _, example in published_examples:
        ids = formats.tokenize_as_trl_023(example, tokenizer)
        for side in ("chosen", "rejected"):
            sequence = ids["prompt_ids"] + ids[f"{side}_ids"]
            longest = max(longest, len(sequence))
            merged += tokenizer(example["prompt"] + example[side] + tokenizer.eos_token)["input_ids"] != sequence
    assert longest == 587 < recipes.load().training("stage1").dpo["max_length"]
    assert merged == 41


# --------------------------------------------------------------------------------------------
# Training on the as-published examples


def test_the_format_is_a_protocol_switch_of_recipes_and_the_train_verb(train_calls, tmp_path):
    assert recipes.load().training("stage1").training_format == "conversational"
    assert recipes.load(None, protocol="paper").training("stage2c").training_format == "as_published"
    stage2c = recipes.load(None, {"protocol": {"switches": {"training_format": "as_published"}}}).training("stage2c")
    assert stage2c.training_format == "as_published" and stage2c.as_dict()["training_format"] == "as_published"
    with pytest.raises(ValueError, match="training_format must be one of"):
        dataclasses.replace(stage2c, training_format="plain")
    assert main(["train", "--model", "some/hub-model", "--dataset", str(tmp_path), "--out", str(tmp_path / "a"),
                 "--switch", "training_format=as_published", "--beta", "0.2"]) == 0
    assert train_calls["settings"].training_format == "as_published" and train_calls["settings"].dpo["beta"] == 0.2


@pytest.mark.slow
def test_the_trainer_sees_trl_023s_token_ids(tiny_model_factory, tmp_path):
    pairs = load_pairs(Dataset.from_list(toy_rows(2)))
    settings = dataclasses.replace(toy_settings("base"), training_format="as_published")
    trainer = build_trainer(str(tiny_model_factory("smollm2-135m")), pairs, tmp_path / "work", settings=settings,
                            progress=False)
    tokenizer = trainer.processing_class
    expected = [formats.tokenize_as_trl_023(formats.as_published_example(row), tokenizer) for row in pairs]
    assert [{key: row[key] for key in ("prompt_ids", "chosen_ids", "rejected_ids")} for row in trainer.train_dataset] \
        == expected
    assert tokenizer.decode(expected[0]["prompt_ids"]) == "```python\ndef f("


@pytest.mark.slow
def test_an_as_published_adapter_records_its_format(tiny_model_factory, tmp_path):
    settings = dataclasses.replace(toy_settings("base"), training_format="as_published")
    out = tmp_path / "adapter"
    result = train_dpo(str(tiny_model_factory("smollm2-135m")), Dataset.from_list(toy_rows(4)), out,
                       settings=settings, progress=False)
    record = json.loads((out / "provenance.json").read_text())
    assert record["training_format"] == "as_published" and record["global_step"] == 1
    assert "Training format: as_published" in (out / "README.md").read_text()
    assert result.metrics["loss"] > 0
