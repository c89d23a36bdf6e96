"""The vLLM backend against a fake ``vllm`` module that records what the engine is asked for."""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import types

import pytest

from shared_utils import data, files, models, prompts, recipes, stages
from shared_utils.generation import Request, SamplingConfig, generate, vllm_backend
from shared_utils.generation.checkpoint import meta_path
from stand_ins import recorded_adapter

TINY = "qwen3-4b"
OPENING_ONLY = "Here it is:\n```\ndef f():\n    return 1\n"
CLOSED = OPENING_ONLY + "```\nThat was f.\n```python\nmore()\n```"


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` whose engine records its options and the sampling parameters, and answers ``CLOSED`` (or, for
    the i-th output of a prompt, ``record["answers"][i]`` where a test sets them)."""
    record: dict = {"params": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)
            record["params"].append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            record["engine"] = kwargs
            record["engines"] = record.get("engines", 0) + 1

        def generate(self, inputs, params, lora_request=None, use_tqdm=True):
            record.setdefault("prompt_lengths", []).extend(len(item["prompt_token_ids"]) for item in inputs)
            record.setdefault("lora_requests", []).append(lora_request)
            answers = record.get("answers", [CLOSED])
            choices = [types.SimpleNamespace(text=answers[i % len(answers)], token_ids=list(range(40)))
                       for i in range(max(param.n for param in params))]
            return [types.SimpleNamespace(outputs=choices[:param.n]) for param in params]

    class LoRARequest:
        def __init__(self, lora_name, lora_int_id, lora_path):
            self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path

    module = types.ModuleType("vllm")
    module.__version__ = "0.0-fake"
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)  # libraries ask find_spec("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)
    monkeypatch.setattr(vllm_backend, "_ENGINE", {})  # no engine kept from another test
    monkeypatch.setattr(vllm_backend, "_LORA_IDS", {})
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


@pytest.fixture
def on_a_gpu(fake_vllm, monkeypatch):
    """vLLM usable (importable, a GPU present), as the backend choice asks; loading local weights fails."""
    monkeypatch.setattr(vllm_backend, "available", lambda: True)
    monkeypatch.setattr(models, "wants_4bit", lambda spec, requested=None: False)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("loaded the weights locally"))
    return fake_vllm


def test_evaluation_on_a_gpu_loads_the_base_once_and_each_adapter_as_a_lora_request(on_a_gpu, tiny, tmp_path):
    from shared_utils import evaluation

    settings = recipes.load("smollm2-135m", {"evaluation": {"runs": 1, "samples": 1, "limit": 2,
                                                            "max_new_tokens": 16}})
    layout = settings.layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model",
                             evaluation_dir=tmp_path / "eval")
    data.prepare("demo", layout.global_.folder)
    stage1, further = recorded_adapter(layout, "dpo"), recorded_adapter(layout, "dpo-further")
    plan = stages.evaluation_plan(settings, layout, model=str(tiny))
    assert plan.backend == "vllm"
    for variant in plan.variants():
        evaluation.run_variant(plan, variant, progress=False)
    assert on_a_gpu["engines"] == 1 and on_a_gpu["engine"]["enable_lora"] is True
    base, first, second = on_a_gpu["lora_requests"]
    assert base is None
    assert (first.lora_path, second.lora_path) == (str(stage1.resolve()), str(further.resolve()))
    assert first.lora_int_id != second.lora_int_id and first.lora_name != second.lora_name


def test_self_generation_on_a_gpu_samples_the_start_adapter_through_vllm(on_a_gpu, tiny, tmp_path):
    settings = recipes.load("smollm2-135m", {"stage2a": {"rounds": 1, "samples": 2, "limit": 2}})
    layout = settings.layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model")
    data.prepare("demo", layout.global_.folder)
    start = recorded_adapter(layout, "dpo")
    local = stages.self_generate(settings, layout, 1, model=str(tiny), progress=False)
    assert local.rounds["samples"].tolist() == [4]
    assert [request.lora_path for request in on_a_gpu["lora_requests"]] == [str(start.resolve())]
    assert on_a_gpu["engine"]["dtype"] == "auto"  # the corrected protocol keeps the model's (a folder's: vLLM's pick)


def test_the_4bit_policy_quantizes_in_vllm_too(fake_vllm, tiny, monkeypatch):
    """A model the policy loads in 4-bit (gemma3-12b under 40 GB) is quantized by vLLM as it loads, not run in bf16."""
    monkeypatch.setattr(models, "wants_4bit", lambda spec, requested=None: True)
    generate(requests_for(1), backend="vllm", model=str(tiny), sampling=SamplingConfig(n=1), progress=False)
    assert fake_vllm["engine"]["quantization"] == "bitsandbytes"
    generate(requests_for(1), backend="vllm", model=str(tiny), sampling=SamplingConfig(n=1), progress=False,
             quantization="fp8")
    assert fake_vllm["engine"]["quantization"] == "fp8" and fake_vllm["engines"] == 2


def test_self_generation_under_the_papers_protocol_generates_in_float32_to_the_end_and_says_so(on_a_gpu, tiny,
                                                                                             tmp_path):
    """The authors' Stage 2a: float32 weights, no code-end stop, the answers as generated stored as chosen and
    rejected; the local dataset's provenance names the engine and its dtype."""
    settings = recipes.load("smollm2-135m", {"stage2a": {"rounds": 1, "samples": 2, "limit": 1}}, protocol="paper")
    layout = settings.layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model")
    data.prepare("demo", layout.global_.folder, "paper")
    recorded_adapter(layout, "dpo")
    (problem,) = data.load_problems(layout.global_.train_problems)[:1]
    short = f"```python\n{problem['code']}\n```\n"
    longer = f"```python\nimport math\n\n\n{problem['code']}\n```  \n"
    on_a_gpu["answers"] = [short, longer]
    local = stages.self_generate(settings, layout, 1, model=str(tiny), progress=False)
    assert on_a_gpu["engine"]["dtype"] == "float32"
    (row,) = local.rows
    assert {row["chosen"], row["rejected"]} == {short.strip(), longer.strip()}
    recorded = files.read_provenance(local.dataset)
    assert recorded["generation"]["backend"] == "vllm" and recorded["generation"]["dtype"] == "float32"
    assert recorded["sampling"]["stop_at_code_end"] is False and recorded["protocol"]["generation_dtype"] == "float32"
