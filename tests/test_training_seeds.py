"""Several training seeds, for real: a tiny look-alike trained twice by Stage 1 (seeds 42 and 43), both adapters
evaluated by generating, and the comparison resampling over them. Smoke sizes; about a minute on a CPU."""

from __future__ import annotations

import json

import pytest

from shared_utils import data, preferences, recipes, stages
from shared_utils.layout import LABELLED_PAIRS, STAGE1
from stand_ins import TRAINABLE_PAIRS



@pytest.mark.slow
def test_two_seeds_of_a_tiny_lookalike_are_trained_evaluated_and_resampled(tmp_path, tiny_model_factory):
    tiny = str(tiny_model_factory("qwen3-4b"))
    recipe = recipes.load("qwen3-4b", recipes.SMOKE, {
        "training_seeds": 2, "problem_set": "demo",
        "stage1": {"max_pairs": 4, "training": {"learning_rate": 1e-2, "max_length": 128, "per_device_train_batch_size": 2,
                                                "gradient_accumulation_steps": 1, "activation_checkpointing": False}},
        "evaluation": {"runs": 1, "samples": 2, "max_new_tokens": 16, "limit": 2}})
    layout = recipe.layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model",
                           evaluation_dir=tmp_path / "evaluation")
    data.prepare("demo", layout.global_.folder)
    labelled = preferences.save_pairs(TRAINABLE_PAIRS, layout.global_.dataset)
    layout.global_.manifest.record(labelled, LABELLED_PAIRS, {})  # as the labelling records it

    stages.train_stage1(recipe, layout, model=tiny, progress=False)
    adapters = [layout.with_seed(seed).recorded(STAGE1) for seed in (0, 1)]
    assert [adapter.name for adapter in adapters] == ["qwen3-4b-dpo-250-epochs", "qwen3-4b-dpo-250-epochs-seed-1"]
    assert [json.loads((adapter / "provenance.json").read_text())["seed"] for adapter in adapters] == [42, 43]
    weights = [(adapter / "adapter_model.safetensors").read_bytes() for adapter in adapters]
    assert weights[0] != weights[1]  # another seed, another adapter

    report = stages.evaluate(recipe, layout, model=tiny, progress=False)
    dpo = report.samples[(STAGE1, "paper")]
    assert sorted(set(dpo["seed"])) == [0, 1] and set(report.samples[("base", "paper")]["seed"]) == {0}
    assert sorted(report.per_run.loc[report.per_run["variant"] == STAGE1, "seed"].unique()) == [0, 1]
    compared = report.paired[(report.paired["scoring"] == "paper")]
    assert len(compared) and compared["metric"].str.startswith("pass@").any()
