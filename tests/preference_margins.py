"""Did DPO do its job? Log-probabilities of chosen vs rejected answers under a model."""

from __future__ import annotations


def completion_logp(model, tokenizer, prompt: list[dict], completion: list[dict]) -> float:
    """Summed log-probability of the completion's tokens given the prompt, both rendered by the chat template."""
    import torch

    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("the chat template renders the prompt differently inside the full conversation")
    ids = tokenizer(full_text, add_special_tokens=False, return_tensors="pt").input_ids.to(model.device)
    start = len(tokenizer(prompt_text, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logps = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
    token_logps = logps.gather(-1, ids[0, 1:, None])[:, 0]
    return float(token_logps[start - 1:].sum())


def preference_margins(model, tokenizer, pairs) -> list[float]:
    """log p(chosen) - log p(rejected) for every pair; DPO should raise these on its training pairs."""
    return [completion_logp(model, tokenizer, row["prompt"], row["chosen"])
            - completion_logp(model, tokenizer, row["prompt"], row["rejected"]) for row in pairs]
