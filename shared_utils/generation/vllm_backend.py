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
"""

from __future__ import annotations

from shared_utils import prompts
from shared_utils.generation.core import (Batch, Completion, Request, SamplingConfig, derive_seed, effective_top_k,
                                          plan_per_request, truncate_at_code_end)


def available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class VLLMBackend:
    name = "vllm"

    def __init__(self, model=None, adapter=None, *, max_lora_rank: int = 64, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, dtype: str | None = None, llm=None, **engine_options):
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
        self.options = dict(gpu_memory_utilization=gpu_memory_utilization, enable_lora=adapter is not None,
                            dtype=dtype or (self.spec.dtype if self.spec else "auto"), **engine_options)
        if adapter is not None:
            self.options["max_lora_rank"] = max_lora_rank
        self.max_model_len = max_model_len
        self.llm = llm
        self.lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))

    def default_batch_size(self, requests, sampling) -> int:
        return 512  # requests per engine call; vLLM schedules the batch itself

    def prompt_ids(self, request: Request) -> list[int]:
        text = prompts.render(self.tokenizer, request.messages, self.spec.quirks if self.spec else None)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        """The batches, and the engine sized for the longest prompt plus ``max_new_tokens`` (module docstring)."""
        if self.llm is None:
            from vllm import LLM

            if self.max_model_len is None:
                longest = max((len(self.prompt_ids(request)) for request in requests), default=0)
                self.max_model_len = longest + sampling.max_new_tokens
            self.llm = LLM(model=self.source, max_model_len=self.max_model_len, **self.options)
        return plan_per_request(requests, sampling, batch_size)

    def top_k(self, sampling: SamplingConfig) -> int:
        return effective_top_k(sampling, self.generation_config)

    def describe(self, sampling) -> dict:
        import vllm

        return {"vllm": vllm.__version__, "lora": self.lora is not None, "effective_top_k": self.top_k(sampling),
                "max_model_len": self.max_model_len}

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
