"""Benchmark: our ``local`` backend against the paper's generation loop, same run, same machine.

The paper loop calls ``model.generate`` once per prompt with ``num_return_sequences`` (static
batch, runs until the longest sample ends). Ours: ``generate(backend="local")`` with the
code-end stop (our pipeline stages) and without it (paper protocol), and, for comparison, with
transformers' concatenating KV cache instead of ours (same tokens), and the configuration the
study runs (``STUDY``: continuous batching with ``--study-batch`` rows in flight, bfloat16 weights;
other texts than the default loop's, see ``generation/stream.py``). ``--lora R`` adds a LoRA
adapter of rank R on every linear layer and times sampling with it unmerged and merged, and the
study configuration with it merged. Same prompts, sampling parameters and number of samples.
Writes ``benchmarks/results/generation.md``.

    python benchmarks/bench_generation.py [--prompts 4] [--n 10] [--max-new-tokens 512] [--lora 16]
                                          [--study-batch 64] [--skip-default-runs]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import RESULTS, machine, publish  # the script's own folder is on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def problems(count: int) -> list[dict]:
    from shared_utils import data
    from shared_utils.paths import shared_data_dir

    shared = shared_data_dir()
    if shared is not None and (shared / "mbpp").is_dir():
        rows = data.preprocess(data.load_mbpp(shared / "mbpp", "train"), "mbpp[train]", drop_classes=True)
        return rows[:count]
    return data.demo_problems()[:count]


def paper_loop(loaded, rows, sampling) -> tuple[float, int, int]:
    """The paper's loop: one generate call per prompt with num_return_sequences."""
    import torch

    from shared_utils import prompts

    model, tokenizer = loaded.model, loaded.tokenizer
    torch.manual_seed(sampling.seed)
    start, samples, tokens = time.perf_counter(), 0, 0
    for row in rows:
        text = loaded.render(prompts.messages(row["text"]))
        encoded = prompts.encode(tokenizer, [text])
        with torch.inference_mode():
            out = model.generate(**encoded, do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[:, encoded["input_ids"].shape[1]:]
        tokens += int((new != tokenizer.pad_token_id).sum())
        samples += new.shape[0]
    return time.perf_counter() - start, samples, tokens


def ours(loaded, rows, sampling, **options) -> tuple[float, int, int]:
    from shared_utils import prompts
    from shared_utils.generation import Request, generate

    requests = [Request(row["task_id"], prompts.messages(row["text"])) for row in rows]
    start = time.perf_counter()
    out = generate(requests, backend="local", loaded=loaded, sampling=sampling, progress=False, **options)
    return time.perf_counter() - start, len(out), sum(c.tokens for c in out)


STUDY = {"refill": True}  # with SamplingConfig.batch_size = --study-batch and the weights in bfloat16


def in_bfloat16(loaded):
    """The model with its weights in bfloat16 (a copy: the float32 one stays for the other runs)."""
    import copy
    import dataclasses

    import torch

    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model).to(torch.bfloat16))


def with_random_lora(loaded, rank: int):
    """The model with a fresh LoRA adapter on every linear layer (random weights: timing only)."""
    import dataclasses

    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return dataclasses.replace(loaded, model=get_peft_model(loaded.model, config).eval())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-paper-protocol", action="store_true", help="skip our run without the code-end stop")
    parser.add_argument("--lora", type=int, default=0, metavar="R", help="also time a rank-R LoRA adapter, unmerged "
                        "and merged (0: no adapter runs)")
    parser.add_argument("--study-batch", type=int, default=64, help="rows in flight of the study configuration")
    parser.add_argument("--skip-default-runs", action="store_true",
                        help="time only the paper loop and the study configuration")
    parser.add_argument("--out", type=Path, default=RESULTS / "generation.md")
    args = parser.parse_args()

    import torch

    from shared_utils import models
    from shared_utils.generation import SamplingConfig

    loaded = models.load_model("smollm2-135m")
    rows = problems(args.prompts)
    base = dict(n=args.n, temperature=0.6, top_p=0.9, max_new_tokens=args.max_new_tokens, seed=args.seed)
    results = []
    paper = paper_loop(loaded, rows, SamplingConfig(**base, stop_at_code_end=False))
    results.append(("paper loop: `model.generate` per prompt, num_return_sequences", *paper))
    print(results[-1], flush=True)
    stages = SamplingConfig(**base, stop_at_code_end=True)
    study = SamplingConfig(**base, stop_at_code_end=True, batch_size=args.study_batch)
    study_label = f"study configuration: `refill=True`, batch_size {args.study_batch}, bfloat16"
    results.append((f"ours, {study_label}", *ours(in_bfloat16(loaded), rows, study, **STUDY)))
    print(results[-1], flush=True)
    if not args.skip_default_runs:
        results.append(("ours, `local`, stop at code end (pipeline stages, defaults)", *ours(loaded, rows, stages)))
        print(results[-1], flush=True)
        results.append(("same, with transformers' concatenating KV cache (`kv_cache=\"dynamic\"`)",
                        *ours(loaded, rows, stages, kv_cache="dynamic")))
        print(results[-1], flush=True)
    if not args.skip_paper_protocol and not args.skip_default_runs:
        results.append(("ours, `local`, paper protocol (no code-end stop)",
                        *ours(loaded, rows, SamplingConfig(**base, stop_at_code_end=False))))
        print(results[-1], flush=True)
    if args.lora:  # last: PEFT injects the adapter into the base model
        adapted = with_random_lora(loaded, args.lora)
        for merge in (False, True):
            if not args.skip_default_runs:
                results.append((f"same, LoRA r={args.lora} on every linear layer, "
                                f"{'merged' if merge else 'unmerged'}", *ours(adapted, rows, stages,
                                                                             merge_adapter=merge)))
                print(results[-1], flush=True)
        results.append((f"ours, {study_label}, LoRA r={args.lora} merged (`merge_adapter=True`)",
                        *ours(in_bfloat16(adapted), rows, study, merge_adapter=True, **STUDY)))
        print(results[-1], flush=True)

    reference = results[0][2] / results[0][1]
    lines = [
        "# Generation benchmark: `local` backend vs the paper's loop",
        "",
        f"- machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        f"- model: smollm2-135m (embedded, float32); {len(rows)} MBPP train prompts x {args.n} samples; "
        f"temperature 0.6, top_p 0.9, max_new_tokens {args.max_new_tokens}, seed {args.seed}",
        f"- command: `python benchmarks/bench_generation.py --prompts {args.prompts} --n {args.n} "
        f"--max-new-tokens {args.max_new_tokens} --study-batch {args.study_batch}"
        + (f" --lora {args.lora}" if args.lora else "") + (" --skip-default-runs" if args.skip_default_runs else "")
        + (" --skip-paper-protocol" if args.skip_paper_protocol else "") + "`",
        "",
        "| run | seconds | samples | new tokens | samples/s | tokens/s | speed-up (samples/s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, seconds, samples, tokens in results:
        lines.append(f"| {label} | {seconds:.1f} | {samples} | {tokens} | {samples / seconds:.3f} | "
                     f"{tokens / seconds:.1f} | {samples / seconds / reference:.2f}x |")
    lines += ["", "Speed-up is completed samples per second relative to the paper loop in the same run "
              "(the machine may be shared: the load average is in the machine line).", ""]
    publish(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
