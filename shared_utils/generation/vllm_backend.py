"""The ``vllm`` backend (optional; ``pip install vllm`` on a GPU machine). Tested with a fake ``vllm`` module.

Prompts are rendered with the model's chat template by our own ``prompts.render`` and passed as
token ids (``add_special_tokens=False``: no second BOS). One ``SamplingParams`` per request with
``n`` samples and a per-request seed, so results do not depend on batch composition. A LoRA
adapter is applied per request with ``LoRARequest``.

Same sampling as the local loop: top-k is the model's ``generation_config.top_k`` unless the
sampling config sets one (``core.effective_top_k``). The engine starts once the prompts are
known (``plan``), with ``max_model_len`` = longest prompt + ``max_new_tokens``; left to vLLM it
reserves KV cache for the model's whole context (262,144 tokens for Qwen3-4B-Instruct-2507),
which does not fit common GPUs. The code-end rule is the local backend's (first *closed* fenced
block): a stop string cannot tell an opening fence from a closing one (``"\n```\n"`` also ends
``"...:\n```\ndef"``), so samples run to EOS or the limit and are cut where the local loop stops.

The base weights load once per process: the engine is kept between ``generate`` calls and serves
every adapter as a ``LoRARequest`` with an id of its own (vLLM caches adapters by id), so the
variants of an evaluation and the rounds of Stage 2a share it. It is started again only for other
weights or options, or when longer prompts need a longer ``max_model_len``.

4-bit: where the model's 4-bit policy loads it in 4-bit (``models.wants_4bit``: gemma3-12b on
GPUs under 40 GB), vLLM quantizes it the same way while loading (``quantization="bitsandbytes"``,
NF4; needs ``bitsandbytes``) unless the engine options name a quantization; adapters apply on top
as in QLoRA. In bf16 gemma3-12b needs about 24 GB for its weights alone.
"""

from __future__ import annotations

import gc
from pathlib import Path

from shared_utils import prompts
from shared_utils.generation.core import (Batch, Completion, Request, SamplingConfig, derive_seed, effective_top_k,
                                          plan_per_request, truncate_at_code_end)


_ENGINE: dict = {}  # the engine kept between generate() calls: key, llm, max_model_len
_LORA_IDS: dict[str, int] = {}  # adapter folder -> the LoRARequest id it keeps in this process


def lora_request(adapter):
    """The adapter's ``LoRARequest``: one id and name per folder, so a shared engine never serves a cached other."""
    from vllm.lora.request import LoRARequest

    path = str(Path(adapter).resolve())
    lora_id = _LORA_IDS.setdefault(path, len(_LORA_IDS) + 1)
    return LoRARequest(f"adapter-{lora_id}", lora_id, path)


def engine(source: str, max_model_len: int, options: dict):
    """The running engine if it has these weights and options and is long enough, else a new one in its place."""
    key = (source, repr(sorted(options.items())))
    if _ENGINE.get("key") == key and _ENGINE["max_model_len"] >= max_model_len:
        return _ENGINE["llm"], _ENGINE["max_model_len"]
    _ENGINE.clear()  # one model's weights fill the GPU: free the old engine first
    gc.collect()
    from vllm import LLM

    _ENGINE.update(key=key, llm=LLM(model=source, max_model_len=max_model_len, **options), max_model_len=max_model_len)
    return _ENGINE["llm"], max_model_len


def available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class VLLMBackend:
    name = "vllm"

    def __init__(self, model=None, adapter=None, *, max_lora_rank: int = 64, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, dtype: str | None = None, llm=None, enable_lora: bool | None = None,
                 **engine_options):
        """``enable_lora=True`` without an adapter starts an engine that later adapters can share (the base variant)."""
        from transformers import GenerationConfig

        from shared_utils import models

        if model is None:
            raise ValueError("the vllm backend needs model=")
        self.spec = models.find_spec(str(model))
        self.source = models.resolve(str(model))
        self.tokenizer = models.load_tokenizer(str(model))
        try:
            self.generation_config = GenerationConfig.from_pretrained(self.source)
        except OSError:  # no generation_config.json: no model default to follow
            self.generation_config = None
        enable_lora = adapter is not None if enable_lora is None else enable_lora
        self.options = dict(gpu_memory_utilization=gpu_memory_utilization, enable_lora=enable_lora,
                            dtype=dtype or (self.spec.dtype if self.spec else "auto"), **engine_options)
        if enable_lora:
            self.options["max_lora_rank"] = max_lora_rank
        if models.wants_4bit(self.spec) and "quantization" not in engine_options:
            self.options["quantization"] = "bitsandbytes"
        self.max_model_len = max_model_len
        self.llm = llm
        self.lora = lora_request(adapter) if adapter is not None else None

    def default_batch_size(self, requests, sampling) -> int:
        return 512  # requests per engine call; vLLM schedules the batch itself

    def prompt_ids(self, request: Request) -> list[int]:
        text = prompts.render(self.tokenizer, request.messages, self.spec.quirks if self.spec else None)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        """The batches, and the engine sized for the longest prompt plus ``max_new_tokens`` (module docstring)."""
        if self.llm is None:
            if self.max_model_len is None:
                longest = max((len(self.prompt_ids(request)) for request in requests), default=0)
                self.max_model_len = longest + sampling.max_new_tokens
            self.llm, self.max_model_len = engine(self.source, self.max_model_len, self.options)
        return plan_per_request(requests, sampling, batch_size)

    def top_k(self, sampling: SamplingConfig) -> int:
        return effective_top_k(sampling, self.generation_config)

    def describe(self, sampling) -> dict:
        import vllm

        return {"vllm": vllm.__version__, "lora": self.lora is not None, "effective_top_k": self.top_k(sampling),
                "max_model_len": self.max_model_len, "quantization": self.options.get("quantization"),
                "dtype": self.options["dtype"]}

    def run_batch(self, requests, batch: Batch, sampling: SamplingConfig, on_sample=None) -> list[Completion]:
        from vllm import SamplingParams

        wanted: dict[int, list[int]] = {}
        for unit in batch.units:
            wanted.setdefault(unit.request, []).append(unit.sample)
        inputs, params, order = [], [], []
        for index, samples in wanted.items():
            request = requests[index]
            inputs.append({"prompt_token_ids": self.prompt_ids(request)})
            params.append(SamplingParams(
                n=max(samples) + 1, temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=self.top_k(sampling) or -1, max_tokens=sampling.max_new_tokens,
                seed=derive_seed(sampling.seed, request.task_id, request.round) % (2**31),
                skip_special_tokens=True))
            order.append((index, samples))
        outputs = self.llm.generate(inputs, params, lora_request=self.lora, use_tqdm=False)
        completions = []
        for (index, samples), output in zip(order, outputs):
            request = requests[index]
            for s in samples:
                choice = output.outputs[s]
                text = truncate_at_code_end(choice.text) if sampling.stop_at_code_end else choice.text
                completions.append(Completion(request.task_id, request.round, s, text, len(choice.token_ids)))
                if on_sample:
                    on_sample(len(choice.token_ids))
        return completions
