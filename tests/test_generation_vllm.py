"""The vLLM backend against a fake ``vllm`` module that records what the engine is asked for."""

from __future__ import annotations

import json
import shutil
import sys
import types

import pytest

from shared_utils import prompts
from shared_utils.generation import Request, SamplingConfig, generate
from shared_utils.generation.checkpoint import meta_path

TINY = "qwen3-4b"
OPENING_ONLY = "Here it is:\n```\ndef f():\n    return 1\n"
CLOSED = OPENING_ONLY + "```\nThat was f.\n```python\nmore()\n```"


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` whose engine records its options and the sampling parameters, and answers ``CLOSED``."""
    record: dict = {"params": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)
            record["params"].append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            record["engine"] = kwargs

        def generate(self, inputs, params, lora_request=None, use_tqdm=True):
            record.setdefault("prompt_lengths", []).extend(len(item["prompt_token_ids"]) for item in inputs)
            choice = types.SimpleNamespace(text=CLOSED, token_ids=list(range(40)))
            return [types.SimpleNamespace(outputs=[choice] * param.n) for param in params]

    module = types.ModuleType("vllm")
    module.__version__ = "0.0-fake"
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return record


@pytest.fixture(scope="module")
def tiny(tiny_model_factory, tmp_path_factory):
    """A copy of the look-alike (shared by other tests) whose generation_config has Qwen3-2507's top_k."""
    folder = tmp_path_factory.mktemp("vllm") / "model"
    shutil.copytree(tiny_model_factory(TINY), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "top_k": 20}))
    return folder


def requests_for(count: int) -> list[Request]:
    return [Request(i, prompts.messages("Write f. " + "Say more. " * (10 * i))) for i in range(count)]


def test_vllm_engine_fits_the_prompts_and_samples_like_the_local_loop(fake_vllm, tiny, tmp_path):
    sampling = SamplingConfig(n=2, max_new_tokens=64)
    completions = generate(requests_for(3), backend="vllm", model=str(tiny), sampling=sampling, progress=False,
                           checkpoint=tmp_path / "samples.jsonl")
    assert fake_vllm["engine"]["max_model_len"] == max(fake_vllm["prompt_lengths"]) + 64
    assert {params["top_k"] for params in fake_vllm["params"]} == {20}
    assert not any(params.get("stop") for params in fake_vllm["params"])
    # cut after the first closed block, as the local loop stops; never at the opening fence
    assert [c.text for c in completions] == [OPENING_ONLY + "```"] * 6
    meta = json.loads(meta_path(tmp_path / "samples.jsonl").read_text())
    assert meta["effective_top_k"] == 20 and meta["max_model_len"] == fake_vllm["engine"]["max_model_len"]


def test_vllm_top_k_set_in_the_sampling_config_wins(fake_vllm, tiny):
    generate(requests_for(1), backend="vllm", model=str(tiny), sampling=SamplingConfig(n=1, top_k=0), progress=False)
    assert fake_vllm["params"][0]["top_k"] == -1  # vLLM's "no top-k"
