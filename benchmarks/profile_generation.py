"""Where a sampling step of the ``local`` backend spends its time: torch profiler shares, one run.

A decode step at the size the backend runs on a CPU (48 rows, 300 cached tokens) plus the
sampling that follows it (temperature, top-p over the whole vocabulary, multinomial), for the
embedded model as it is, with a LoRA adapter on every linear layer, and with that adapter
merged. Prints the per-step CPU time and the top operators by share of CPU time; on a shared
machine compare shares and same-run ratios, not absolute times.

    python benchmarks/profile_generation.py [--kv-cache slack|dynamic] [--rows 48] [--context 300]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import time

from bench_generation import with_random_lora  # the script's own folder is on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def profile_steps(model, kv_cache: str, rows: int, context: int, steps: int = 3):
    """(CPU ms per step, profiler table) of ``steps`` decode-and-sample steps after one warm-up step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from shared_utils.generation.kv_cache import new_cache
    from shared_utils.generation.local import warp

    torch.manual_seed(0)
    vocab = model.get_output_embeddings().weight.shape[0]
    with torch.inference_mode():
        cache = model(input_ids=torch.randint(0, vocab, (rows, context)), use_cache=True, logits_to_keep=1,
                      past_key_values=new_cache(kv_cache, model)).past_key_values
        mask = torch.ones(rows, context + 1, dtype=torch.long)
        token, position = torch.randint(0, vocab, (rows, 1)), torch.full((rows, 1), context)
        generator = torch.Generator().manual_seed(0)

        def step():
            out = model(input_ids=token, attention_mask=mask, position_ids=position, past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
            torch.multinomial(warp(out.logits[:, -1, :], 0.6, 0, 0.9).softmax(-1), 1, generator=generator)
            cache.crop(-1)

        step()
        start = time.process_time()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
        cpu_ms = (time.process_time() - start) / steps * 1e3
    return cpu_ms, prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kv-cache", default="slack")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--context", type=int, default=300)
    parser.add_argument("--lora", type=int, default=16, metavar="R")
    args = parser.parse_args()

    from shared_utils import models
    from shared_utils.generation.local import merged_copy

    loaded = models.load_model("smollm2-135m")
    adapted = with_random_lora(dataclasses.replace(loaded, model=copy.deepcopy(loaded.model)), args.lora)
    variants = [("base", loaded.model)]
    variants += [(f"LoRA r={args.lora}, unmerged", adapted.model), (f"LoRA r={args.lora}, merged",
                                                                     merged_copy(adapted.model))]
    for label, model in variants:
        cpu_ms, table = profile_steps(model, args.kv_cache, args.rows, args.context)
        print(f"## {label}, kv_cache={args.kv_cache}: {cpu_ms:.0f} CPU ms per step\n\n{table}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
