"""Model loading on GPUs, checked on the CPU: what ``from_pretrained`` is asked for."""

from __future__ import annotations

import types

import accelerate
import transformers

from shared_utils import models


def test_a_4bit_model_loads_on_the_gpu_of_its_local_process(tiny_model_factory, monkeypatch):
    """Under ``accelerate launch`` the process of local rank 1 must not put its copy on GPU 0."""
    tiny = tiny_model_factory("smollm2-135m")
    asked = {}

    class Loaded:
        def eval(self):
            return self

    def from_pretrained(path, **kwargs):
        asked.update(kwargs)
        return Loaded()

    monkeypatch.setattr(accelerate, "PartialState", lambda *a, **k: types.SimpleNamespace(local_process_index=1))
    monkeypatch.setattr(models, "device", lambda: "cuda")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    models.load_model(str(tiny), load_in_4bit=True)
    assert asked["device_map"] == {"": 1}
    assert asked["quantization_config"].load_in_4bit
