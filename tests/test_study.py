"""The CPU study (``make study``): its pre-registered design, and its smoke size run end to end through every
notebook, interrupted with Ctrl-C in a stage and continued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from shared_utils import files, paths, recipes, study
from shared_utils.generation import engine_of
from shared_utils.layout import STAGE1

NOTEBOOKS = sorted(["1_dataset_preprocessing.ipynb", "2_generate_global_pairs.ipynb",
                    "3_automated_global_dataset_labelling.ipynb", "1_smollm2_135m_dpo.ipynb",
                    "2_smollm2_135m_dpo_local_dataset_self_generation.ipynb", "3_smollm2_135m_dpo_further.ipynb",
                    "4_smollm2_135m_grpo.ipynb", "evaluate_smollm2_135m.ipynb"])


def test_the_design_is_the_pre_registered_one():
    plan = study.design()
    recipe = recipes.load(plan.model, plan.overlay)
    evaluation = recipe.section("evaluation")
    assert (evaluation["subset"], evaluation["limit"], evaluation["runs"], evaluation["samples"]) == (
        "shortest_reference", 60, 1, 10)
    assert (evaluation["temperature"], evaluation["top_p"], evaluation["max_new_tokens"]) == (0.6, 0.9, 384)
    assert evaluation["stop_at_code_end"] and not evaluation["humaneval"] and recipe.problem_set == "mbpp"
    stage1, stage2c = recipe.training("stage1"), recipe.training("stage2c")
    assert (stage1.dpo["learning_rate"], stage1.dpo["num_train_epochs"], stage1.dpo["beta"]) == (1e-4, 2, 0.1)
    assert stage1.dpo["bf16"] is True  # bf16 autocast on this CPU
    assert stage1.dpo["per_device_train_batch_size"] * stage1.dpo["gradient_accumulation_steps"] == 8
    assert (stage1.dpo["max_length"], stage1.dpo["seed"], stage1.lora["r"], stage1.max_pairs) == (512, 0, 16, None)
    assert stage2c.dpo == stage1.dpo and stage2c.training_format == "conversational"
    stage2a = recipe.section("stage2a")
    assert (stage2a["subset"], stage2a["limit"], stage2a["samples"], stage2a["rounds"]) == ("shortest_reference", 100,
                                                                                          8, 1)
    fast = {"batch_size": 64, "refill": True, "merge_adapter": True, "dtype": "bfloat16"}
    assert stage2a["local_engine"] == evaluation["local_engine"] == fast  # one engine for all sampling
    grpo = recipe.grpo()
    assert grpo.start == "dpo-further" and grpo.reward["scoring"] == "fenced" and grpo.grpo["seed"] == 0
    assert grpo.grpo["max_steps"] * grpo.grpo["per_device_train_batch_size"] * grpo.grpo[
        "gradient_accumulation_steps"] == 4 * 2 * 8 and grpo.grpo["num_generations"] == 8
    ablation = recipes.load(plan.model, plan.overlay, {"protocol": {"switches": plan.switches}})
    assert ablation.training("stage1").training_format == "as_published"
    assert ablation.training("stage1").dpo == stage1.dpo  # the same Stage 1 but for its format
    assert (plan.ablation, plan.headline) == ("dpo-as-published", "fenced")


def test_the_study_is_a_make_target_and_its_design_is_written_down_in_the_readme():
    assert "study: setup" in (paths.REPO_ROOT / "Makefile").read_text()
    readme = (paths.REPO_ROOT / "README.md").read_text()
    assert "make study" in readme.split("```")[1]
    prose = " ".join(readme.split())
    plan = study.design()
    tasks = recipes.load(plan.model, plan.overlay).section("evaluation")["limit"]
    assert f"the {tasks} tasks with the shortest reference solution" in prose and "`dpo-as-published`" in prose


def _study(work, out):
    env = {**os.environ, "PYTHONPATH": str(paths.REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    return [sys.executable, "-m", "shared_utils", "study", "--smoke", "--work", str(work), "--out", str(out)], env


def _launch(command, env, **options) -> subprocess.Popen:
    """The study as a terminal starts it, its output read line by line. Its signals are reset to their defaults:
    a non-interactive shell starts a background job (pytest run with ``&``) ignoring SIGINT, and Python keeps an
    inherited ignored SIGINT ignored, so Ctrl-C would never reach the study."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_default_signals, **options)


def _default_signals() -> None:
    for number in (signal.SIGINT, *study.STOPPING):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.slow
def test_a_smoke_study_runs_every_notebook_and_continues_after_ctrl_c_reusing_finished_stages(tmp_path):
    """Every notebook of the method (the ablation's Stage 1 and GRPO too) at smoke size; Ctrl-C (SIGINT to the
    process group) in the ablation's Stage 1, then the same command again."""
    work, out = tmp_path / "work", tmp_path / "out"
    command, env = _study(work, out)
    first = _launch(command, env, start_new_session=True)
    printed, starts = [], 0
    for line in first.stdout:
        printed.append(line)
        starts += line.startswith("[stage1] 2_Fine_Tuning_Process/")
        if starts == 2:  # the ablation's Stage-1 notebook has started
            os.killpg(first.pid, signal.SIGINT)
            break
    printed.append(first.communicate(timeout=300)[0])
    assert first.returncode == 130, "".join(printed)[-3000:]
    record = json.loads((out / study.RECORD).read_text())
    stages = record["attempts"][0]["stages"]
    assert [(name, stage["status"]) for name, stage in stages.items()] == [
        ("global", "done"), ("stage1", "done"), ("stage1-ablation", "stopped")]
    assert "[study] stage1-ablation: stopped (Ctrl-C" in printed[-1]

    second = subprocess.run(command, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    adapter = study.Study(study.design(True), work, out).layout().recorded(STAGE1)
    assert f"reusing {adapter}" in second.stdout  # trained before the interruption, not again
    assert "[study] stage1-ablation: " in second.stdout and "the study has about" in second.stdout
    executed = sorted(path.name for path in (work / "notebooks").rglob("*.ipynb"))
    assert executed == sorted(NOTEBOOKS + ["1_smollm2_135m_dpo.ipynb"])  # the ablation's own Stage 1
    record = json.loads((out / study.RECORD).read_text())
    assert len(record["attempts"]) == 2 and list(record["attempts"][1]["stages"]) == [s.name for s in study.STEPS]
    resumed = record["attempts"][1]["stages"]["stage1-ablation"]["seconds"]
    stopped = record["attempts"][0]["stages"]["stage1-ablation"]["seconds"]
    assert study.Study.timings(record)["stage1-ablation"] == round(stopped + resumed, 1)  # both attempts' time
    assert record["recipe"]["evaluation"]["subset"] == "shortest_reference" and record["git_commit"]
    evaluated = {path.name.split("_model_output")[0] for path in (work / "artifacts" / "evaluation").glob("*.json")
                 if "_model_output_run_0" in path.name}
    assert {"smollm2_135m_base", "smollm2_135m_dpo", "smollm2_135m_dpo-as-published",
            "smollm2_135m_grpo"} <= evaluated
    run = work / "artifacts" / "evaluation" / "smollm2_135m_base_model_output_run_0.ckpt.jsonl"
    assert engine_of(run) == {"backend": "local", "dtype": "bfloat16", "device": "cpu", "merge_adapter": True,
                              "refill": True, "batch_size": 64}  # the study's engine, recorded with the run
    ablation = json.loads((work / "ablation" / "smollm2-135m").glob("*-dpo-*-epochs").__next__()
                          .joinpath("provenance.json").read_text())
    assert ablation["training_format"] == "as_published"
    for adapter_dir in (adapter, study.Study(study.design(True), work, out).layout().grpo_adapter):
        assert (adapter_dir / "log_history.json").is_file()
    summary = json.loads((out / "summary.json").read_text())  # the report, last
    assert summary["headline"] == "fenced" and {"base", "dpo", "dpo-as-published", "grpo"} <= set(summary["variants"])
    assert (out / "summary.csv").is_file() and (out / "samples.csv.gz").is_file()


def test_a_resumed_study_takes_its_rates_from_where_each_stage_ran_not_from_a_reuse(tmp_path):
    """A stage an earlier attempt finished is reused (seconds): its rate comes from the attempt that ran it."""
    plan = study.Study(study.design(True), tmp_path / "work", tmp_path / "out")
    ran = {"seconds": 1920.0, "units": 60, "unit": "DPO step", "status": "done"}
    attempts = [{"stages": {"global": {"seconds": 14.0, "units": 238, "unit": "replayed pair", "status": "done"},
                            "stage1": ran,
                            "stage1-ablation": {"seconds": 300.0, "units": 60, "unit": "DPO step",
                                                "status": "stopped"}}},
                {"stages": {"global": {"seconds": 13.0, "units": 238, "unit": "replayed pair", "status": "done"},
                            "stage1": {**ran, "seconds": 8.0}}}]
    finished = plan.learn_rates(attempts)
    assert finished == {"global", "stage1"}  # the stopped ablation runs again, and counts
    assert plan.rates["DPO step"] == 32.0 and plan.rates["replayed pair"] == 14.0 / 238
    assert plan.rates["sample"] == study.FIRST_GUESS["sample"]  # nothing of that kind has run


def test_a_fresh_working_folder_starts_its_own_record_not_the_committed_runs(tmp_path, capsys):
    """A fresh clone holds the committed record but no working folder: the new run neither continues its attempts
    (their times summed into its wall time) nor learns their rates; a rerun in the same folder continues."""
    out = tmp_path / "out"
    committed = study.Study(study.design(True), tmp_path / "elsewhere", out)
    record = committed._start_record("make study")
    record["attempts"][-1]["stages"]["stage1"] = {"seconds": 1920.0, "units": 60, "unit": "DPO step",
                                                   "status": "done"}
    files.write_json(out / study.RECORD, record)

    fresh = study.Study(study.design(True), tmp_path / "work", out)
    first = fresh._start_record("make study")
    assert "records another run" in capsys.readouterr().out
    assert len(first["attempts"]) == 1 and fresh.learn_rates(first["attempts"][:-1]) == set()
    assert first["run"] != record["run"]

    again = study.Study(study.design(True), tmp_path / "work", out)._start_record("make study")
    assert "records another run" not in capsys.readouterr().out
    assert len(again["attempts"]) == 2 and again["run"] == first["run"]


def _descendants_of(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:  # gone, or a zombie
        return []


@pytest.mark.slow
def test_sigterm_to_the_study_stops_the_step_its_child_and_kernel_and_records_it_stopped(tmp_path):
    """``kill <pid>`` (SIGTERM to the study alone, as a job scheduler sends) is handled as Ctrl-C is."""
    import psutil

    work, out = tmp_path / "work", tmp_path / "out"
    command, env = _study(work, out)
    first = _launch(command, env)
    printed = []
    for line in first.stdout:
        printed.append(line)
        if line.startswith("[stage1] 2_Fine_Tuning_Process/"):  # Stage 1's notebook has started
            break
    processes = []
    for _ in range(300):  # until the notebook's kernel is up under the step's child
        processes = _descendants_of(first.pid)
        if any("ipykernel_launcher" in " ".join(_cmdline(process)) for process in processes):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no kernel started: " + "".join(printed)[-3000:])
    first.terminate()
    printed.append(first.communicate(timeout=120)[0])
    assert first.returncode == 130, "".join(printed)[-3000:]
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert not alive, f"left running after SIGTERM: {[p.cmdline()[:3] for p in alive]}"
    stages = json.loads((out / study.RECORD).read_text())["attempts"][0]["stages"]
    assert [(name, stage["status"]) for name, stage in stages.items()] == [("global", "done"), ("stage1", "stopped")]
    assert "[study] stage1: stopped (Ctrl-C or a termination signal)" in printed[-1]


def _sections(output: str) -> dict[str, str]:
    """A study's output cut at its ``[study] <step>: ...`` lines: what each step printed."""
    sections, current = {}, None
    names = {step.name for step in study.STEPS}
    for line in output.splitlines(keepends=True):
        if line.startswith("[study] ") and line[8:].split(":")[0] in names:
            current = line[8:].split(":")[0]
        if current is not None:
            sections[current] = sections.get(current, "") + line
    return sections


@pytest.mark.slow
@pytest.mark.long
def test_ctrl_c_in_every_stage_loses_no_finished_work(tmp_path):
    """Ctrl-C (SIGINT to the process group) once in each stage of the smoke study, in order, each time as the
    stage's notebook has started, then the same command again: every stage an earlier attempt finished is reused
    (its notebook says so, with the exceptions of ``_redid_no_finished_work``), and the last attempt finishes the
    study."""
    work, out = tmp_path / "work", tmp_path / "out"
    command, env = _study(work, out)
    finished: set[str] = set()
    names = [step.name for step in study.STEPS]
    target = 0
    while target < len(names):
        step = study.STEPS[target]
        run = _launch(command, env, start_new_session=True)
        printed, in_target = [], False
        for line in run.stdout:
            printed.append(line)
            in_target = in_target or line.startswith(f"[study] {step.name}: ")
            if in_target and line.startswith(f"[{step.stage}] ") and ".ipynb" in line.split()[1]:
                os.killpg(run.pid, signal.SIGINT)
                break
        printed.append(run.communicate(timeout=600)[0])
        output = "".join(printed)
        record = json.loads((out / study.RECORD).read_text())
        stages = record["attempts"][-1]["stages"]
        for name, section in _sections(output).items():
            if name in finished:
                assert _redid_no_finished_work(name, section) and stages[name]["status"] == "done", section[-2000:]
        if run.returncode == 0:  # the interrupted stage had already finished when the signal came: none left
            break
        assert run.returncode == 130, output[-3000:]
        stopped = [name for name, stage in stages.items() if stage["status"] == "stopped"]
        assert len(stopped) == 1 and names.index(stopped[0]) >= target, stages
        finished |= {name for name, stage in stages.items() if stage["status"] == "done"}
        target = names.index(stopped[0]) + 1
    last = subprocess.run(command, env=env, capture_output=True, text=True) if run.returncode else run
    assert last.returncode == 0
    record = json.loads((out / study.RECORD).read_text())
    assert list(record["attempts"][-1]["stages"]) == names
    interrupted = {name for attempt in record["attempts"] for name, stage in attempt["stages"].items()
                   if stage["status"] == "stopped"}
    assert len(interrupted) >= len(names) - 2, interrupted  # a short stage may end before its signal comes
    assert (out / "summary.json").is_file()


def _redid_no_finished_work(name: str, section: str) -> bool:
    """Whether a stage an earlier attempt finished came back without redoing its work: reused ("reusing ..."), or
    one of three cases that have nothing to reuse. The global datasets are made again (seconds of replay; the Stage 1
    after them, whose identity holds their hash, is reused, so they came out the same); Stage 2a at smoke size pairs
    nothing, so it records nothing and rescores its checkpointed samples; Stage 2c then has nothing to train."""
    return (name == "global" or "reusing " in section
            or name == "stage2a" and "nothing saved" in section and "samples already generated" in section
            or name == "stage2c" and "No local dataset recorded" in section)


def test_a_step_killed_by_a_signal_says_so_with_a_shells_exit_status():
    assert study._why(128 + signal.SIGKILL) == " (killed by SIGKILL: out of memory?)"
    assert study._why(128 + signal.SIGSEGV) == " (killed by SIGSEGV)"
    assert study._why(1) == "" and study._why(128 + 200) == ""


def test_a_termination_signal_started_ignored_stays_ignored_while_a_step_runs():
    """``nohup make study &`` ignores SIGHUP: closing the terminal must not stop the study; SIGTERM still does."""
    before = {number: signal.getsignal(number) for number in study.STOPPING}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with study._termination_as_ctrl_c():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
