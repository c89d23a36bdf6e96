"""The ``local`` backend: transformers (+ PEFT) with our own batched sampling loop.

Why not ``model.generate``: a static batch keeps computing every row until its longest
sequence ends. Here each batch is prefilled once per distinct prompt, the KV cache is
expanded to the samples, and rows that finish (EOS, the closing code fence, the token limit)
are dropped from the cache, so finished samples stop costing compute. The cache appends in
place (``kv_cache.SlackLayer``) instead of concatenating at every step. Sampling follows
transformers' warpers: temperature, then top-k, then top-p (nucleus, at least one token kept).

``merge_adapter=True`` samples from a copy of the model with its LoRA adapter folded into the
base weights (PEFT's ``merge_and_unload``): the same function without the adapter's two extra
matmuls and module calls in every adapted layer. Folding changes float rounding, so sampled
texts can differ from the unmerged model's; it is off unless a recipe or caller asks for it.

``refill=True`` runs each batch by continuous batching (``stream.py``): ``batch_size`` rows in
flight, a row refilled with the next pending sample as soon as its sample ends, each sample drawn
from its own seeded stream. Reproducible for the same settings; other texts than the default loop's.
"""

from __future__ import annotations

from typing import Callable

from shared_utils import prompts
from shared_utils.generation.core import (Batch, Completion, Request, SamplingConfig, code_end, derive_seed,
                                          effective_top_k, plan_batches)
from shared_utils.generation.sampling_ops import device_of, final_text, warp

CPU_BATCH = 48
REFILL_SEGMENT = 8  # with refill: batch sizes per planned segment (the most a resume recomputes)
GPU_MAX_BATCH = 256


class LocalBackend:
    name = "local"

    def __init__(self, model=None, adapter=None, *, loaded=None, dtype: str | None = None,
                 load_in_4bit: bool | None = None, compact_every: int = 1, merge_adapter: bool = False,
                 kv_cache: str = "slack", refill: bool = False, **_ignored):
        if loaded is None:
            if model is None:
                raise ValueError("the local backend needs model= (a registry name, hub id or folder) or loaded=")
            from shared_utils.models import load_model

            loaded = load_model(str(model), adapter=adapter, dtype=dtype, load_in_4bit=load_in_4bit)
        self.loaded = loaded  # a models.LoadedModel
        self.tokenizer = loaded.tokenizer
        self.model = merged_copy(loaded.model) if merge_adapter else loaded.model
        self.compact_every = compact_every
        from shared_utils.generation.kv_cache import check_kind

        self.kv_cache = check_kind(kv_cache)
        self.merge_adapter = merge_adapter
        self.refill = bool(refill)
        self.device = device_of(self.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self._tick_mask = None
        self._prompt_cache: dict[int, str] = {}

    # ------------------------------------------------------------------ planning
    def default_batch_size(self, requests: list[Request], sampling: SamplingConfig) -> int:
        if self.device.type != "cuda":
            return CPU_BATCH
        import torch

        free, _ = torch.cuda.mem_get_info(self.device)
        per_token = kv_bytes_per_token(self.model)
        longest = 0
        for request in requests[:64]:
            longest = max(longest, len(self.tokenizer(self.render(request), add_special_tokens=False).input_ids))
        need = per_token * (longest + sampling.max_new_tokens) or 1
        return int(max(1, min(GPU_MAX_BATCH, 0.5 * free // need)))

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        """The batches to run: ``batch_size`` samples each, or with ``refill`` segments of
        ``REFILL_SEGMENT`` x ``batch_size`` samples run ``batch_size`` at a time (a resume reruns the
        unfinished segment from its start, so that it sees the same neighbours and gives the same texts)."""
        return plan_batches(requests, sampling, batch_size * (REFILL_SEGMENT if self.refill else 1))

    def render(self, request: Request) -> str:
        return self.loaded.render(request.messages)

    def effective_top_k(self, sampling: SamplingConfig) -> int:
        return effective_top_k(sampling, getattr(self.model, "generation_config", None))

    def describe(self, sampling: SamplingConfig) -> dict:
        return {"effective_top_k": self.effective_top_k(sampling), "device": str(self.device),
                "dtype": str(self.model.dtype).removeprefix("torch."), "eos_token_ids": sorted(self.eos_ids),
                "merge_adapter": self.merge_adapter, "kv_cache": self.kv_cache,
                **({"refill": True} if self.refill else {})}

    # ------------------------------------------------------------------ generation
    def run_batch(self, requests: list[Request], batch: Batch, sampling: SamplingConfig,
                  on_sample: Callable[[int], None] | None = None,
                  on_complete: Callable[[Completion], None] | None = None) -> list[Completion]:
        """The batch's completions; ``on_complete`` receives each one as its sample ends."""
        order: dict[int, int] = {}
        for unit in batch.units:
            order.setdefault(unit.request, len(order))
        texts = [self.render(requests[i]) for i in order]
        rows = [order[unit.request] for unit in batch.units]

        def completion(i: int, text: str, tokens: int) -> Completion:
            request = requests[batch.units[i].request]
            return Completion(request.task_id, request.round, batch.units[i].sample, text, tokens)

        def done(i: int, text: str, tokens: int) -> None:
            if on_sample is not None:
                on_sample(tokens)
            if on_complete is not None:
                on_complete(completion(i, text, tokens))

        options = dict(eos_ids=self.eos_ids, top_k=self.effective_top_k(sampling), tick_mask=self.tick_mask(),
                       on_done=done)
        if self.refill:
            from shared_utils.generation.stream import sample_stream

            seeds = [derive_seed(sampling.seed, "sample", *key) for key in batch.keys(requests)]
            width = sampling.batch_size or self.default_batch_size(requests, sampling)
            results = sample_stream(self.model, self.tokenizer, texts, rows, seeds, sampling, width=width, **options)
        else:
            results = sample(self.model, self.tokenizer, texts, rows, sampling, seed=batch.seed,
                             compact_every=self.compact_every, kv_cache=self.kv_cache, **options)
        return [completion(i, text, tokens) for i, (text, tokens) in enumerate(results)]

    def tick_mask(self):
        """A boolean over the vocabulary: the tokens whose text holds a backtick (fence candidates)."""
        if self._tick_mask is None:
            import torch

            size = self.model.get_output_embeddings().weight.shape[0]
            mask = torch.zeros(size, dtype=torch.bool)
            for index in range(min(size, len(self.tokenizer))):
                piece = self.tokenizer.convert_ids_to_tokens(index)
                if piece and "`" in piece:
                    mask[index] = True
            self._tick_mask = mask
        return self._tick_mask


def merged_copy(model):
    """A copy of a PEFT model with its LoRA weights merged into the base weights, for sampling only.

    The trained adapter (``model``) is left as it is: merging in place and unmerging afterwards
    would leave the base weights changed by rounding. A model without an adapter is returned as is.
    """
    import copy

    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        raise ValueError("merge_adapter: the base weights are quantized; merging would re-quantize them, "
                         "so sample with the adapter unmerged (merge_adapter=False)")
    return copy.deepcopy(model).merge_and_unload().eval()



def eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if source is None:
            continue
        ids.update(source if isinstance(source, (list, tuple, set)) else [source])
    return {int(i) for i in ids}


def kv_bytes_per_token(model) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", 32)
    heads = getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", 32)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    width = 2 if next(model.parameters()).element_size() <= 2 else 4
    return 2 * layers * heads * head_dim * width



def sample(model, tokenizer, texts: list[str], rows: list[int], sampling: SamplingConfig, *, seed: int,
           eos_ids: set[int], top_k: int = 0, tick_mask=None, compact_every: int = 1, kv_cache: str = "slack",
           on_sample: Callable[[int], None] | None = None,
           on_done: Callable[[int, str, int], None] | None = None) -> list[tuple[str, int]]:
    """Sample one sequence per entry of ``rows`` (an index into ``texts``); returns (text, new tokens).

    ``compact_every``: drop finished rows from the KV cache once at least this many have
    finished since the last drop (1 = at once). ``kv_cache``: ``"slack"`` appends in place,
    ``"dynamic"`` is transformers' cache (same tokens, slower; kept for comparison).
    ``on_done(i, text, tokens)`` as sample ``i`` ends (a caller records it at once).
    """
    import torch

    from shared_utils.generation.kv_cache import new_cache

    device = device_of(model)
    encoded = prompts.encode(tokenizer, texts)
    input_ids = encoded["input_ids"].to(device)
    mask = encoded["attention_mask"].to(device)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    eos = torch.tensor(sorted(eos_ids), device=device) if eos_ids else None
    ticks = tick_mask.to(device) if tick_mask is not None else None

    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    past_key_values=new_cache(kv_cache, model), logits_to_keep=1)
        cache = out.past_key_values
        select = torch.tensor(rows, device=device)
        logits = out.logits[:, -1, :][select]
        if rows != list(range(len(texts))):
            cache.batch_select_indices(select)
        mask = mask[select]
        last_pos = positions[select, -1]
        del out

        count = len(rows)
        live = torch.arange(count, device=device)  # original row of each cache row
        tokens: list[list[int]] = [[] for _ in range(count)]
        texts_out: list[str | None] = [None] * count
        finished_in_cache = torch.zeros(count, dtype=torch.bool, device=device)
        pending = 0
        for step in range(sampling.max_new_tokens):
            if sampling.temperature and sampling.temperature > 0:
                probs = warp(logits, sampling.temperature, top_k, sampling.top_p).softmax(dim=-1)
                next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            else:
                next_tokens = logits.argmax(dim=-1)
            is_eos = torch.isin(next_tokens, eos) if eos is not None else torch.zeros_like(finished_in_cache)
            has_tick = ticks[next_tokens] if (ticks is not None and sampling.stop_at_code_end) else None
            next_list = next_tokens.tolist()
            eos_list = is_eos.tolist()
            tick_list = has_tick.tolist() if has_tick is not None else None
            live_list = live.tolist()
            done_flags = finished_in_cache.tolist()
            last_step = step + 1 >= sampling.max_new_tokens
            newly = 0
            for j, original in enumerate(live_list):
                if done_flags[j]:
                    continue
                if eos_list[j]:
                    finished = True
                else:
                    tokens[original].append(next_list[j])
                    finished = last_step
                    if tick_list is not None and tick_list[j]:
                        text = tokenizer.decode(tokens[original], skip_special_tokens=True)
                        end = code_end(text)
                        if end is not None:
                            texts_out[original] = text[:end]
                            finished = True
                if finished:
                    finished_in_cache[j] = True
                    newly += 1
                    if on_sample is not None:
                        on_sample(len(tokens[original]))
                    if on_done is not None:
                        texts_out[original] = final_text(tokenizer, tokens[original], texts_out[original], sampling)
                        on_done(original, texts_out[original], len(tokens[original]))
            pending += newly
            if bool(finished_in_cache.all()) or last_step:
                break
            if pending >= compact_every:
                keep = (~finished_in_cache).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, mask, last_pos, next_tokens = live[keep], mask[keep], last_pos[keep], next_tokens[keep]
                finished_in_cache = finished_in_cache[keep]
                pending = 0
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            last_pos = last_pos + 1
            out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                        past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            del out
    return [(final_text(tokenizer, tokens[i], texts_out[i], sampling), len(tokens[i])) for i in range(count)]
