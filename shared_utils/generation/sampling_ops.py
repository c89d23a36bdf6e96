"""What every sampling loop of the ``local`` backend shares: the warpers, the final text of a sample, the device."""

from __future__ import annotations

from shared_utils.generation.core import SamplingConfig, code_end


def device_of(model):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def warp(logits, temperature: float, top_k: int, top_p: float):
    """transformers' TemperatureLogitsWarper, TopKLogitsWarper and TopPLogitsWarper, in that order."""
    import torch

    logits = logits.float()
    if temperature and temperature != 1.0:
        logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        threshold = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        logits = logits.masked_fill(remove.scatter(1, sorted_indices, remove), float("-inf"))
    return logits


def final_text(tokenizer, tokens: list[int], stopped: str | None, sampling: SamplingConfig) -> str:
    """A sample's text: as cut at its code end when the stop rule ended it, else decoded (and cut, if it closes)."""
    if stopped is not None:
        return stopped
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    end = code_end(text) if sampling.stop_at_code_end else None
    return text if end is None else text[:end]
