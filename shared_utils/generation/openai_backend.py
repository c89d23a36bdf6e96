"""The ``openai`` backend: any OpenAI-compatible chat-completions server via the official client.

Base URL and key come from ``base_url=``/``api_key=`` or ``OPENAI_BASE_URL``/``OPENAI_API_KEY``
(vLLM's server, llama.cpp's server, Ollama, OpenAI, Gemini's OpenAI-compatible endpoint).
``n`` samples per request; ``per_sample=True`` sends n requests with n=1, each with its own seed.
Servers that ignore ``n`` (``transformers serve`` among them) answer with fewer choices: the
backend then asks one sample at a time for that request and every later one, and records that it
did (``per_sample_fallbacks`` next to the samples). ``served_model`` is the name the server knows
the model by (vLLM: ``--served-model-name``, or ``--lora-modules NAME=PATH`` for an adapter). A
top-k set in the sampling config goes in ``extra_body`` as ``top_k`` (OpenAI's API has none; vLLM,
llama.cpp and SGLang read it there); unset, the server's default applies. ``transformers serve``
rejects that field (422) and reads top-k from its ``generation_config`` JSON instead, where sampling
must be asked for too (it otherwise follows the model's generation_config, greedy for a model that
does not set ``do_sample``): on that rejection the backend resends there, keeps doing so, and
records it (``top_k_via``). Retries are the OpenAI client's own (``max_retries``: 408, 409, 429, 5xx
and connection errors, exponential backoff, a server's ``Retry-After`` honoured); at most
``concurrency`` requests in flight. The code-end stop rule is applied to the returned text.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from shared_utils.generation.core import (Batch, Completion, Request, SamplingConfig, derive_seed, plan_per_request,
                                          truncate_at_code_end)


class FewerChoices(RuntimeError):
    """The server answered with fewer choices than ``n`` (it ignores ``n``)."""


def make_client(base_url: str | None = None, api_key: str | None = None, timeout: float = 600.0, attempts: int = 6):
    """The OpenAI client, retrying each call up to ``attempts`` times in all (the SDK's retries)."""
    from openai import OpenAI

    return OpenAI(base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
                  api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                  max_retries=attempts - 1, timeout=timeout)


class OpenAIBackend:
    name = "openai"

    def __init__(self, model=None, adapter=None, *, base_url: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, attempts: int = 6, per_sample: bool = False,
                 served_model: str | None = None, send_seed: bool = True, extra_body: dict | None = None,
                 client=None, **_ignored):
        if model is None and served_model is None:
            raise ValueError("the openai backend needs model= or served_model= (the name the server knows)")
        self.model = served_model or (str(adapter) if adapter is not None else str(model))
        self.client = client or make_client(base_url, api_key, attempts=attempts)
        self.concurrency = max(1, concurrency)
        self.per_sample, self.send_seed, self.extra_body = per_sample, send_seed, extra_body or {}
        self.fallbacks = 0  # requests answered with fewer choices than asked, then sampled one at a time
        self.top_k_via = "top_k"  # or "generation_config", once a server refused a top_k field
        self.lock = threading.Lock()

    def default_batch_size(self, requests, sampling) -> int:
        return self.concurrency * 4

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        return plan_per_request(requests, sampling, batch_size)

    def describe(self, sampling) -> dict:
        return {"base_url": str(self.client.base_url), "served_model": self.model, "per_sample": self.per_sample,
                "per_sample_fallbacks": self.fallbacks,
                "top_k": sampling.top_k if sampling.top_k is not None else "server default",
                "top_k_via": self.top_k_via}

    def _top_k_body(self, top_k: int | None) -> dict:
        """The request fields that carry ``top_k`` where this server reads it."""
        if top_k is None:
            return {}
        if self.top_k_via == "generation_config":
            return {"generation_config": json.dumps({"do_sample": True, "top_k": top_k})}
        return {"top_k": top_k}

    def _call(self, request: Request, n: int, sampling: SamplingConfig, seed: int) -> list[tuple[str, int]]:
        """``n`` (text, tokens) answers; ``FewerChoices`` when the server returned fewer."""
        from openai import UnprocessableEntityError

        kwargs = dict(model=self.model, messages=request.messages, n=n, temperature=sampling.temperature,
                      top_p=sampling.top_p, max_tokens=sampling.max_new_tokens)
        if self.send_seed:
            kwargs["seed"] = seed
        top_k_body = self._top_k_body(sampling.top_k)
        extra_body = {**self.extra_body, **top_k_body}
        if extra_body:
            kwargs["extra_body"] = extra_body
        try:
            response = self.client.chat.completions.create(**kwargs)
        except UnprocessableEntityError as exc:
            if "top_k" not in top_k_body or "top_k" not in str(exc.body):
                raise
            with self.lock:
                self.top_k_via = "generation_config"
            return self._call(request, n, sampling, seed)
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) < n:
            raise FewerChoices(f"task {request.task_id!r}: server returned {len(choices)} choices, asked for {n}")
        usage = getattr(response, "usage", None)
        per = (usage.completion_tokens // max(1, len(choices))) if usage and usage.completion_tokens else 0
        out = []
        for choice in choices[:n]:
            text = choice.message.content or ""
            out.append((truncate_at_code_end(text) if sampling.stop_at_code_end else text, per))
        return out

    def _one(self, requests, index: int, samples: list[int], sampling, on_sample) -> list[Completion]:
        request = requests[index]
        seed = derive_seed(sampling.seed, request.task_id, request.round)
        texts = None
        if not self.per_sample:
            try:
                answers = self._call(request, max(samples) + 1, sampling, seed)
                texts = [answers[s] for s in samples]
            except FewerChoices:
                with self.lock:
                    self.fallbacks += 1
                    self.per_sample = True
        if texts is None:
            texts = [self._call(request, 1, sampling, derive_seed(seed, s))[0] for s in samples]
        if on_sample:
            for _, tokens in texts:
                on_sample(tokens)
        return [Completion(request.task_id, request.round, s, text, tokens) for s, (text, tokens) in zip(samples, texts)]

    def run_batch(self, requests, batch: Batch, sampling: SamplingConfig, on_sample=None) -> list[Completion]:
        by_request: dict[int, list[int]] = {}
        for unit in batch.units:
            by_request.setdefault(unit.request, []).append(unit.sample)
        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(self._one, requests, i, samples, sampling, on_sample)
                       for i, samples in by_request.items()]
            return [c for future in futures for c in future.result()]
