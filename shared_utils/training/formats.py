"""What DPO trains on: our chat-formatted pairs, or the examples the authors' TRL 0.23 actually built.

``conversational`` (the default)
    The stored rows as they are: the system prompt and the task as chat messages, the fenced
    answers as the assistant's turn; TRL renders them with the model's chat template.
``as_published``
    The authors stored the same chat prompt but the answers as plain strings. TRL 0.23's
    ``DPOTrainer._prepare_dataset`` first maps ``maybe_extract_prompt`` over the rows: a
    conversational prompt next to non-conversational answers is discarded and replaced by
    ``extract_prompt`` on the two answer strings, i.e. their longest common character prefix
    (one character shorter when the first difference follows a space), with the remainders as
    chosen/rejected. Every prompt therefore starts with "```python\\n" and holds no task text.
    TRL 0.23 then tokenised each string on its own without special tokens (no BOS, no chat
    template), appended the EOS id to both answers, and kept the last ``max_prompt_length`` prompt
    tokens: 1024, as the authors' ``DPOConfig`` set it (TRL 0.23's default was 512);
    ``max_completion_length`` they left unset.

TRL 1.16 no longer extracts a prompt when one is given, and tokenises plain text differently:
with the tokenizer's special tokens (a BOS for Gemma), and prompt and answer together, so tokens
merge across a prefix that ends mid-identifier. The extraction below calls TRL's own
``maybe_extract_prompt`` (its code is unchanged from 0.23), and ``AsPublishedDPOTrainer``
tokenises with 0.23's rule instead of 1.16's; the rest (collation, ``max_length`` truncation of
prompt + answer, the loss) is TRL 1.16's. That truncation keeps the start where 0.23's default
kept the end, which matters only for a pair longer than ``max_length``; no published pair is.
"""

from __future__ import annotations

from trl import DPOTrainer, maybe_extract_prompt

from shared_utils.prompts import answer_text

AUTHORS_MAX_PROMPT_LENGTH = 1024  # the authors' DPOConfig(max_prompt_length=1024); TRL 1.16 has no such field


def conversational_example(row: dict) -> dict:
    """A stored row in TRL's conversational format, whichever shape it was stored in
    (``preferences.preference_row``: ours, or the authors' text parts and plain answers)."""
    return {"prompt": [{"role": m["role"], "content": answer_text(m["content"])} for m in row["prompt"]],
            "chosen": [{"role": "assistant", "content": answer_text(row["chosen"])}],
            "rejected": [{"role": "assistant", "content": answer_text(row["rejected"])}]}


def conversational_pairs(pairs):
    """``conversational_example`` over a ``datasets.Dataset``; our own rows come back unchanged."""
    if not isinstance(pairs[0]["chosen"], str):
        return pairs
    return pairs.map(conversational_example, remove_columns=pairs.column_names)


def as_published_example(row: dict) -> dict:
    """The plain-text prompt/chosen/rejected TRL 0.23 trained on for one stored preference row."""
    example = {"prompt": row["prompt"], "chosen": answer_text(row["chosen"]), "rejected": answer_text(row["rejected"])}
    return maybe_extract_prompt(example)


def as_published_pairs(pairs):
    """``as_published_example`` over a ``datasets.Dataset`` of stored rows (their other columns dropped)."""
    return pairs.map(as_published_example, remove_columns=pairs.column_names)


def tokenize_as_trl_023(example: dict, tokenizer) -> dict:
    """TRL 0.23's ``DPOTrainer.tokenize_row`` for a decoder-only model at the authors' lengths, under TRL 1.16's
    column names."""
    prompt_ids = tokenizer(example["prompt"], add_special_tokens=False)["input_ids"]
    chosen_ids = tokenizer(example["chosen"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    rejected_ids = tokenizer(example["rejected"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"prompt_ids": prompt_ids[-AUTHORS_MAX_PROMPT_LENGTH:], "chosen_ids": chosen_ids,
            "rejected_ids": rejected_ids}


class AsPublishedDPOTrainer(DPOTrainer):
    """A ``DPOTrainer`` that tokenises plain-text pairs as TRL 0.23 did (module docstring)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset.map(tokenize_as_trl_023, fn_kwargs={"tokenizer": self._tokenizer},
                           remove_columns=["prompt", "chosen", "rejected"],
                           desc=f"Tokenising {dataset_name} dataset as TRL 0.23 did")
