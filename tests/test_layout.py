"""The artifact layout: the paper's names, every self-tuning iteration, and the evaluation that finds them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from shared_utils import evaluation, paths, recipes
from shared_utils.layout import ArtifactLayout, GlobalLayout
from shared_utils.models import get_spec
from stand_ins import fake_adapter, recorded_adapter


def _layout(tmp_path, epochs=250, further_epochs=None):
    return ArtifactLayout.for_model(get_spec("gemma3-4b"), problem_set="mbpp", epochs=epochs,
                                    further_epochs=further_epochs,
                                    global_dir=tmp_path / "global", model_dir=tmp_path / "model",
                                    evaluation_dir=tmp_path / "eval")


def test_paper_names_for_stage1_and_every_iteration(tmp_path):
    layout = _layout(tmp_path, epochs=250, further_epochs=100)
    assert layout.stage1_adapter == tmp_path / "model" / "gemma-3-4b-dpo-250-epochs"
    assert layout.further_adapter(1).name == "gemma-3-4b-dpo-250-epochs-further-100-epochs"
    assert layout.further_adapter(2).name == "gemma-3-4b-dpo-250-epochs-further-100-epochs-iteration-2"
    assert layout.local_dataset(1).name == "further_dpo_dataset_gemma3_4b_250_epochs"
    assert layout.local_dataset(2).name == "further_dpo_dataset_gemma3_4b_250_epochs_iteration_2"
    assert layout.generation_checkpoint(2).name == "further_dpo_dataset_gemma3_4b_250_epochs_iteration_2.generation.jsonl"
    with pytest.raises(ValueError, match="iteration must be 1 or more"):
        layout.further_adapter(0)


def test_the_recipe_names_the_epochs_and_folders_default_to_the_repository():
    layout = recipes.load("smollm2-135m").layout()
    assert layout.further_adapter(1).name == "smollm2-135m-dpo-2-epochs-further-2-epochs"
    assert layout.model_dir == paths.model_dir("smollm2-135m")
    assert layout.evaluation_dir == paths.evaluation_dir("smollm2-135m")
    assert layout.global_.folder == paths.global_dir("demo")
    assert GlobalLayout.for_problem_set("mbpp").dataset.parent == paths.GLOBAL_DIR


def test_variants_follow_the_adapters_that_exist_through_every_iteration(tmp_path):
    layout = _layout(tmp_path)
    assert layout.variants() == ["base"]
    for variant in ("dpo", "dpo-further", "dpo-further-iteration-2", "dpo-further-iteration-4"):
        recorded_adapter(layout, variant)  # a gap: iteration 3 is missing, so 4 is not reachable
    fake_adapter(layout.further_adapter(3))  # on disk but never recorded: not an input
    assert layout.variants() == ["base", "dpo", "dpo-further", "dpo-further-iteration-2"]
    assert layout.adapter("dpo-further-iteration-2") == layout.further_adapter(2)
    assert layout.start_adapter(1) == layout.stage1_adapter and layout.start_adapter(3) == layout.further_adapter(2)
    assert layout.adapter("base") is None
    for bad in ("dpo-further-iteration-1", "dpo-further-iteration-x", "sft"):
        with pytest.raises(ValueError, match="unknown variant"):
            layout.adapter(bad)


def test_run_files_are_named_per_benchmark(tmp_path):
    layout = _layout(tmp_path)
    assert layout.run_stem("dpo", 3).name == "gemma3_4b_dpo_model_output_run_3"
    assert layout.run_stem("base", 0, "humaneval").name == "humaneval_gemma3_4b_base_model_output_run_0"
    assert layout.comparison("humaneval").name == "humaneval_gemma3_4b_comparison.json"
    with pytest.raises(ValueError, match="unknown benchmark 'apps'"):
        layout.run_stem("base", 0, "apps")


def _scores(layout, variant, benchmark, passed_per_run):
    """Per-sample score tables as ``run_variant`` saves them: one row per (task, sample)."""
    from shared_utils import scoring

    for run, passed in enumerate(passed_per_run):
        frame = pd.DataFrame({"task_id": [1, 1, 2, 2], "sample": [0, 1, 0, 1], "passed": passed,
                              "mi": [70.0, 80.0, 60.0, 90.0]})
        for mode in evaluation.SCORINGS:
            file = scoring.score_files(layout.run_stem(variant, run, benchmark), mode)["samples"]
            file.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(file)


def test_comparison_covers_every_iteration_and_humaneval_when_computed(tmp_path):
    layout = _layout(tmp_path)
    for variant in ("dpo", "dpo-further", "dpo-further-iteration-2"):
        recorded_adapter(layout, variant)
    plan = evaluation.EvalPlan(layout, model="gemma3-4b", runs=2, samples=2, max_new_tokens=8)
    runs = {"base": [[False, False, False, True]] * 2, "dpo": [[True, False, False, True]] * 2,
            "dpo-further": [[True, True, False, True]] * 2, "dpo-further-iteration-2": [[True, True, True, True]] * 2}
    for variant, passed in runs.items():
        _scores(layout, variant, "mbpp", passed)

    report = evaluation.comparison(plan)
    assert report.humaneval is None and "HumanEval" not in report.text()
    assert list(dict.fromkeys(report.per_run["variant"])) == list(runs)
    assert report.table.loc[("dpo-further-iteration-2", "paper"), "pass@1"] == "1.0 ± 0.0"
    steps = set(zip(report.paired["from"], report.paired["to"]))
    assert steps == {("base", "dpo"), ("dpo", "dpo-further"), ("dpo-further", "dpo-further-iteration-2"),
                     ("base", "dpo-further-iteration-2")}
    assert json.loads(layout.comparison().read_text())["per_run"]

    _scores(layout, "base", "humaneval", [[True, False, True, False]] * 2)
    report = evaluation.comparison(plan)
    assert report.humaneval is not None and "HumanEval" in report.text()
    assert report.humaneval.table.loc[("base", "paper"), "pass@2"] == "1.0 ± 0.0"
    assert layout.comparison("humaneval").is_file()
