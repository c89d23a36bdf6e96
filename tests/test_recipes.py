"""Recipes: the paper's settings once, each model's differences beside its notebooks, overlays on top."""

from __future__ import annotations

import ast

import nbformat
import pytest

from shared_utils import notebooks, paths, recipes
from shared_utils.cli import dpo_flags, lora_flags, main, trl_flags_of
from shared_utils.models import REGISTRY


def test_the_package_defaults_are_the_papers_settings():
    stage1 = recipes.load().training("stage1")
    lora = stage1.peft_config()
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias, str(lora.task_type)) == (16, 32, 0.1, "none", "CAUSAL_LM")
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    config = stage1.dpo_config("unused", progress=False)
    assert (config.beta, config.learning_rate, config.max_length, config.num_train_epochs) == (0.1, 5e-7, 1024, 250)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (1, 16)
    assert config.activation_checkpointing and config.loss_type == ["sigmoid"] and config.report_to == []
    assert stage1.reference == "base" and stage1.max_pairs is None
    stage2a, evaluation = recipes.load().section("stage2a"), recipes.load().section("evaluation")
    assert (stage2a["samples"], stage2a["rounds"], evaluation["samples"], evaluation["runs"]) == (10, 5, 10, 5)


def test_every_registered_model_has_a_recipe_beside_its_notebooks(tmp_path):
    folders = {path.parent.name for path in paths.FINE_TUNING_DIR.glob(f"*/{recipes.FILE_NAME}")}
    assert folders >= set(REGISTRY)
    stray = paths.model_dir("not-a-model")
    try:
        stray.mkdir()
        (stray / recipes.FILE_NAME).write_text("base: gpt-5\n")
        with pytest.raises(ValueError, match="`base` must name a registered model"):
            recipes.load("not-a-model").layout()
    finally:
        (stray / recipes.FILE_NAME).unlink()
        stray.rmdir()


def test_a_models_recipe_overrides_only_what_it_names():
    gemma = recipes.load("gemma3-1b").training("stage1")
    assert gemma.dpo["per_device_train_batch_size"] == 2 and gemma.dpo["learning_rate"] == 5e-7
    # The authors' gemma3-12b batch: 2 x 16 in Stage 1, 1 x 16 in Stage 2c; GRPO sized for one GPU.
    gemma12 = recipes.load("gemma3-12b")
    assert gemma12.training("stage1").dpo["per_device_train_batch_size"] == 2
    assert gemma12.training("stage2c").dpo["per_device_train_batch_size"] == 1
    assert gemma12.training("stage2c").dpo["gradient_accumulation_steps"] == 16
    assert gemma12.grpo().grpo["per_device_train_batch_size"] == 4
    twelve, paper = gemma12.settings, recipes.load().settings
    assert twelve.pop("grpo") != paper.pop("grpo")
    assert recipes.merge(twelve, {"stage1": {"training": {"per_device_train_batch_size": 1}}}) == recipes.merge(
        paper, {"stage2c": {"training": {"per_device_train_batch_size": 1}}})
    demo = recipes.load("smollm2-135m")
    assert demo.problem_set == "demo" and demo.training("stage1").epochs == 2
    assert demo.training("stage1").max_pairs == 32 and not demo.training("stage1").dpo["activation_checkpointing"]
    assert demo.layers == ("shared_utils/resources/recipes/paper.yaml", "2_Fine_Tuning_Process/smollm2-135m/recipe.yaml")


def test_stage2c_starts_from_stage1_and_changes_only_its_own(tmp_path):
    """Where qwen3-4b's Stage-2c beta changes: its recipe's stage2c.training, nothing else moves."""
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text("stage2c:\n  training:\n    beta: 0.05\n  reference: dpo\n")
    recipe = recipes.load("qwen3-4b", recipe=recipe_file)
    stage1, stage2c = recipe.training("stage1"), recipe.training("stage2c")
    assert stage2c.dpo_config("unused").beta == 0.05 and stage1.dpo_config("unused").beta == 0.1
    assert stage2c.reference == "dpo" and stage2c.lora == stage1.lora
    assert stage2c.dpo["learning_rate"] == stage1.dpo["learning_rate"] == 5e-7
    assert recipe.layout().further_adapter(1).name == "qwen3-4b-dpo-250-epochs-further-250-epochs"


def test_overlays_lay_key_by_key_in_order():
    smoke = recipes.load("smollm2-135m", recipes.SMOKE, {"evaluation": {"runs": 3}})
    assert smoke.training("stage1").dpo["max_steps"] == 1 and smoke.training("stage2c").max_pairs == 4
    assert smoke.training("stage1").dpo["learning_rate"] == 1e-4  # the model's, untouched by the overlay
    assert smoke.section("evaluation") == {"runs": 3, "samples": 2, "temperature": 0.6, "top_p": 0.9, "top_k": None,
                                           "max_new_tokens": 32, "stop_at_code_end": False, "limit": 2,
                                           "subset": "first", "humaneval": False, "seed": 0,
                                           "adapters": {}, "local_engine": None}
    assert smoke.layers[-2:] == ("shared_utils/resources/recipes/smoke.yaml", "overrides")


def test_misspelt_keys_name_their_layer_and_key(tmp_path):
    with pytest.raises(ValueError, match=r"overrides: unknown key\(s\) stage2a.sample; stage2a takes samples"):
        recipes.load("smollm2-135m", {"stage2a": {"sample": 3}})
    bad = tmp_path / "recipe.yaml"
    bad.write_text("evaluatoin:\n  runs: 1\n")
    with pytest.raises(ValueError, match=r"recipe.yaml: unknown section 'evaluatoin'"):
        recipes.load("gemma3-4b", recipe=bad)
    with pytest.raises(ValueError, match=r"stage1: training: .*betta"):
        recipes.load("gemma3-4b", {"stage1": {"training": {"betta": 0.2}}}).training("stage1")
    with pytest.raises(ValueError, match=r"stage2c: lora: .*'rank'"):
        recipes.load("gemma3-4b", {"stage1": {"lora": {"rank": 8}}}).training("stage2c")
    with pytest.raises(ValueError, match=r"stage2c: reference must be one of"):
        recipes.load("gemma3-4b", {"stage2c": {"reference": "policy"}}).training("stage2c")


def test_the_recipes_sections_are_the_pipelines_stages():
    from shared_utils.layout import STAGES

    stages = [section for section, values in recipes.read_yaml(recipes.PAPER).items()
              if isinstance(values, dict) and section != "protocol"]
    assert stages == list(STAGES) == ["global", "stage1", "stage2a", "stage2c", "grpo", "evaluation"]


@pytest.mark.parametrize("old, new", [("global_pairs", "global"), ("eval", "evaluation")])
def test_a_recipe_with_an_old_section_name_is_refused_with_the_new_one(tmp_path, old, new):
    old_recipe = tmp_path / "recipe.yaml"
    old_recipe.write_text(f"{old}:\n  limit: 3\n")
    with pytest.raises(ValueError, match=rf"^{old_recipe}: section {old!r} is now {new!r}") as refused:
        recipes.load("gemma3-4b", recipe=old_recipe)
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match=rf"^overrides: section {old!r} is now {new!r}"):
        recipes.load("gemma3-4b", {old: {"limit": 3}})


def test_train_flags_are_trls_own_fields():
    assert dpo_flags(["--beta", "0.05", "--learning_rate", "1e-6", "--activation_checkpointing", "false"]) == {
        "beta": 0.05, "learning_rate": 1e-6, "activation_checkpointing": False}
    with pytest.raises(ValueError, match="--betta 1: neither this verb's nor a TRL DPOConfig field"):
        dpo_flags(["--betta", "1"])
    assert lora_flags(["r=32", "target_modules=[q_proj, v_proj]", "lora_dropout=0.0"]) == {
        "r": 32, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.0}
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        lora_flags(["r"])
    assert main(["train", "--model", "gemma3-4b", "--epochs", "3"]) == 2  # the old flag is not DPOConfig's


def test_grpo_flags_are_grpo_config_fields(capsys):
    from trl import GRPOConfig

    assert trl_flags_of(GRPOConfig, ["--num_generations", "4", "--beta", "0"]) == {"num_generations": 4, "beta": 0.0}
    assert main(["grpo", "--model", "smollm2-135m", "--num_generationz", "4"]) == 2
    assert "nor a TRL GRPOConfig field" in capsys.readouterr().err


def test_notebooks_name_the_recipe_and_hold_no_sizes():
    """Sizes live in recipes: a parameters cell sets paths, the recipe, overrides and the iteration, nothing else."""
    allowed = {"recipe", "overrides", "model_path", "global_dir", "fine_tuning_dir", "output_dir", "iteration",
               "backend", "responses", "generator", "problem_set", "problems_dir", "source", "protocol", "overwrite",
               "cpu_demo"}
    for target in notebooks.targets():
        cells = nbformat.read(target.path, as_version=4).cells
        parameters = next(cell for cell in cells if "parameters" in cell.metadata.get("tags", []))
        names = {node.targets[0].id for node in ast.parse(parameters.source).body}
        # the paper-outputs notebook trains nothing: it names the authors' folder, verdict reuse and its workers
        extra = {"data", "reuse", "workers"} if target.path.name == "paper_outputs.ipynb" else set()
        assert names <= allowed | extra, (target.path, names - allowed - extra)
        if target.model is not None:
            assert {"recipe", "overrides", "overwrite"} <= names, target.path


def test_lora_flags_reach_the_trained_settings_and_misspelt_ones_fail(train_calls, tmp_path):
    base = ["train", "--model", "qwen3-4b", "--stage", "stage2c", "--dataset", str(tmp_path), "--out", str(tmp_path / "a"),
            "--init-adapter", str(tmp_path)]
    assert main(base + ["--lora", "r=32", "--lora", "target_modules=[q_proj, v_proj]", "--beta", "0.05"]) == 0
    settings = train_calls["settings"]
    assert settings.lora["r"] == 32 and settings.lora["target_modules"] == ["q_proj", "v_proj"]
    assert settings.lora["lora_alpha"] == 32 and settings.dpo["beta"] == 0.05  # the rest stays the recipe's
    assert settings.peft_config().r == 32
    assert main(base + ["--lora", "rank=32"]) == 2  # LoraConfig rejects it, naming the recipe layers
