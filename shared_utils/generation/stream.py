"""Continuous batching for the ``local`` backend: a fixed number of rows, each refilled when its sample ends.

``local.sample`` starts all of a batch's samples together and drops rows as they finish, so with
answers of varying length the batch empties long before its longest sample ends. Here a batch
holds at most ``rows`` samples in flight; when one ends, the next pending sample takes its row
(its prompt is prefilled once per prompt and its keys/values written into the row's slot of the
cache, right-aligned with the others), so the matrix products keep their full width. Rows sit
at different positions: each row has its own position ids and attention mask, and positions no
live row attends to are dropped whenever the cache is laid out again.

Every sample draws from its own random stream (``seeds``: one per sample, one uniform number per
token, inverse-CDF sampling over the same warped distribution as ``local.sample``), so which
row a sample runs in and what runs beside it do not change its draws. Its logits can still
differ in the last bits with the batch around it (matrix kernels and attention block by shape),
so the texts are reproducible for the same requests, seed and settings, but not equal to
``local.sample``'s, whose draws come from one generator shared by the batch.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from shared_utils import prompts
from shared_utils.generation.core import SamplingConfig, code_end

GROW_BY = 64  # spare positions laid out at a time (a re-layout copies the cache once per this many steps)


def sample_stream(model, tokenizer, texts: list[str], rows: list[int], seeds: list[int], sampling: SamplingConfig, *,
                  width: int, eos_ids: set[int], top_k: int = 0, tick_mask=None,
                  on_done: Callable[[int, str, int], None] | None = None) -> list[tuple[str, int]]:
    """Sample one sequence per entry of ``rows`` (an index into ``texts``, in the order given), at most
    ``width`` at a time; ``seeds[i]`` seeds sample ``i``. ``on_done(i, text, tokens)`` as each ends."""
    import torch

    from shared_utils.generation.kv_cache import SlackCache, SlackLayer
    from shared_utils.generation.sampling_ops import device_of, final_text, warp

    device = device_of(model)
    count = len(rows)
    width = max(1, min(width, count))
    limit = sampling.max_new_tokens
    sampled = bool(sampling.temperature and sampling.temperature > 0)
    eos = torch.tensor(sorted(eos_ids), device=device) if eos_ids else None
    ticks = tick_mask.to(device) if (tick_mask is not None and sampling.stop_at_code_end) else None
    remaining = [0] * len(texts)
    for r in rows:
        remaining[r] += 1
    prefilled: dict[int, tuple] = {}  # prompt -> (cache, last logits) while samples of it are still to start
    pending = deque(range(count))
    slot_of = [-1] * width  # the sample in each row, -1: none
    start = [0] * width  # the first cache position each row attends to
    tokens: list[list[int]] = [[] for _ in range(count)]
    results: list[tuple[str, int] | None] = [None] * count
    uniforms = torch.zeros(width, max(1, limit), device=device)
    steps = torch.zeros(width, dtype=torch.long, device=device)
    positions = torch.zeros(width, dtype=torch.long, device=device)
    cache = mask = logits = None

    def finish(row: int, stopped: str | None) -> None:
        index = slot_of[row]
        text = final_text(tokenizer, tokens[index], stopped, sampling)
        results[index] = (text, len(tokens[index]))
        slot_of[row] = -1
        if on_done is not None:
            on_done(index, text, len(tokens[index]))

    def relayout(keep_from: int, length: int) -> None:
        """Keep cache positions from ``keep_from`` on, moved to end at ``length``, with room to grow."""
        nonlocal mask
        used = mask_length[0]
        for layer in cache.layers:
            layer.relayout(keep_from, length, length + GROW_BY)
        shifted = mask.new_zeros(mask.shape[0], length + GROW_BY)
        shifted[:, length - (used - keep_from):length] = mask[:, keep_from:used]
        mask = shifted
        for row in range(len(start)):
            start[row] = max(0, start[row] + length - used)
        mask_length[0] = length

    mask_length = [0]  # positions in use (== every layer's length)

    with torch.inference_mode():
        while True:
            # -- refill the free rows with the next pending samples
            for row in range(width):
                if slot_of[row] >= 0 or not pending:
                    continue
                index = pending.popleft()
                prompt = rows[index]
                if prompt not in prefilled:
                    ids = prompts.encode(tokenizer, [texts[prompt]])["input_ids"].to(device)
                    out = model(input_ids=ids, use_cache=True, past_key_values=SlackCache(), logits_to_keep=1)
                    prefilled[prompt] = (out.past_key_values, out.logits[:, -1, :].float())
                    del out
                one, first_logits = prefilled[prompt]
                size = one.layers[0].length
                if cache is None:
                    cache = SlackCache()
                    cache.layers = [SlackLayer() for _ in one.layers]
                    for layer, source in zip(cache.layers, one.layers):
                        layer.allocate(width, source.keys, source.values, size, size + GROW_BY)
                    mask = torch.zeros(width, size + GROW_BY, dtype=torch.long, device=device)
                    mask_length[0] = size
                    logits = first_logits.new_zeros(width, first_logits.shape[-1])
                elif mask_length[0] < size:  # not room enough on the left for this prompt
                    live = [start[r] for r in range(width) if slot_of[r] >= 0]
                    keep_from = min(live) if live else mask_length[0]
                    relayout(keep_from, max(size, mask_length[0] - keep_from))
                for layer, source in zip(cache.layers, one.layers):
                    layer.place(torch.tensor([row], device=device), source.keys, source.values)
                end = mask_length[0]
                mask[row] = 0
                mask[row, end - size:end] = 1
                start[row] = end - size
                positions[row] = size
                steps[row] = 0
                logits[row] = first_logits[0]
                if sampled:
                    generator = torch.Generator(device=device).manual_seed(seeds[index])
                    uniforms[row] = torch.rand(uniforms.shape[1], generator=generator, device=device)
                slot_of[row] = index
                remaining[prompt] -= 1
                if not remaining[prompt]:
                    del prefilled[prompt]
            live_rows = [r for r in range(width) if slot_of[r] >= 0]
            if not live_rows:
                break
            # -- one token for every live row
            live = torch.tensor(live_rows, device=device)
            chosen = logits[live]
            if sampled:
                probs = warp(chosen, sampling.temperature, top_k, sampling.top_p).softmax(dim=-1)
                cdf = probs.cumsum(dim=-1)
                draw = uniforms[live, steps[live]] * cdf[:, -1]
                picked = torch.searchsorted(cdf, draw[:, None], right=True).squeeze(1).clamp_(max=cdf.shape[-1] - 1)
            else:
                picked = chosen.argmax(dim=-1)
            next_tokens = torch.zeros(width, dtype=torch.long, device=device)
            next_tokens[live] = picked
            is_eos = torch.isin(picked, eos).tolist() if eos is not None else [False] * len(live_rows)
            has_tick = ticks[picked].tolist() if ticks is not None else None
            for j, (row, token) in enumerate(zip(live_rows, picked.tolist())):
                index = slot_of[row]
                if is_eos[j]:
                    finish(row, None)
                    continue
                tokens[index].append(token)
                if has_tick is not None and has_tick[j]:
                    text = tokenizer.decode(tokens[index], skip_special_tokens=True)
                    end = code_end(text)
                    if end is not None:
                        finish(row, text[:end])
                        continue
                if len(tokens[index]) >= limit:
                    finish(row, None)
            if not pending and all(s < 0 for s in slot_of):
                break
            # -- the tail: no sample left to start, so drop rows that have ended once half are empty
            if not pending:
                busy = [r for r in range(width) if slot_of[r] >= 0]
                if len(busy) <= width // 2:
                    keep = torch.tensor(busy, device=device)
                    cache.batch_select_indices(keep)
                    mask, logits, next_tokens = mask[keep], logits[keep], next_tokens[keep]
                    uniforms, steps, positions = uniforms[keep], steps[keep], positions[keep]
                    slot_of = [slot_of[r] for r in busy]
                    start = [start[r] for r in busy]
                    width = len(busy)
            # -- room for one more position, dropping those no live row attends to
            if mask_length[0] >= mask.shape[1]:
                live_starts = [start[r] for r in range(width) if slot_of[r] >= 0]
                keep_from = min(live_starts)
                relayout(keep_from, mask_length[0] - keep_from)
            column = mask_length[0]
            mask[:, column] = 1
            out = model(input_ids=next_tokens[:, None], attention_mask=mask[:, :column + 1],
                        position_ids=positions[:, None], past_key_values=cache, use_cache=True, logits_to_keep=1)
            mask_length[0] = column + 1
            logits = out.logits[:, -1, :].float()
            del out
            positions += 1
            steps += 1
    return [result if result is not None else ("", 0) for result in results]
