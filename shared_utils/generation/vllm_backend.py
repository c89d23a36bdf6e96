"""The ``vllm`` backend (optional; ``pip install vllm`` on a GPU machine). Not exercised by tests.

Prompts are rendered with the model's chat template by our own ``prompts.render`` and passed as
token ids (``add_special_tokens=False``: no second BOS). One ``SamplingParams`` per request with
``n`` samples and a per-request seed, so results do not depend on batch composition. A LoRA
adapter is applied per request with ``LoRARequest``. The code-end stop rule uses the stop string
``"\\n```\\n"`` (kept in the output) and then cuts the text after the first closed block.
"""

from __future__ import annotations

from shared_utils import prompts
from shared_utils.generation.core import (Batch, Completion, Request, SamplingConfig, derive_seed, plan_per_request,
                                          truncate_at_code_end)

CODE_END_STOP = "\n```\n"


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
        from vllm import LLM

        from shared_utils import models

        if model is None:
            raise ValueError("the vllm backend needs model=")
        self.spec = models.find_spec(str(model))
        self.tokenizer = models.load_tokenizer(str(model))
        options = dict(gpu_memory_utilization=gpu_memory_utilization, enable_lora=adapter is not None, **engine_options)
        if adapter is not None:
            options["max_lora_rank"] = max_lora_rank
        if max_model_len:
            options["max_model_len"] = max_model_len
        options["dtype"] = dtype or (self.spec.dtype if self.spec else "auto")
        self.llm = llm or LLM(model=models.resolve(str(model)), **options)
        self.lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))

    def default_batch_size(self, requests, sampling) -> int:
        return 512  # requests per engine call; vLLM schedules the batch itself

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        return plan_per_request(requests, sampling, batch_size)

    def describe(self, sampling) -> dict:
        import vllm

        return {"vllm": vllm.__version__, "lora": self.lora is not None}

    def run_batch(self, requests, batch: Batch, sampling: SamplingConfig, on_sample=None) -> list[Completion]:
        from vllm import SamplingParams

        wanted: dict[int, list[int]] = {}
        for unit in batch.units:
            wanted.setdefault(unit.request, []).append(unit.sample)
        inputs, params, order = [], [], []
        for index, samples in wanted.items():
            request = requests[index]
            text = prompts.render(self.tokenizer, request.messages, self.spec.quirks if self.spec else None)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            inputs.append({"prompt_token_ids": ids})
            params.append(SamplingParams(
                n=max(samples) + 1, temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k else -1, max_tokens=sampling.max_new_tokens,
                seed=derive_seed(sampling.seed, request.task_id, request.round) % (2**31),
                stop=[CODE_END_STOP] if sampling.stop_at_code_end else None,
                include_stop_str_in_output=True, skip_special_tokens=True))
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
