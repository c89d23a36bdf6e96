"""Evaluation runs on replayed answers: every variant the layout finds, HumanEval beside MBPP, reruns for free."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared_utils import data, evaluation, recipes
from shared_utils.stages import evaluation_plan
from shared_utils.generation import read_paper_format
from stand_ins import ADAPTER_RECORD, fake_adapter, recorded_adapter

WRONG = "```python\ndef wrong(*args):\n    return None\n```"


@pytest.fixture
def plan(tmp_path):
    """The demo model's layout under tmp_path with Stage 1 and two self-tuning iterations, answers replayed."""
    layout = recipes.load("smollm2-135m").layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model",
                                                 evaluation_dir=tmp_path / "eval")
    data.prepare("demo", layout.global_.folder)
    for variant in ("dpo", "dpo-further", "dpo-further-iteration-2"):
        recorded_adapter(layout, variant)
    mbpp = data.load_problems(layout.global_.test_problems)[:3]
    humaneval = data.humaneval_problems()[:3]
    answers = [(p["task_id"], f"```python\n{p['code']}\n```") for p in mbpp + humaneval]
    source = tmp_path / "answers.jsonl"
    source.write_text("".join(json.dumps({"task_id": task_id, "round": 0, "sample": sample, "text": text,
                                          "tokens": 0}) + "\n"
                              for task_id, right in answers for sample, text in enumerate([right, WRONG])))
    return evaluation.EvalPlan(layout, model="smollm2-135m", runs=2, samples=2, max_new_tokens=8, limit=3,
                                    generation={"backend": "replay", "source": str(source)})


def test_every_variant_and_benchmark_is_run_saved_and_compared(plan):
    variants = ["base", "dpo", "dpo-further", "dpo-further-iteration-2"]
    assert plan.variants() == variants and plan.further_variants() == variants[2:]
    for benchmark in ("mbpp", "humaneval"):
        for variant in variants:
            table = evaluation.run_variant(plan, variant, benchmark=benchmark, progress=False)
            assert list(table["run"]) == [0, 0, 0, 1, 1, 1] and set(table["pass_at_k.1"]) == {0.5}
            assert list(table["scoring"]) == ["paper", "corrected", "fenced"] * 2
    stem = plan.layout.run_stem("dpo-further-iteration-2", 1, "humaneval")
    assert stem.name == "humaneval_smollm2_135m_dpo-further-iteration-2_model_output_run_1"
    assert len(read_paper_format(stem.with_suffix(".json"))) == 3

    trained_here = plan.adapter("dpo")
    (trained_here / "provenance.json").write_text(json.dumps(ADAPTER_RECORD))
    report = evaluation.comparison(plan)
    assert list(dict.fromkeys(report.per_run["variant"])) == variants
    recorded = json.loads((trained_here / "provenance.json").read_text())["evaluation"]
    assert set(recorded) == {"mbpp", "humaneval"} and recorded["mbpp"]["problems"] == 3
    assert recorded["mbpp"]["table"]["paper"]["pass@1"] == report.table.loc[("dpo", "paper"), "pass@1"]
    assert "## Evaluation: humaneval" in (trained_here / "README.md").read_text()
    assert not (plan.adapter("dpo-further") / "provenance.json").exists()  # not trained here: left as it is
    assert report.humaneval is not None and set(report.humaneval.per_run["pass@2"]) == {1.0}
    assert "HumanEval" in report.text() and plan.layout.comparison("humaneval").is_file()
    paired = report.paired
    assert set(paired["metric"]) == {"pass@1", "pass@2", "avg_mi"} and set(paired["scoring"]) == set(evaluation.SCORINGS)
    steps = list(zip(variants, variants[1:])) + [(variants[0], variants[-1])]
    assert list(dict.fromkeys(zip(paired["from"], paired["to"]))) == steps
    assert set(paired["verdict"]) == {"no evidence"} and (paired["diff"] == 0).all()  # the same answers everywhere
    assert set(paired["family"]) == {len(steps) * 3} and "Holm" in report.text()
    intervals = report.intervals.set_index(["variant", "scoring", "metric"])
    assert intervals.loc[("base", "paper", "pass@1"), "estimate"] == 0.5


def test_a_finished_run_is_not_redone_and_a_missing_adapter_is_skipped(plan, capsys):
    first = evaluation.run_variant(plan, "dpo", progress=False)
    source = plan.generation["source"]
    open(source, "w").close()  # a second generation would find nothing to replay
    again = evaluation.run_variant(plan, "dpo", progress=False)
    assert again.equals(first)
    assert evaluation.run_variant(plan, "dpo-further-iteration-3", progress=False) is None
    assert "dpo-further-iteration-3: no adapter recorded in" in capsys.readouterr().out


def test_the_recipe_chooses_the_subset_and_the_code_end_stop(plan):
    """A study's evaluation: the N shortest reference solutions of the split, generation stopped at the code end."""
    recipe = recipes.load("smollm2-135m", {"evaluation": {"limit": 5, "subset": "shortest_reference",
                                                           "stop_at_code_end": True}})
    study = evaluation_plan(recipe, plan.layout)
    split = data.load_problems(plan.layout.global_.test_problems)
    assert study.problems() == data.subset(split, "shortest_reference", 5) != split[:5]
    assert study.sampling(0).stop_at_code_end and not plan.sampling(0).stop_at_code_end
    assert evaluation.run_identity(study, "base", 0, "mbpp", study.problems()) != evaluation.run_identity(
        dataclasses.replace(study, stop_at_code_end=False), "base", 0, "mbpp", study.problems())


def test_an_adapter_named_in_the_recipe_is_run_and_compared_as_a_variant_of_its_own(plan, tmp_path):
    """An ablation's Stage-1 adapter, trained elsewhere, is evaluated beside the pipeline's variants."""
    ablation = tmp_path / "ablation" / "smollm2-135m-dpo-2-epochs"
    named = dataclasses.replace(plan, runs=1, adapters={"dpo-as-published": str(ablation)})
    assert named.variants() == plan.variants()  # not trained yet: nothing to evaluate
    fake_adapter(ablation, "as published")
    assert named.variants() == ["base", "dpo", "dpo-as-published", "dpo-further", "dpo-further-iteration-2"]
    assert named.adapter("dpo-as-published") == ablation and named.adapter("dpo") == plan.layout.stage1_adapter
    for variant in named.variants()[:3]:
        evaluation.run_variant(named, variant, progress=False)
    saved = read_paper_format(plan.layout.run_stem("dpo-as-published", 0).with_suffix(".json"))
    assert sorted(saved) == sorted(p["task_id"] for p in plan.problems())  # its completions, under its own name
    report = evaluation.comparison(named)
    assert {"dpo-as-published"} <= set(report.per_run["variant"])
    with pytest.raises(ValueError, match="dpo is a variant of the layout already"):
        dataclasses.replace(plan, adapters={"dpo": str(ablation)}).variants()


def test_the_recipe_s_local_engine_options_reach_the_model_and_the_run_s_identity(plan):
    """The study's CPU options (continuous batching, 4 rows in flight, bfloat16 weights) sample the real embedded
    model and are recorded; with none set, a run's identity is what it was before these options existed."""
    from shared_utils.generation import LocalEngine, engine_of

    recipe = recipes.load("smollm2-135m", {"evaluation": {"limit": 1, "runs": 1, "samples": 4, "max_new_tokens": 12,
                                                           "local_engine": {"refill": True, "batch_size": 2,
                                                                            "dtype": "bfloat16"}}})
    fast = evaluation_plan(recipe, plan.layout)
    assert fast.local_engine == LocalEngine(batch_size=2, refill=True, dtype="bfloat16") and fast.engine == "local"
    assert fast.sampling(0).batch_size == 2 and plan.sampling(0).batch_size is None
    assert "local_engine" not in evaluation.run_identity(plan, "base", 0, "mbpp", plan.problems())
    assert evaluation.run_identity(fast, "base", 0, "mbpp", fast.problems())["local_engine"]["refill"]
    evaluation.run_variant(fast, "base", progress=False)
    engine = engine_of(fast.layout.run_stem("base", 0).with_name(
        fast.layout.run_stem("base", 0).name + ".ckpt.jsonl"))
    assert (engine["dtype"], engine["refill"], engine["batch_size"]) == ("bfloat16", True, 2)
    with pytest.raises(ValueError, match=r"evaluation.local_engine: unknown key\(s\) rows; local_engine takes"):
        evaluation_plan(recipes.load("smollm2-135m", {"evaluation": {"local_engine": {"rows": 64}}}), plan.layout)
