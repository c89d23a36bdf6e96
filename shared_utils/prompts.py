"""The paper's prompts and every chat-template quirk, handled in one place.

Quirks (``ChatQuirks``, one per model in ``models.REGISTRY``): Gemma 3 has no system turn, so the system text is folded
into the first user turn exactly as Gemma's own template does; templates that already emit
a BOS token must be tokenised without adding another; Qwen3-Instruct-2507 must not think.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ChatQuirks:
    """How a model's chat template differs from the plain system/user/assistant form."""

    system_role: bool = True
    template_kwargs: dict = dataclasses.field(default_factory=dict)
    chat_template: str | None = None  # file under resources/chat_templates for tiny look-alikes


SYSTEM_PROMPT = (
    "You are a code generation model. Your task is to generate code snippets based on user prompts. "
    "You are to only write the full code for the required function and stop after returning the function output."
)
RETRY_FEEDBACK = "The previous solution (provided below) did not pass all test cases. Please try again."
GLOBAL_PAIR_INSTRUCTION = (
    "Create 2 different implementations of the following function as specified in the following requirements. "
    "Ensure that both implementations are functionally correct, but differ in their approach and structure. "
    "Follow Python best practices."
)


def messages(user: str, *, system: str = SYSTEM_PROMPT) -> list[dict]:
    """Chat messages for one prompt: the paper's system prompt, then the task. Quirks come at ``render``."""
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def answer_text(answer) -> str:
    """An answer's text however it is held: a string, a message (``{"role", "content"}``), a content part
    (``{"type": "text", "text"}``) or a list of them (TRL's chat completions, the authors' one-message answers)."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, (list, tuple)):
        return "".join(answer_text(item) for item in answer)
    if isinstance(answer, dict):
        return answer_text(answer["content"]) if "content" in answer else str(answer.get("text", ""))
    return ""


def fold_system(chat: list[dict]) -> list[dict]:
    """For templates without a system role: the system text leads the first user turn."""
    if not chat or chat[0]["role"] != "system":
        return chat
    system, rest = chat[0]["content"], list(chat[1:])
    if rest and rest[0]["role"] == "user":
        return [{"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


def retry_prompt(text: str, failed_solution: str) -> str:
    """The paper's Stage-2 feedback prompt: the task, the notice, then one failed solution."""
    return f"{text}\n{RETRY_FEEDBACK}\n{failed_solution}"


def paper_retry_prompt(text: str, failed_answer: str) -> str:
    """The authors' exact feedback prompt: the notice, a "Failed solution:" label, the raw answer, a newline."""
    return f"{text}\n{RETRY_FEEDBACK}\nFailed solution:\n{failed_answer}\n"


def global_pair_prompt(text: str) -> str:
    return f"{GLOBAL_PAIR_INSTRUCTION}\n{text}"


def paper_global_pair_prompt(task_id, text: str) -> str:
    """The authors' Gemini prompt: the task id leads, and the answer names it back."""
    return f"Task_ID:{task_id}\n\n{GLOBAL_PAIR_INSTRUCTION}\n\n{text}"


def render(tokenizer, chat: list[dict], quirks: ChatQuirks | None = None) -> str:
    """The generation prompt as text, rendered by the model's own chat template with its quirks applied.

    The one place quirks act on a prompt (``models.LoadedModel.render`` and the vLLM backend call it).
    """
    if quirks is not None and not quirks.system_role:
        chat = fold_system(chat)
    kwargs = dict(quirks.template_kwargs) if quirks is not None else {}
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, **kwargs)


def encode(tokenizer, texts: list[str]):
    """Tokenise rendered prompts for batched generation: left padding, no second BOS."""
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


# Qwen3-Instruct-2507's template (inherited from the hybrid Qwen3 one) writes an empty
# "<think>\n\n</think>\n\n" before a conversation's final assistant turn, but the model never
# generates one. Rendering DPO answers that way would train on text the model does not produce.
_FINAL_TURN_THINK = "{%- if loop.last or (not loop.last and reasoning_content) %}"


def for_training(tokenizer):
    """The tokenizer with answers rendered as the model generates them (no empty think block).

    Only Qwen3-2507's final-turn branch changes (to Unsloth's ``if reasoning_content``);
    generation prompts render exactly as before, and other templates are left alone.
    """
    template = tokenizer.chat_template
    if isinstance(template, str) and _FINAL_TURN_THINK in template:
        tokenizer.chat_template = template.replace(_FINAL_TURN_THINK, "{%- if reasoning_content %}")
    return tokenizer
