"""The record of what each stage produced: later stages read their inputs from it, and a changed setting
never returns an old result. Training and sampling are stand-ins (``train_calls``), so these run in seconds."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared_utils import data, recipes, stages
from shared_utils.layout import FURTHER, GRPO, LOCAL_PAIRS, STAGE1
from shared_utils.manifest import Manifest, differences
from stand_ins import TOY_PAIRS, fake_adapter, global_dataset


@pytest.fixture
def folders(tmp_path):
    """The demo problems and a labelled global dataset under tmp_path; the model's folder beside them."""
    layout = recipes.load("smollm2-135m").layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model",
                                                 evaluation_dir=tmp_path / "eval")
    data.prepare("demo", layout.global_.folder)
    global_dataset(layout.global_.folder)
    return {"global_dir": tmp_path / "global", "model_dir": tmp_path / "model", "evaluation_dir": tmp_path / "eval"}


def _recipe_and_layout(folders, overrides=None):
    recipe = recipes.load("smollm2-135m", overrides or {})
    return recipe, recipe.layout(**folders)


@pytest.fixture
def sampled(monkeypatch):
    """Stage 2a's model and sampling stood in for: the adapter it loads is noted, every task yields a pair."""
    from shared_utils import self_generation

    seen = {}

    def load_model(model, *, adapter=None, dtype=None, **_):
        seen.update(adapter=adapter, dtype=dtype)
        return object()

    def self_generate(problems, **options):
        seen.update(problems=problems, options=options)
        return self_generation.SelfGenResult(passing={}, failed={}, passing_texts={},
                                             rounds=[{"round": 0, "samples": 2, "samples_passed": 2}])

    monkeypatch.setattr("shared_utils.models.load_model", load_model)
    monkeypatch.setattr(self_generation, "self_generate", self_generate)
    monkeypatch.setattr(self_generation, "local_pairs", lambda problems, result, **_: TOY_PAIRS[:2])
    return seen


@pytest.fixture
def grpo_calls(monkeypatch) -> list:
    from shared_utils.training import TrainResult

    calls = []

    def train(model, problems, out, *, init_adapter=None, **_):
        calls.append({"out": out, "init_adapter": init_adapter})
        fake_adapter(out, complete=True)
        return TrainResult(adapter_dir=out, metrics={}, log_csv=out, plots=[])

    monkeypatch.setattr("shared_utils.training.train_grpo", train)
    return calls


def test_stage2a_takes_its_problems_and_its_cpu_engine_from_the_recipe(folders, sampled):
    """The study's Stage 2a: the N train problems with the shortest reference solution, sampled by the fast local
    engine (bfloat16 weights, continuous batching, 64 rows); recorded in its identity, refused against the
    paper's float32 switch."""
    fast = {"batch_size": 64, "refill": True, "merge_adapter": True, "dtype": "bfloat16"}
    recipe, layout = _recipe_and_layout(folders, {"stage2a": {"subset": "shortest_reference", "limit": 3,
                                                              "local_engine": fast}})
    fake_adapter(layout.stage1_adapter, complete=True)
    layout.manifest.record(layout.stage1_adapter, STAGE1, {"made": "here"})
    local = stages.self_generate(recipe, layout, 1, progress=False)
    train = data.load_problems(layout.global_.train_problems)
    assert sampled["problems"] == data.subset(train, "shortest_reference", 3) != train[:3]
    assert sampled["dtype"] == "bfloat16" and sampled["options"]["sampling"].batch_size == 64
    assert (sampled["options"]["refill"], sampled["options"]["merge_adapter"]) == (True, True)
    assert layout.manifest.entry(local.dataset).identity["local_engine"] == fast
    paper = recipes.load("smollm2-135m", {"stage2a": {"local_engine": fast}}, protocol="paper")
    with pytest.raises(ValueError, match="stage2a.local_engine.dtype bfloat16 contradicts the protocol's "
                                         "generation_dtype float32"):
        stages.self_generate(paper, paper.layout(**folders), 1, progress=False)


def test_stage1_with_other_epochs_feeds_every_later_stage_without_a_path(folders, train_calls, sampled, grpo_calls):
    """Stage 1 run with 3 epochs (a notebook's overrides); the later notebooks keep the recipe's 2 and find it."""
    recipe, layout = _recipe_and_layout(folders, {"stage1": {"training": {"num_train_epochs": 3}}})
    stage1 = stages.train_stage1(recipe, layout).adapter_dir
    assert stage1.name == "smollm2-135m-dpo-3-epochs"

    recipe, layout = _recipe_and_layout(folders)  # the next notebooks: the recipe as it is
    assert layout.stage1_adapter.name == "smollm2-135m-dpo-2-epochs"  # where Stage 1 would write, not what it wrote
    local = stages.self_generate(recipe, layout, 1, progress=False)
    assert sampled["adapter"] == stage1 and len(local.rows) == 2
    further = stages.train_stage2(recipe, layout, 1).adapter_dir
    assert train_calls["calls"][-1]["init_adapter"] == stage1
    assert train_calls["calls"][-1]["dataset"] == local.dataset == layout.recorded(LOCAL_PAIRS, 1)
    stages.train_grpo(recipes.load("smollm2-135m", {"grpo": {"start": "dpo"}}), layout)
    assert grpo_calls[-1]["init_adapter"] == stage1

    plan = stages.evaluation_plan(recipe, layout)
    assert plan.variants() == ["base", STAGE1, FURTHER, GRPO]
    assert (plan.adapter(STAGE1), plan.adapter(FURTHER)) == (stage1, further)
    record = json.loads(layout.manifest.file.read_text())["artifacts"]
    assert record[stage1.name]["role"] == STAGE1 and record[stage1.name]["identity"]["dpo"]["num_train_epochs"] == 3
    assert record[further.name]["identity"]["init_adapter"] == str(stage1)
    assert record[local.dataset.name]["identity"]["start_adapter"] == str(stage1)
    assert {"created", "commit"} <= set(record[stage1.name])


@pytest.mark.parametrize("changed, field", [({"training": {"beta": 0.05}}, "dpo.beta: 0.1 -> 0.05"),
                                            ({"training": {"learning_rate": 3e-4}}, "dpo.learning_rate: 0.0001 -> 0.0003"),
                                            ({"lora": {"r": 8}}, "lora.r: 16 -> 8")])
def test_a_rerun_with_another_setting_is_not_served_the_old_adapter(folders, train_calls, capsys, changed, field):
    recipe, layout = _recipe_and_layout(folders)
    first = stages.train_stage1(recipe, layout).adapter_dir
    assert len(train_calls["calls"]) == 1

    stages.train_stage1(recipe, layout)  # the same settings: reused, and said so
    assert len(train_calls["calls"]) == 1
    printed = capsys.readouterr().out
    assert f"reusing {first}, trained " in printed and printed.rstrip().endswith("same settings")

    other, layout = _recipe_and_layout(folders, {"stage1": changed})
    with pytest.raises(ValueError, match="made with other settings") as refused:
        stages.train_stage1(other, layout)
    assert field in str(refused.value) and "new output folder" in str(refused.value)
    assert "overwrite=True" in str(refused.value) and len(train_calls["calls"]) == 1

    again = stages.train_stage1(other, layout, overwrite=True).adapter_dir
    assert again == first and len(train_calls["calls"]) == 2
    assert train_calls["calls"][-1]["settings"].as_dict() == other.training("stage1").as_dict()
    stages.train_stage1(other, layout)  # now recorded with the new settings: reused
    assert len(train_calls["calls"]) == 2


def test_what_was_made_from_a_replaced_adapter_is_refused_too(folders, train_calls, sampled):
    """Stage 1 trained again (overwrite): the local pairs sampled from its old weights are not reused."""
    recipe, layout = _recipe_and_layout(folders)
    stages.train_stage1(recipe, layout)
    stages.self_generate(recipe, layout, 1, progress=False)
    stages.self_generate(recipe, layout, 1, progress=False)  # reused: no sampling stand-in needed twice
    stages.train_stage2(recipe, layout, 1)
    assert stages.evaluation_plan(recipe, layout).variants() == ["base", STAGE1, FURTHER]
    other, layout = _recipe_and_layout(folders, {"stage1": {"training": {"beta": 0.3}}})
    stages.train_stage1(other, layout, overwrite=True)
    assert stages.evaluation_plan(recipe, layout).variants() == ["base", STAGE1]  # dpo-further came from the old one
    assert stages.train_stage2(recipe, layout, 1) is None  # no local pairs of the new adapter yet
    with pytest.raises(ValueError, match=r"start_adapter_sha256"):
        stages.self_generate(recipe, layout, 1, progress=False)
    assert stages.self_generate(recipe, layout, 1, progress=False, overwrite=True).dataset is not None
    with pytest.raises(ValueError, match=r"init_adapter_sha256"):
        stages.train_stage2(recipe, layout, 1)


def test_the_train_verb_finds_the_stage_inputs_in_the_record(folders, train_calls, sampled):
    from shared_utils.cli import main

    given = ["--global-dir", str(folders["global_dir"]), "--model-dir", str(folders["model_dir"])]
    assert main(["train", "--model", "smollm2-135m", "--num_train_epochs", "3", *given]) == 0
    recipe, layout = _recipe_and_layout(folders)
    stages.self_generate(recipe, layout, 1, progress=False)
    assert main(["train", "--model", "smollm2-135m", "--stage", "stage2c", *given]) == 0
    assert train_calls["calls"][-1]["init_adapter"].name == "smollm2-135m-dpo-3-epochs"
    assert main(["train", "--model", "smollm2-135m", "--num_train_epochs", "3", "--beta", "0.3", *given]) == 2


def test_an_unrecorded_artifact_is_never_reused_and_the_record_is_per_folder(tmp_path):
    manifest = Manifest(tmp_path)
    fake_adapter(tmp_path / "adapter")
    with pytest.raises(ValueError, match="does not record how it was made"):
        manifest.reuse(tmp_path / "adapter", {"beta": 0.1})
    assert manifest.reuse(tmp_path / "adapter", {"beta": 0.1}, overwrite=True) is None
    manifest.record(tmp_path / "adapter", STAGE1, {"dpo": {"beta": 0.1}, "path": tmp_path})
    assert manifest.reuse(tmp_path / "adapter", {"dpo": {"beta": 0.1}, "path": str(tmp_path)}).role == STAGE1
    with pytest.raises(ValueError, match="not inside"):
        manifest.record(tmp_path / "elsewhere" / "adapter", STAGE1, {})
    assert differences({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "d": 3}) == ["a.b: 1 -> 2", "c: 2 -> None",
                                                                          "d: None -> 3"]


def test_global_pairs_start_afresh_only_when_asked(tmp_path):
    """What an earlier run left to resume (local samples, remote requests) is discarded by ``overwrite`` alone."""
    import json

    from shared_utils.layout import GlobalLayout

    out = GlobalLayout(tmp_path)
    data.prepare("demo", tmp_path)
    problem = data.load_problems(out.train_problems)[0]
    responses = tmp_path / "answers.jsonl"
    responses.write_text(json.dumps({"task_id": problem["task_id"], "code_output_1": problem["code"],
                                     "code_output_2": problem["code"] + "\n"}) + "\n")
    out.pair_requests.mkdir()
    out.generation_checkpoint.write_text("")
    recipe = recipes.load(None, {"global": {"limit": 1}})
    stages.global_pairs(out, recipe, responses=responses, progress=False)
    assert out.pair_requests.is_dir() and out.generation_checkpoint.is_file()
    assert stages.global_pairs(out, recipe, responses=responses, progress=False, overwrite=True).saved == out.pairs
    assert not out.pair_requests.exists() and not out.generation_checkpoint.exists()


def test_a_changed_global_setting_is_not_served_the_old_pairs(tmp_path, train_calls):
    """The global pairs made again with another problem limit: Stage 1 reads the labelled pairs the global folder's
    record names, and refuses those labelled from the replaced pairs instead of training on them."""
    from shared_utils.layout import GLOBAL_PAIRS, LABELLED_PAIRS, TEST_PROBLEMS, TRAIN_PROBLEMS, GlobalLayout

    folders = {"global_dir": tmp_path / "global", "model_dir": tmp_path / "model"}
    out = GlobalLayout(folders["global_dir"])
    data.prepare("demo", out.folder)
    responses = tmp_path / "answers.jsonl"
    responses.write_text("".join(json.dumps({"task_id": p["task_id"], "code_output_1": p["code"],
                                             "code_output_2": "# the reference, commented\n" + p["code"]}) + "\n"
                                 for p in data.load_problems(out.train_problems)[:3]))

    def make_pairs(limit: int) -> None:
        recipe = recipes.load(None, {"global": {"limit": limit}})
        stages.global_pairs(out, recipe, responses=responses, progress=False)

    make_pairs(3)
    stages.label(out.pairs, out)
    recipe, layout = _recipe_and_layout(folders)
    stages.train_stage1(recipe, layout)
    assert train_calls["calls"][-1]["dataset"] == out.recorded(LABELLED_PAIRS) == out.dataset
    assert len(data.load_problems(out.recorded(LABELLED_PAIRS), required=())) == 3

    make_pairs(2)  # another global setting; the labelling not run again
    with pytest.raises(FileNotFoundError, match="no labelled-pairs recorded"):
        stages.train_stage1(recipe, layout)
    assert len(train_calls["calls"]) == 1
    stages.label(out.pairs, out)
    with pytest.raises(ValueError, match="dataset_sha256"):  # the adapter of the three pairs is not reused
        stages.train_stage1(recipe, layout)
    stages.train_stage1(recipe, layout, overwrite=True)
    assert len(data.load_problems(train_calls["calls"][-1]["dataset"], required=())) == 2

    record = json.loads(out.manifest.file.read_text())["artifacts"]
    assert {item["role"] for item in record.values()} == {TRAIN_PROBLEMS, TEST_PROBLEMS, GLOBAL_PAIRS, LABELLED_PAIRS}
    assert record[out.pairs.name]["identity"]["global"]["limit"] == 2
    assert record[out.pairs.name]["identity"]["problems"] == str(out.train_problems)
    assert record[out.dataset.name]["identity"]["pairs"] == str(out.pairs)
    assert record[out.train_problems.name]["identity"]["source"] == data.DEMO_SOURCE


def test_two_training_seeds_train_record_and_evaluate_an_adapter_each(folders, train_calls, sampled, grpo_calls):
    """training_seeds: 2: every DPO/GRPO stage trains seed 0 (the paper's names and seed) and seed 1 (its own folders,
    the stage's seed + 1, its own chain); the evaluation evaluates both and resamples over them."""
    from shared_utils import evaluation

    recipe, layout = _recipe_and_layout(folders, {"training_seeds": 2, "grpo": {"start": "dpo"}})
    first = stages.train_stage1(recipe, layout).adapter_dir
    assert first == layout.stage1_adapter and first.name == "smollm2-135m-dpo-2-epochs"
    seeded = layout.with_seed(1)
    assert [call["out"] for call in train_calls["calls"]] == [first, seeded.stage1_adapter]
    assert seeded.stage1_adapter.name == "smollm2-135m-dpo-2-epochs-seed-1"
    assert [call["settings"].dpo["seed"] for call in train_calls["calls"]] == [42, 43]
    stages.self_generate(recipe, layout, 1, progress=False)
    assert sampled["adapter"] == seeded.stage1_adapter  # each seed samples from its own Stage-1 adapter
    stages.train_stage2(recipe, layout, 1)
    assert train_calls["calls"][-1]["init_adapter"] == seeded.stage1_adapter
    assert train_calls["calls"][-1]["dataset"] == seeded.recorded(LOCAL_PAIRS, 1) == seeded.local_dataset(1)
    stages.train_grpo(recipe, layout)
    assert [call["init_adapter"] for call in grpo_calls] == [first, seeded.stage1_adapter]
    record = {(entry.role, entry.seed): entry for entry in layout.manifest.entries()}
    assert set(record) == {(role, seed) for role in (STAGE1, LOCAL_PAIRS, FURTHER, GRPO) for seed in (0, 1)}
    assert record[(STAGE1, 1)].identity["dpo"]["seed"] == 43 and record[(STAGE1, 0)].identity["dpo"]["seed"] == 42

    problems = data.load_problems(layout.global_.test_problems)[:2]
    answers = folders["evaluation_dir"].parent / "answers.jsonl"
    answers.write_text("".join(json.dumps({"task_id": p["task_id"], "round": 0, "sample": sample, "tokens": 0,
                                           "text": f"```python\n{p['code']}\n```" if sample else "no code"}) + "\n"
                               for p in problems for sample in range(2)))
    plan = dataclasses.replace(stages.evaluation_plan(recipe, layout), limit=2, runs=2, samples=2,
                               generation={"backend": "replay", "source": str(answers)})
    assert plan.training_seeds == 2 and plan.seeds(STAGE1) == [0, 1] and plan.seeds("base") == [0]
    for variant in plan.variants():
        evaluation.run_variant(plan, variant, progress=False)
    assert layout.with_seed(1).run_stem(STAGE1, 1).with_suffix(".json").is_file()
    assert layout.with_seed(1).run_stem(STAGE1, 1).name == "smollm2_135m_dpo_seed_1_model_output_run_1"
    report = evaluation.comparison(plan)
    assert sorted(set(report.samples[(STAGE1, "paper")][["seed", "run"]].itertuples(index=False))) == [
        (0, 0), (0, 1), (1, 0), (1, 1)]
    assert set(report.per_run.loc[report.per_run["variant"] == STAGE1, "seed"]) == {0, 1}
    assert set(report.per_run.loc[report.per_run["variant"] == "base", "seed"]) == {0}
    assert not report.paired.empty
