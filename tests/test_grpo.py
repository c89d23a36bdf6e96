"""GRPO (``training.grpo``) on the embedded model: one real optimisation step in which a reward that
favours a marker raises the marker's probability, and the adapter folder it leaves behind."""

from __future__ import annotations

import dataclasses
import json

import pytest
from huggingface_hub import ModelCard

from shared_utils import data, prompts, recipes
from shared_utils.layout import GRPO
from shared_utils.training import train_grpo
from stand_ins import recorded_adapter

pytestmark = pytest.mark.slow

MARKER = "```"  # a likely but not certain first token of the embedded model's answers (about 25%)
hits: list[int] = []


def marker(completions, **_):
    """1 for a completion holding the marker, else 0 (one token each: the first one of the answer)."""
    rewards = [float(MARKER in text) for text in (completion[0]["content"] for completion in completions)]
    hits.append(int(sum(rewards)))
    return rewards


def first_token_probability(model, adapter, problem) -> float:
    import torch

    from shared_utils.models import load_model

    loaded = load_model(model, adapter=adapter)
    inputs = loaded.tokenizer.apply_chat_template(prompts.messages(problem["text"]), add_generation_prompt=True,
                                                  return_tensors="pt", return_dict=True)
    (token,) = loaded.tokenizer.encode(MARKER, add_special_tokens=False)
    with torch.no_grad():
        return float(loaded.model(**inputs).logits[0, -1].softmax(-1)[token])


@pytest.fixture(scope="module")
def marker_run(tmp_path_factory):
    problem = data.demo_problems("train")[0]
    settings = recipes.load("smollm2-135m").grpo()
    settings = dataclasses.replace(settings, start="base", limit=1).replace(
        max_steps=1, num_generations=16, per_device_train_batch_size=16, gradient_accumulation_steps=1,
        max_completion_length=1, temperature=1.0, learning_rate=1e-3, beta=0.04)
    out = tmp_path_factory.mktemp("grpo") / "smollm2-135m-grpo"
    result = train_grpo("smollm2-135m", [problem], out, settings=settings, reward=marker, progress=False)
    return problem, result


def test_a_reward_for_a_marker_raises_its_probability_in_one_step(marker_run):
    problem, result = marker_run
    assert 0 < hits[0] < 16, "the group needs samples with and without the marker to have an advantage"
    before = first_token_probability("smollm2-135m", None, problem)
    after = first_token_probability("smollm2-135m", result.adapter_dir, problem)
    assert after > before * 1.1, (before, after)


def test_the_adapter_carries_its_card_log_plots_and_provenance(marker_run):
    _, result = marker_run
    folder = result.adapter_dir
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "provenance.json",
            "training_log.csv"} <= {path.name for path in folder.iterdir()}
    assert not (folder / "ref").exists() and not folder.with_name(folder.name + ".work").exists()
    record = json.loads((folder / "provenance.json").read_text())
    assert record["kind"] == "grpo-lora-adapter" and record["global_step"] == 1 and record["init_adapter"] is None
    assert record["reward_function"] == "marker" and record["grpo"]["num_generations"] == 16
    assert "rewards.png" in record["plots"] and "kl" in record["metrics"]
    history = json.loads((folder / "log_history.json").read_text())
    assert history[0]["step"] == 1 and {"reward", "kl", "rewards/marker/mean"} <= set(history[0])
    assert "Beyond the paper" in (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")  # PEFT's metadata kept, as on the DPO adapters' cards
    assert card.data.library_name == "peft" and {"grpo", "lora", "peft"} <= set(card.data.tags)


def test_grpo_settings_are_checked_and_the_layout_names_its_adapter(tmp_path):
    recipe = recipes.load("smollm2-135m", {"grpo": {"start": "dpo"}})
    layout = recipe.layout(model_dir=tmp_path)
    assert GRPO not in layout.variants()
    recorded_adapter(layout, GRPO)
    assert layout.variants() == ["base", GRPO]  # evaluated, and compared, once it is recorded
    with pytest.raises(FileNotFoundError, match="no dpo recorded"):
        layout.grpo_start("dpo")
    recorded_adapter(layout, "dpo")
    recorded_adapter(layout, "dpo-further")
    assert layout.grpo_start("dpo") == layout.stage1_adapter and layout.grpo_start("base") is None
    assert layout.grpo_start("dpo-further") == layout.further_adapter(1)
    assert layout.adapter(GRPO) == layout.grpo_adapter and layout.grpo_adapter.name == "smollm2-135m-grpo"
    for overlay in ({"grpo": {"start": "sft"}}, {"grpo": {"training": {"num_generation": 4}}},
                    {"grpo": {"reward": {"correctness": "most"}}}, {"grpo": {"reward": {"weight": 1}}}):
        with pytest.raises(ValueError, match="grpo"):
            recipes.load("smollm2-135m", overlay).grpo()


def test_the_recipe_rewards_reach_the_trainer_by_name_with_their_weights(tmp_path):
    from shared_utils.training.grpo import build_trainer, prompt_dataset

    settings = recipes.load("smollm2-135m", {"grpo": {"reward": {"functions": {"format": 0.5}}}}).grpo()
    problems = data.demo_problems("train")[:1]
    trainer = build_trainer("smollm2-135m", prompt_dataset(problems), tmp_path, settings=settings, progress=False)
    assert trainer.reward_func_names == ["correctness", "maintainability", "format"]
    assert trainer.reward_weights.tolist() == pytest.approx([0.5, 0.25, 0.25])
    assert trainer.args.scale_rewards == "none" and not trainer.args.mask_truncated_completions
    judge = trainer.reward_funcs[0].judge
    assert all(function.judge is judge for function in trainer.reward_funcs)
    assert judge.eos_token_ids == tuple(trainer.eos_token_ids) and judge.max_completion_length == 128
