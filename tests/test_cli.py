"""The command line refuses bad input before any work starts, with one line naming what is wrong.

Every test here runs ``cli.main`` in-process on small files; none loads a model.
"""

from __future__ import annotations

import json
import os

import pytest

from shared_utils import cli
from shared_utils.generation import read_checkpoint, read_paper_format
from stand_ins import global_dataset


def problems_file(tmp_path, count: int = 3):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"task_id": i, "text": f"Return {i}.", "test_list": [f"assert f() == {i}"]})
                            + "\n" for i in range(1, count + 1)), encoding="utf-8")
    return path


def replay_source(tmp_path, count: int = 3):
    """A paper-format file answering every problem of ``problems_file`` with two samples."""
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps([{"task_id": i, "generated_sequences": [f"def f():\n    return {i}"] * 2}
                                for i in range(1, count + 1)]), encoding="utf-8")
    return path


def replay_args(tmp_path, *extra: str) -> list[str]:
    return ["generate", "--model", "replayed", "--backend", "replay", "--source", str(replay_source(tmp_path)),
            "--problems", str(problems_file(tmp_path)), "--out", str(tmp_path / "out.json"), "--n", "2", *extra]


def refused(argv: list[str], capsys) -> str:
    """The verb's one-line refusal: argparse's exit 2, or ``main``'s own 2."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, value", [("--n", "-3"), ("--n", "0"), ("--limit", "-2"), ("--limit", "two")])
def test_generate_counts_must_be_positive(tmp_path, capsys, flag, value):
    line = refused(replay_args(tmp_path, flag, value), capsys)
    assert flag in line and value in line
    assert not (tmp_path / "out.json").exists()


def test_global_pairs_limit_must_be_positive(tmp_path, capsys):
    line = refused(["global-pairs", "--problems", str(tmp_path), "--out", str(tmp_path / "g"), "--limit", "0"], capsys)
    assert "--limit" in line and "at least 1" in line


def test_positive_limit_is_the_first_n_problems(tmp_path):
    assert cli.main(replay_args(tmp_path, "--limit", "2")) == 0
    assert list(read_paper_format(tmp_path / "out.json")) == [1, 2]


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_problems_file_is_refused_naming_it(tmp_path, capsys, content):
    args = replay_args(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content, encoding="utf-8")
    args[args.index("--problems") + 1] = str(empty)
    line = refused(args, capsys)
    assert str(empty) in line and "no problems" in line
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("content", ["", "[]"])
def test_empty_completions_file_is_refused_naming_it(tmp_path, capsys, content):
    empty = tmp_path / "completions.json"
    empty.write_text(content, encoding="utf-8")
    line = refused(["evaluate", "--completions", str(empty), "--problems", str(problems_file(tmp_path))], capsys)
    assert str(empty) in line and "no completions" in line


def test_out_under_a_file_is_refused_before_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    args = replay_args(tmp_path)
    args[args.index("--out") + 1] = str(blocker / "sub" / "out.json")
    line = refused(args, capsys)
    assert "--out" in line and str(blocker) in line and "not a folder" in line
    assert not (tmp_path / "out.json.ckpt.jsonl").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = refused(["evaluate", "--completions", str(replay_source(tmp_path)), "--problems",
                    str(problems_file(tmp_path)), "--out", str(locked / "scores")], capsys)
    assert str(locked) in line and "not writable" in line


@pytest.mark.parametrize("item, message", [("r=-3", "r=-3 must be at least 1"), ("r=abc", "r='abc' is not int"),
                                           ("lora_dropout=1.5", "lora_dropout=1.5 must be in [0, 1)"),
                                           ("target_modules=5", "target_modules=5 is not")])
def test_lora_values_are_checked_before_the_model_loads(train_calls, capsys, item, message):
    line = refused(["train", "--model", "smollm2-135m", "--lora", item], capsys)
    assert message in line
    assert "settings" not in train_calls  # train_dpo, which loads the model, was never reached


def test_valid_lora_values_reach_training(train_calls, tmp_path):
    global_dataset(tmp_path / "global")
    folders = ["--global-dir", str(tmp_path / "global"), "--model-dir", str(tmp_path / "model")]
    assert cli.main(["train", "--model", "smollm2-135m", *folders, "--lora", "r=8", "--lora",
                     "target_modules=[q_proj]"]) == 0
    assert train_calls["settings"].lora["r"] == 8 and train_calls["settings"].lora["target_modules"] == ["q_proj"]


@pytest.mark.parametrize("verb", [["train"], ["self-generate"], ["run", "--stages", "evaluation"]])
def test_misspelt_model_suggests_the_registered_one(capsys, verb):
    line = refused([*verb, "--model", "smolm2-135m"], capsys)
    assert "did you mean 'smollm2-135m'" in line


def test_a_stage_under_its_old_name_is_refused_with_the_new_one(capsys):
    line = refused(["run", "--model", "smollm2-135m", "--stages", "global,eval"], capsys)
    assert "stage 'eval' is now 'evaluation'" in line


def test_generate_misspelt_model_is_refused_before_loading(tmp_path, capsys):
    line = refused(["generate", "--model", "gemma3-1bb", "--problems", str(problems_file(tmp_path)),
                    "--out", str(tmp_path / "out.json"), "--backend", "local"], capsys)
    assert "did you mean 'gemma3-1b'" in line


def test_local_pair_generator_misspelt_is_refused_before_loading(tmp_path, capsys):
    line = refused(["global-pairs", "--backend", "local", "--generator", "smollm2-135", "--problems", str(tmp_path),
                    "--out", str(tmp_path / "g")], capsys)
    assert "did you mean 'smollm2-135m'" in line


def test_mi_json_is_strict_json_for_an_unscorable_file(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n", encoding="utf-8")
    assert cli.main(["mi", "--json", str(broken)]) == 0

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    record = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert record["scorable"] is False and record["mi"] is None and record["halstead_volume"] is None


def test_ctrl_c_says_what_was_saved_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    from shared_utils.generation.replay import ReplayBackend

    uninterrupted = tmp_path / "whole"
    uninterrupted.mkdir()
    assert cli.main(replay_args(uninterrupted, "--batch-size", "1")) == 0
    expected = read_paper_format(uninterrupted / "out.json")

    real, calls = ReplayBackend.run_batch, []

    def interrupted_at_second_problem(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ReplayBackend, "run_batch", interrupted_at_second_problem)
    args = replay_args(tmp_path, "--batch-size", "1")  # one problem per batch: each finished problem is saved
    assert cli.main(args) == 130
    lines = capsys.readouterr().err.strip().splitlines()
    checkpoint = tmp_path / "out.json.ckpt.jsonl"
    assert lines[-1] == f"interrupted: 2 samples saved in {checkpoint}; rerun the same command to resume"
    assert len(read_checkpoint(checkpoint)) == 2 and not (tmp_path / "out.json").exists()

    assert cli.main(args) == 0
    assert len(calls) == 4  # the rerun asked only for the two problems not saved
    assert read_paper_format(tmp_path / "out.json") == expected


def test_run_accepts_switch_and_hands_it_to_every_protocol_notebook(monkeypatch):
    from shared_utils import recipes, runner

    seen = {}
    monkeypatch.setattr(runner, "run_pipeline", lambda options: seen.setdefault("options", options) and 0)
    assert cli.main(["run", "--model", "smollm2-135m", "--switch", "signature=paper"]) == 0
    options = seen["options"]
    assert options.switches == {"signature": "paper"}
    recipe = recipes.load(options.model)
    layout = recipe.layout()
    protocol = runner.stage_parameters(options, "global", "global_1_dataset_preprocessing", recipe, layout)["protocol"]
    assert protocol == {"switches": {"signature": "paper"}}
    # What the notebooks do with it: the preprocessing resolves it, the recipe-based ones lay it over the recipe.
    from shared_utils.protocol import resolve

    assert resolve(protocol).signature == "paper" and resolve(protocol).name == "corrected+signature=paper"
    assert recipes.load("smollm2-135m", protocol=protocol).protocol().signature == "paper"
    assert "protocol" not in runner.stage_parameters(options, "grpo", "model_4_grpo", recipe, layout)


def test_run_refuses_an_unknown_switch_before_any_notebook(monkeypatch, capsys):
    from shared_utils import runner

    monkeypatch.setattr(runner, "run_pipeline", lambda options: pytest.fail("a notebook ran"))
    assert "unknown protocol switch 'signatur'" in refused(["run", "--switch", "signatur=paper"], capsys)


def test_self_generate_passes_overwrite_to_the_stage(monkeypatch, tmp_path):
    """A Stage-2a dataset made with other settings stops the verb; ``--overwrite`` is the way on, as for ``train``."""
    from types import SimpleNamespace

    import pandas as pd

    from shared_utils import stages

    seen = {}

    def fake_self_generate(recipe, layout, iteration=1, *, model=None, progress=True, overwrite=False):
        seen.update(iteration=iteration, overwrite=overwrite)
        return SimpleNamespace(rounds=pd.DataFrame({"round": [1]}), rows=[], problems=[], dataset=None)

    monkeypatch.setattr(stages, "self_generate", fake_self_generate)
    folders = ["--global-dir", str(tmp_path / "global"), "--model-dir", str(tmp_path / "model")]
    assert cli.main(["self-generate", "--model", "smollm2-135m", *folders]) == 0
    assert seen == {"iteration": 1, "overwrite": False}
    assert cli.main(["self-generate", "--model", "smollm2-135m", *folders, "--overwrite"]) == 0
    assert seen["overwrite"] is True


def test_paper_outputs_workers_must_be_positive(capsys):
    assert "--workers" in refused(["paper-outputs", "--workers", "0"], capsys)
