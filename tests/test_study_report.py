"""The study's report: built from an evaluation folder written by the evaluation's own writers, checked by hand.

The folder holds 24 tasks x 10 samples per variant, written with ``scoring.save_scores`` and
``scoring.summarize`` at the stems the layout gives, as an evaluation run leaves them: ``dpo``
passes far more often than the base (two training seeds), ``grpo`` exactly as often, and under
``paper`` almost nothing passes. About 10 s (the bootstrap at 2,000 draws).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from shared_utils import paths, recipes, scoring, statistics, study_report
from shared_utils.maintainability import score

TASKS = list(range(11, 35))
SAMPLES = 10
CODES = ["def f(x):\n    return x + 1\n",
         "def f(x):\n    y = x\n    for i in range(3):\n        if i % 2:\n            y += i * x - 1\n    return y\n",
         "def f(x):\n    return [a * b for a in range(x) for b in range(a) if a > b]\n"]


def passes(variant: str, scoring_name: str, seed: int) -> dict[int, int]:
    """How many of a task's 10 samples pass: a known pattern per variant and scoring."""
    if scoring_name == "paper":  # the 135M model's answers rarely survive the paper's extraction
        return {task: (2 if task in (11, 12) and variant != "dpo" else 0) for task in TASKS}
    base = {task: (task * 7) % 5 for task in TASKS}  # 0..4 of 10
    if variant == "dpo":
        return {task: min(SAMPLES, count + 5 + seed) for task, count in base.items()}
    return base


def sample_frame(variant: str, scoring_name: str, seed: int) -> pd.DataFrame:
    rows = []
    for task, count in passes(variant, scoring_name, seed).items():
        for sample in range(SAMPLES):
            code = CODES[(task + sample + len(variant)) % len(CODES)]
            passed = sample < count
            rows.append({"task_id": task, "sample": sample, "code": code, "status": "passed" if passed else "failed",
                         "passed": passed, "assert_results": ["passed" if passed else "failed"], "error": "",
                         "sandbox": "strict", **score(code).as_dict()})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    """An evaluation folder as the evaluation stage writes it, and the per-sample frames behind it."""
    folder = tmp_path_factory.mktemp("evaluation")
    layout = recipes.load("smollm2-135m").layout(evaluation_dir=folder)
    frames = {}
    for variant, seeds in (("base", [0]), ("dpo", [0, 1]), ("grpo", [0])):
        for seed in seeds:
            for name in ("fenced", "paper"):
                frame = sample_frame(variant, name, seed)
                frames[(variant, seed, name)] = frame
                stem = layout.run_stem(variant, 0).with_name(
                    layout.run_stem(variant, 0).name + (f"_seed_{seed}" if seed else ""))
                summary = {"model": "smollm2-135m", "variant": variant, "run": 0, "training_seed": seed,
                           "benchmark": "mbpp", "scoring": name, **scoring.summarize(frame, (1, 10))}
                scoring.save_scores(frame, summary, stem, name)
    return folder, frames


@pytest.fixture(scope="module")
def report(evaluation, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = study_report.build(evaluation[0], out, recipe={"evaluation": {"samples": SAMPLES}},
                                 timings={"evaluation": 12.5}, n_boot=2000)
    return out, summary, pd.DataFrame(summary["rows"])


def row(table, variant, name, metric):
    found = table[(table["variant"] == variant) & (table["scoring"] == name) & (table["metric"] == metric)]
    assert len(found) == 1
    return found.iloc[0]


def test_the_numbers_equal_a_computation_by_hand(evaluation, report):
    _, frames = evaluation
    _, summary, table = report
    assert summary["variants"] == ["base", "dpo", "grpo"] and summary["metrics"] == ["pass@1", "pass@10", "avg_mi"]
    base = frames[("base", 0, "fenced")]
    counts = base.groupby("task_id")["passed"].sum()
    assert row(table, "base", "fenced", "pass@1")["estimate"] == pytest.approx((counts / SAMPLES).mean())
    assert row(table, "base", "fenced", "pass@10")["estimate"] == pytest.approx((counts > 0).mean())
    by_task = base[base["passed"]].groupby("task_id")["mi"].mean()
    assert row(table, "base", "fenced", "avg_mi")["estimate"] == pytest.approx(by_task.mean())
    assert row(table, "base", "fenced", "avg_mi")["passing_samples"] == int(counts.sum())
    assert row(table, "base", "fenced", "avg_mi")["solved_tasks"] == int((counts > 0).sum())
    # two training seeds: the mean over the seeds, each resampled
    dpo = [frames[("dpo", seed, "fenced")].groupby("task_id")["passed"].mean().mean() for seed in (0, 1)]
    assert row(table, "dpo", "fenced", "pass@1")["estimate"] == pytest.approx(np.mean(dpo))
    assert row(table, "dpo", "fenced", "pass@1")["seeds"] == 2
    # average MI against the base on the tasks both solve
    grpo = frames[("grpo", 0, "fenced")]
    both = sorted(set(by_task.index) & set(grpo[grpo["passed"]]["task_id"]))
    grpo_mi = grpo[grpo["passed"]].groupby("task_id")["mi"].mean()
    mi = row(table, "grpo", "fenced", "avg_mi")
    assert mi["compared_tasks"] == len(both)
    assert mi["diff"] == pytest.approx(grpo_mi[both].mean() - by_task[both].mean())
    assert "both" in mi["note"]


def test_intervals_hold_their_estimates_and_the_verdicts_follow(report):
    _, _, table = report
    for record in table.to_dict("records"):
        if math.isnan(record["estimate"]):  # nothing solved: no mean, and the report does not show one
            assert record["metric"] == "avg_mi" and record["solved_tasks"] == 0 and not study_report.shown(record)
            continue
        assert record["low"] <= record["estimate"] + 1e-12 <= record["high"] + 2e-12, record
        if record["variant"] != "base" and record["verdict"] != "n/a":
            assert record["diff_low"] <= record["diff"] + 1e-12 <= record["diff_high"] + 2e-12, record
    assert row(table, "dpo", "fenced", "pass@1")["verdict"] == "better"
    assert row(table, "grpo", "fenced", "pass@1")["verdict"] == "no evidence"
    assert row(table, "grpo", "fenced", "pass@1")["diff"] == 0


def test_holm_adjusts_over_each_scorings_tested_comparisons(report):
    _, summary, table = report
    fenced = table[(table["scoring"] == "fenced") & (table["variant"] != "base")]
    assert len(fenced) == 6 and (fenced["family"] == 6).all()  # 2 variants x 3 metrics, all tested
    assert np.allclose(fenced["p_holm"], statistics.holm(fenced["p"]))
    smallest = fenced["p"].idxmin()
    assert fenced.loc[smallest, "p_holm"] == pytest.approx(min(1.0, 6 * fenced.loc[smallest, "p"]))
    assert (fenced["p_holm"] >= fenced["p"]).all()
    paper = table[(table["scoring"] == "paper") & (table["variant"] != "base")]
    tested = paper[paper["verdict"] != "n/a"]
    assert len(tested) == 4 and (tested["family"] == 4).all()  # the two MI comparisons rest on < 5 tasks
    assert "Holm" in summary["families"]["paper"] and "2 MI comparison(s) not tested" in summary["families"]["paper"]


def test_a_mean_on_too_few_tasks_reads_na_with_its_count(report):
    out, _, table = report
    base_mi = row(table, "base", "paper", "avg_mi")
    assert base_mi["solved_tasks"] == 2 and not study_report.shown(base_mi.to_dict())
    section = study_report.render_readme_section(out)
    paper_table = section.split("Scoring `paper`")[1]
    assert "n/a (4 samples, 2 tasks)" in paper_table
    assert "vs base n/a (0 tasks both solve)" in paper_table  # dpo solves nothing under paper
    assert math.isnan(row(table, "dpo", "paper", "avg_mi")["p"])


def test_the_files_and_the_readme_section(report, tmp_path):
    out, summary, table = report
    for name in ("summary.json", "summary.csv", "samples.csv.gz", "differences.png", "mi_per_task.png", "study.json"):
        assert (out / name).is_file(), name
    samples = pd.read_csv(out / "samples.csv.gz")
    assert list(samples.columns) == ["task_id", "variant", "seed", "run", "sample", "scoring", "passed", "mi", "status"]
    assert len(samples) == 4 * 2 * len(TASKS) * SAMPLES  # base, dpo x 2 seeds, grpo; two scorings
    assert len(pd.read_csv(out / "summary.csv")) == len(table)
    study = json.loads((out / "study.json").read_text())
    assert study["timings"] == {"evaluation": 12.5} and study["recipe"]["evaluation"]["samples"] == SAMPLES
    assert "git_commit" in study and "Holm" in study["rules"]
    section = study_report.render_readme_section(out)
    headline = section.split("Headline scoring `fenced`")[1].split("Scoring `paper`")[0]
    dpo_line = next(line for line in headline.splitlines() if line.startswith("| dpo |"))
    pass1 = row(table, "dpo", "fenced", "pass@1")
    assert f"{pass1['estimate'] * 100:.2f} [{pass1['low'] * 100:.2f}, {pass1['high'] * 100:.2f}]" in dpo_line
    assert "better" in dpo_line
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\n{study_report.README_START}\nold\n{study_report.README_END}\n\n## next\n")
    study_report.update_readme(readme, out)
    assert readme.read_text() == f"# top\n\n{section}\n\n## next\n"


def test_the_same_folder_gives_the_same_bytes(evaluation, report, tmp_path):
    out, _, _ = report
    study_report.build(evaluation[0], tmp_path, recipe={"evaluation": {"samples": SAMPLES}}, n_boot=2000)
    for name in ("summary.json", "summary.csv", "samples.csv.gz", "differences.png", "mi_per_task.png"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_training_curves_are_drawn_from_each_adapters_log_history(evaluation, tmp_path):
    adapter = tmp_path / "dpo-adapter"
    adapter.mkdir()
    history = [{"loss": 0.69 - 0.01 * step, "rewards/margins": 0.02 * step, "rewards/accuracies": 0.5, "step": step}
               for step in range(1, 6)] + [{"train_runtime": 3.0, "step": 5}]
    (adapter / "log_history.json").write_text(json.dumps(history))
    found = study_report.training_curves({"dpo": adapter, "grpo": tmp_path / "missing"}, tmp_path / "curves")
    assert found == {"dpo": "5 logged steps", "grpo": f"no log_history.json in {tmp_path / 'missing'}"}
    assert (tmp_path / "curves" / "dpo.png").stat().st_size > 0
    assert json.loads((tmp_path / "curves" / "dpo.log_history.json").read_text()) == history


def test_the_readme_agrees_with_the_committed_results():
    readme = (paths.REPO_ROOT / "README.md").read_text()
    section = study_report.render_readme_section()
    assert section in readme, "run `python -m shared_utils render-notebooks`"
    if not (study_report.RESULTS_DIR / "summary.json").is_file():
        assert "has not been run at full size yet" in section and "make study" in section
        pytest.skip(f"{study_report.RESULTS_DIR.relative_to(paths.REPO_ROOT)} does not exist yet: only the "
                    "'not run yet' section is checked")
    summary = json.loads((study_report.RESULTS_DIR / "summary.json").read_text())
    for record in summary["rows"]:
        if record["scoring"] == summary["headline"]:
            assert study_report.cell(record) in section, record


def test_the_headline_sentence_counts_the_verdicts_and_an_identical_scoring_is_not_repeated(report):
    out, summary, table = report
    headline = table[table["scoring"] == "fenced"]
    expected = headline[headline["variant"] != "base"]["verdict"].value_counts()
    sentence = study_report.verdict_sentence(headline, "fenced")
    for verdict in ("better", "worse", "no evidence"):
        assert f"{int(expected.get(verdict, 0))} {verdict}" in sentence
    section = study_report.render_readme_section(out)
    assert sentence in section.split("Headline scoring")[0]
    twin = table[table["scoring"] == "fenced"].assign(scoring="corrected")
    assert study_report._same_numbers(table[table["scoring"] == "fenced"], twin)
    assert not study_report._same_numbers(table[table["scoring"] == "fenced"], table[table["scoring"] == "paper"])
    copied = out.parent / "twin"
    copied.mkdir()
    doubled = {**summary, "scorings": summary["scorings"] + ["corrected"],
               "families": {**summary["families"], "corrected": summary["families"]["fenced"]},
               "rows": summary["rows"] + json.loads(twin.to_json(orient="records"))}
    (copied / "summary.json").write_text(json.dumps(doubled))
    section = study_report.render_readme_section(copied)
    assert "Scoring `corrected`: every number equals scoring `fenced`'s." in section
    assert section.count("| base |") == 2  # fenced and paper as tables, corrected as one sentence


def test_a_rerun_is_compared_sample_by_sample_and_row_by_row(evaluation, report, tmp_path):
    out, summary, _ = report
    again = tmp_path / "again"
    study_report.build(evaluation[0], again, recipe={"evaluation": {"samples": SAMPLES}}, n_boot=2000)
    history = [{"loss": 0.69, "step": 1}, {"train_runtime": 3.0, "train_samples_per_second": 1.5, "step": 1}]
    for folder, runtime in ((out, 3.0), (again, 4.5)):
        (folder / "curves").mkdir(exist_ok=True)
        (folder / "curves" / "dpo.log_history.json").write_text(json.dumps(
            [history[0], {**history[1], "train_runtime": runtime}]))
    (out / "curves" / "grpo.log_history.json").write_text(json.dumps(history))
    found = study_report.reproduction(out, again)
    assert found["identical_samples"] == {"base": 1.0, "dpo": 1.0, "grpo": 1.0}
    assert found["identical_training"] == {"dpo.log_history.json": True, "grpo.log_history.json": None}
    (again / "curves" / "dpo.log_history.json").write_text(json.dumps([{"loss": 0.70, "step": 1}, history[1]]))
    assert study_report.reproduction(out, again)["identical_training"]["dpo.log_history.json"] is False
    rows = found["rows"]
    assert rows["estimate_within"].dropna().all() and rows["same_verdict"].dropna().all()
    assert rows["estimate_within"].isna().sum() == (rows["low"].isna()).sum()  # an n/a mean has nothing to be inside
    same = study_report.reproduction_sentence(study_report.reproduction_counts(found, again))
    assert "every sample's verdict and MI identical, in every variant" in same
    assert "training logs equal value for value: dpo yes, grpo not in the second run" in same

    samples = pd.read_csv(again / "samples.csv.gz")
    flipped = samples.index[(samples["variant"] == "grpo") & (samples["scoring"] == "fenced")][:6]
    samples.loc[flipped, "passed"] = ~samples.loc[flipped, "passed"]
    samples.to_csv(again / "samples.csv.gz", index=False)
    moved = json.loads((again / "summary.json").read_text())
    target = next(r for r in moved["rows"] if (r["variant"], r["scoring"], r["metric"]) == ("grpo", "fenced", "pass@1"))
    target["estimate"] = target["high"] + 0.1
    (again / "summary.json").write_text(json.dumps(moved))
    found = study_report.reproduction(out, again)
    grpo_samples = len(samples[samples["variant"] == "grpo"])
    assert found["identical_samples"]["grpo"] == pytest.approx(1 - 6 / grpo_samples)
    assert found["identical_samples"]["base"] == 1.0
    rows = found["rows"]
    assert list(rows.loc[rows["estimate_within"] == False, "variant"]) == ["grpo"]  # noqa: E712
    written = study_report.write_reproduction(out, again)
    text = written.read_text()
    bounded = int(rows["estimate_within"].notna().sum())
    assert f"estimates inside the first run's 95% interval: {bounded - 1} of {bounded}" in text
    assert (out / "reproduction.csv").is_file()
    moved_row = rows[(rows["variant"] == "grpo") & (rows["scoring"] == "fenced") & (rows["metric"] == "pass@1")].iloc[0]
    assert (f"| grpo | fenced | pass@1 | {moved_row['estimate']:.4g} [{moved_row['low']:.4g}, {moved_row['high']:.4g}] "
            f"| {moved_row['estimate_again']:.4g} | {moved_row['diff']:.4g} [{moved_row['diff_low']:.4g}, "
            f"{moved_row['diff_high']:.4g}] | {moved_row['diff_again']:.4g} |") in text
    first = json.loads((out / "study.json").read_text())
    assert (f"First run (commit {first['git_commit'][:7]}, reported {first['created'][:16].replace('T', ' ')} UTC). "
            "Wall time per stage, summed over the run's attempts: evaluation 12 s; 12 s in all") in text
    assert "Training logs equal value for value (wall times and rates left out): dpo no, grpo not in the second run." in text
    counts = json.loads((out / "reproduction.json").read_text())
    assert counts["estimates_within"] == [bounded - 1, bounded] and counts["identical_samples"]["base"] == 1.0
    section = study_report.render_readme_section(out)
    assert study_report.reproduction_sentence(counts, study_report._relative(out / "reproduction.md")) in section
    assert f"samples with the same verdict and MI: base 100.0%, dpo 100.0%, grpo {1 - 6 / grpo_samples:.1%}" in section
    study_report.build(evaluation[0], out, recipe={"evaluation": {"samples": SAMPLES}}, timings={"evaluation": 12.5},
                       n_boot=2000)  # new results: the comparison with the earlier run no longer applies
    assert not any((out / name).exists() for name in study_report.REPRODUCTION_FILES)
    assert "Run again" not in study_report.render_readme_section(out)
    (again / "summary.json").unlink()
    with pytest.raises(ValueError, match="no summary.json"):
        study_report.reproduction(out, again)


def test_the_wall_time_sentence_adds_the_stages_and_names_generations_share():
    sentence = study_report.timing_sentence({"global": 28.0, "stage1": 1920.0, "stage2a": 300.0, "grpo": 420.0,
                                             "evaluation": 1200.0})
    assert sentence.startswith("Wall time per stage, summed over the run's attempts: global 28 s, stage1 32 min, "
                               "stage2a 5 min, grpo 7 min, evaluation 20 min; 64 min in all")
    assert "generation 25 min (39%" in sentence
    assert study_report.duration(7000) == "1.9 h"
