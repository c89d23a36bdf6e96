"""One generation interface, several backends, every run resumable.

``generate(requests, backend=...)`` turns chat requests into ``Completion`` records:

- ``local``: transformers (+ PEFT) with our batched sampling loop that drops finished rows;
- ``vllm``: vLLM with LoRA (optional dependency; ``backend="auto"`` picks it when vLLM is
  importable and a GPU is present and no ``loaded`` model is given);
- ``openai``: any OpenAI-compatible chat-completions server;
- ``replay``: answers saved earlier (a paper-format JSON or a checkpoint JSONL), ``source=PATH``.

With ``checkpoint=PATH`` every finished problem (all its samples in a batch; remote backends: every
finished batch) is appended to a JSONL keyed by (task_id, round, sample) and a rerun skips what is there. Batches are planned from the requests
alone and each is seeded from (seed, its first key), so an interrupted and resumed run writes
exactly what an uninterrupted one does. Stage-1 pairs: ``request_pairs`` / ``replay_pairs``.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Callable

from shared_utils.generation.checkpoint import Checkpoint, CheckpointMismatch, read_checkpoint
from shared_utils.generation.core import (Completion, LocalEngine, Request, SamplingConfig, code_end, plan_batches,
                                          truncate_at_code_end)
from shared_utils.generation.pairs import request_pairs
from shared_utils.generation.paper_format import read_paper_format, write_paper_format
from shared_utils.generation.replay import PairResponse, replay_pairs

__all__ = [
    "SamplingConfig", "LocalEngine", "Request", "Completion", "generate", "write_paper_format", "read_paper_format",
    "PairResponse", "request_pairs", "replay_pairs", "Checkpoint", "CheckpointMismatch", "read_checkpoint",
    "code_end", "truncate_at_code_end", "resolve_backend", "BACKENDS", "COMPLETION_BACKENDS", "PAIR_BACKENDS",
    "engine_of",
]

# Every backend and what it makes: ``completions`` (sampled answers, ``generate``) and/or ``pairs`` (Stage 1b's two
# implementations per problem, ``stages.global_pairs``).
BACKENDS = {"auto": ("completions",), "local": ("completions", "pairs"), "vllm": ("completions",),
            "openai": ("completions", "pairs"), "gemini": ("pairs",), "replay": ("completions", "pairs")}
COMPLETION_BACKENDS = tuple(name for name, makes in BACKENDS.items() if "completions" in makes)
PAIR_BACKENDS = tuple(name for name, makes in BACKENDS.items() if "pairs" in makes)


def resolve_backend(backend: str, loaded=None) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        from shared_utils.generation import vllm_backend

        return "vllm" if loaded is None and vllm_backend.available() else "local"
    if backend == "gemini":
        raise ValueError("the gemini backend generates Stage-1 pairs only: use request_pairs(..., backend='gemini'); "
                         "for plain generation use backend='openai' with Gemini's OpenAI-compatible endpoint")
    return backend


def make_backend(name: str, *, model, adapter, loaded, **options):
    if name == "local":
        from shared_utils.generation.local import LocalBackend

        return LocalBackend(model, adapter, loaded=loaded, **options)
    if name == "vllm":
        from shared_utils.generation.vllm_backend import VLLMBackend

        return VLLMBackend(model, adapter, **options)
    if name == "openai":
        from shared_utils.generation.openai_backend import OpenAIBackend

        return OpenAIBackend(model, adapter, **options)
    if name == "replay":
        from shared_utils.generation.replay import ReplayBackend

        return ReplayBackend(model, adapter, **options)
    raise ValueError(f"unknown backend {name!r}")


class _Progress:
    """A tqdm bar over samples with samples/s and tokens/s; silent when disabled."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str):
        self.bar = None
        self.start = time.monotonic()
        self.samples = self.tokens = 0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True)

    def __call__(self, tokens: int) -> None:
        self.samples += 1
        self.tokens += tokens
        if self.bar is not None:
            elapsed = max(1e-9, time.monotonic() - self.start)
            self.bar.update(1)
            self.bar.set_postfix(samples_s=f"{self.samples / elapsed:.2f}", tok_s=f"{self.tokens / elapsed:.1f}",
                                 refresh=False)

    def close(self) -> dict:
        if self.bar is not None:
            self.bar.close()
        elapsed = time.monotonic() - self.start
        return {"seconds": round(elapsed, 3), "samples": self.samples, "tokens": self.tokens,
                "samples_per_s": round(self.samples / elapsed, 4) if elapsed else None,
                "tokens_per_s": round(self.tokens / elapsed, 2) if elapsed else None}


# What an engine reports that changes the samples themselves (not only their speed): a checkpoint
# written under one of these is never resumed under another.
NUMERICS = ("dtype", "merge_adapter", "quantization", "refill")


def numerics(described: dict) -> dict:
    """The sample-changing part of an engine's description (its dtype, a merged adapter, its quantisation,
    continuous batching)."""
    return {key: described[key] for key in NUMERICS if key in described}


def generate(requests: list[Request], *, backend: str = "auto", model: str | None = None,
             adapter: str | os.PathLike | None = None, sampling: SamplingConfig = SamplingConfig(),
             checkpoint: str | Path | None = None, loaded=None, progress: bool = True,
             on_batch: Callable[[int, list[Completion]], None] | None = None, **backend_options) -> list[Completion]:
    """Sample ``n`` completions per request; returns them in request then sample order.

    The model is named either by ``model`` (+ ``adapter``), which the backend loads, or by
    ``loaded`` (a ``models.LoadedModel``, local backend only), which carries its own adapter.
    ``on_batch(index, completions)`` is called after each batch is checkpointed (a hook for
    callers and for the interruption test). ``backend_options`` go to the backend
    (local: dtype, load_in_4bit, compact_every, merge_adapter, kv_cache, refill; openai: base_url, api_key, concurrency,
    per_sample, served_model; vllm: engine options; replay: source).
    """
    from shared_utils.generation.core import check_unique

    requests = list(requests)
    check_unique(requests)
    name = resolve_backend(backend, loaded)
    if loaded is not None:
        if name != "local":
            raise ValueError(f"loaded= is only for the local backend, not {name!r}")
        if model is not None or adapter is not None:
            raise ValueError("give either loaded= or model=/adapter=, not both: a loaded model knows its adapter")
        model, adapter = loaded.name, loaded.adapter
    engine = make_backend(name, model=model, adapter=adapter, loaded=loaded, **backend_options)
    batch_size = sampling.batch_size or engine.default_batch_size(requests, sampling)
    if hasattr(engine, "plan"):
        batches = engine.plan(requests, sampling, batch_size)
    else:
        batches = plan_batches(requests, sampling, batch_size)
    identity = {"model": str(model) if model is not None else None,
                "adapter": str(adapter) if adapter is not None else None,
                "backend": name, "sampling": sampling.identity(), "seed": sampling.seed,
                "numerics": numerics(engine.describe(sampling))}
    store = Checkpoint(checkpoint, identity) if checkpoint is not None else None
    done = dict(store.done) if store is not None else {}
    keys = [k for batch in batches for k in batch.keys(requests)]
    initial = sum(1 for k in keys if k in done)
    if initial:
        print(f"{checkpoint}: {initial} of {len(keys)} samples already generated (same engine, model and sampling); "
              "generating the rest", flush=True)
    bar = _Progress(progress, len(keys), initial, f"generate[{name}]")
    streams = "on_complete" in inspect.signature(engine.run_batch).parameters
    try:
        for index, batch in enumerate(batches):
            batch_keys = batch.keys(requests)
            if all(k in done for k in batch_keys):
                continue
            before = {k for k in batch_keys if k in done}
            options = {"on_complete": _ProblemRecorder(batch_keys, done, store)} if streams else {}
            completions = engine.run_batch(requests, batch, sampling, on_sample=bar, **options)
            fresh = [c for c in completions if c.key not in before]
            if store is not None:
                store.append(fresh)
            done.update((c.key, c) for c in fresh)
            if on_batch is not None:
                on_batch(index, fresh)
    finally:
        stats = bar.close()
    if store is not None:
        store.finish(batch_size=batch_size, last_run=stats, **_describe(engine, sampling))
    return [done[k] for k in keys]


class _ProblemRecorder:
    """Records a problem's samples in the checkpoint as soon as all of them in this batch have ended,
    so that an interruption loses at most the problems still running (a resume reruns their batch
    from its start, with its seed, and keeps what was recorded)."""

    def __init__(self, batch_keys: list, done: dict, store: Checkpoint | None):
        self.done, self.store = done, store
        self.waiting: dict[tuple, int] = {}
        for key in batch_keys:
            self.waiting[key[:2]] = self.waiting.get(key[:2], 0) + 1
        self.ended: dict[tuple, list[Completion]] = {}

    def __call__(self, completion: Completion) -> None:
        problem = completion.key[:2]
        ended = self.ended.setdefault(problem, [])
        ended.append(completion)
        if len(ended) == self.waiting[problem]:
            fresh = [c for c in self.ended.pop(problem) if c.key not in self.done]
            if self.store is not None:
                self.store.append(fresh)
            self.done.update((c.key, c) for c in fresh)


def engine_of(checkpoint: str | Path) -> dict | None:
    """Which engine generated a checkpoint's samples, and with which weights: the backend (``local``: our
    loop over transformers; ``vllm``), the dtype and device it recorded, and the local backend's options that
    change the texts (continuous batching and its batch size, a merged adapter), for an artifact's provenance.
    None when nothing was generated into that checkpoint (its sidecar is missing)."""
    from shared_utils.generation.checkpoint import meta_path

    sidecar = meta_path(checkpoint)
    if not sidecar.is_file():
        return None
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    return {key: meta[key] for key in ("backend", "dtype", "device", "vllm", "quantization", "merge_adapter", "refill",
                                   "batch_size") if key in meta}


def _describe(engine, sampling) -> dict:
    describe = getattr(engine, "describe", None)
    return describe(sampling) if describe else {}
