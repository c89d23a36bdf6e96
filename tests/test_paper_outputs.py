"""The authors' published outputs, re-scored (``shared_utils.paper_outputs``) and fetched (``shared_utils.inputs``).

Quick: one published file per model, on its first tasks, equals the authors' own per-task analysis
under ``paper``; the README's section is the rendering of the committed results. Opt-in
(``PAPER_OUTPUTS_FULL=1``, about 12 minutes on two cores): all 50 files equal the authors' per-run table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from shared_utils import data, files, inputs, paper_outputs, paths

ONE_PER_MODEL = ("gemma_1b_baseline_model_output_run_1.json.xz", "gemma_4b_dpo_250_model_output_run_2.json.xz",
                 "gemma_12b_dpo_250_further_250_model_output_run_3.json.xz",
                 "qwen3_4b_dpo_250_further_250_model_output_run_1.json.xz")
TASKS = 25


@pytest.fixture(scope="session")
def published(shared_data):
    return shared_data / "published"


@pytest.fixture(scope="session")
def test_problems(mbpp_dir):
    return data.load_mbpp(mbpp_dir, "test")


def test_one_file_per_model_equals_the_authors_per_task_analysis(published, test_problems):
    frame = paper_outputs.candidates([published / name for name in ONE_PER_MODEL])
    frame = frame[frame["task_id"] < 11 + TASKS]
    samples = paper_outputs.score(frame, test_problems, protocols=("paper",), progress=False)
    ours = paper_outputs.per_task(samples, "paper").set_index(["file", "task_id"])
    authors = pd.read_csv(published / "authors_per_task_analysis.csv.xz").set_index(["file", "task_id"])
    authors = authors.loc[ours.index]
    assert len(ours) == len(ONE_PER_MODEL) * TASKS
    assert ((ours["c"] > 0) == authors["pass_at_10"]).all()
    solved = ours["c"] > 0
    assert ours.loc[solved, "mi"].to_numpy() == pytest.approx(authors.loc[solved, "avg_mi"].to_numpy(), abs=1e-9)
    assert set(ours.reset_index()["model"]) == set(paper_outputs.MODELS.values())


def test_reuse_runs_each_distinct_program_once_and_gives_every_copy_its_verdict(published, test_problems, monkeypatch):
    import shared_utils.protocol as protocol

    frame = paper_outputs.candidates([published / ONE_PER_MODEL[0], published / "gemma_1b_baseline_model_output_run_2.json.xz"])
    frame = frame[frame["task_id"] < 16]
    ran = []
    real = protocol.check_candidates
    monkeypatch.setattr(protocol, "check_candidates", lambda problems, jobs, *a, **k: ran.append(len(jobs)) or real(problems, jobs, *a, **k))
    reused = paper_outputs.score(frame, test_problems, protocols=("paper",), progress=False)
    every = paper_outputs.score(frame, test_problems, protocols=("paper",), reuse=False, progress=False)
    assert ran == [len(frame[["task_id", "code"]].drop_duplicates()), len(frame)] and ran[0] < ran[1]
    assert reused["passed_paper"].tolist() == every["passed_paper"].tolist()


def test_disagreements_name_the_tasks_and_the_reason():
    rows = [{"file": "f1", "model": "m", "variant": "base", "run": 1, "task_id": task, "sample": 0, "code": "",
             "mi": 70.0, "passed_paper": paper, "passed_corrected": corrected,
             "status_paper": None if paper else "AssertionError: x", "status_corrected": None if corrected else "NameError: y"}
            for task, paper, corrected in ((11, True, False), (12, True, True), (13, False, False))]
    table = paper_outputs.disagreements(pd.DataFrame(rows))
    row = table.iloc[0]
    assert (row["paper_only"], row["corrected_only"], row["solved_flips"]) == (1, 0, 1)
    assert row["tasks_solved_flip"] == "11" and row["reasons"] == "NameError (1)"


def test_published_file_names_are_described_and_others_refused():
    about = paper_outputs.describe("gemma_12b_dpo_250_further_250_model_output_run_3.json.xz")
    assert about == {"file": "gemma_12b_dpo_250_further_250_model_output_run_3.json", "model": "gemma3-12b",
                     "variant": "dpo-further", "run": 3}
    assert paper_outputs.describe("qwen3_4b_dpo_250_model_output_run_1.json")["variant"] == "dpo"
    with pytest.raises(ValueError, match="llama_1b_baseline_model_output_run_1.json: not a published completion file"):
        paper_outputs.describe("llama_1b_baseline_model_output_run_1.json")


def test_readme_section_is_the_rendering_of_the_committed_results():
    readme = (paths.REPO_ROOT / "README.md").read_text()
    assert paper_outputs.readme_section() in readme, "run `python -m shared_utils render-notebooks`"
    runs = pd.read_csv(paper_outputs.RESULTS_DIR / "per_run.csv")
    assert runs[runs["protocol"] == "paper"]["matches"].all() and len(runs) == 2 * 50
    assert (paper_outputs.RESULTS_DIR / "figure.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PAPER_OUTPUTS_FULL") != "1", reason="about 11 minutes quiet: PAPER_OUTPUTS_FULL=1")
def test_all_fifty_files_reproduce_the_authors_per_run_numbers(published, tmp_path, monkeypatch):
    monkeypatch.setenv("SHARED_UTILS_CACHE", str(tmp_path / "cache"))
    results = paper_outputs.run(published, tmp_path / "out", progress=False)
    assert paper_outputs.mismatches(results).empty
    assert len(results["per_run"]) == 100 and set(results["comparisons"]["verdict"]) <= {"better", "worse", "no evidence"}


# --------------------------------------------------------------------------------------------
# The authors' files: the manifest, the local folder, the download


def test_the_manifest_holds_the_local_copies_sizes_and_checksums(shared_data):
    found = inputs.status(folder=shared_data)
    assert len(found) == 53 and all(problem is None for problem in found.values()), found
    assert inputs.group_dir("published", shared_data) == shared_data / "published"


def test_download_without_an_address_says_so_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="address is not set") as error:
        inputs.download(["gemini"], tmp_path)
    assert "\n" not in str(error.value)


def test_download_fetches_checks_and_refuses_a_different_file(shared_data, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "global_dpo").mkdir(parents=True)
    good = (shared_data / "global_dpo" / "gemini_pairs.jsonl").read_bytes()
    (mirror / "global_dpo" / "gemini_pairs.jsonl").write_bytes(good)
    fetched = []
    folder = inputs.download(["gemini"], tmp_path / "data", base_url=mirror.as_uri(), progress=fetched.append)
    assert (folder / "global_dpo" / "gemini_pairs.jsonl").read_bytes() == good and len(fetched) == 1
    inputs.download(["gemini"], tmp_path / "data", base_url="file:///nowhere")  # present and checked: nothing fetched
    (mirror / "global_dpo" / "gemini_pairs.jsonl").write_bytes(good[:-1] + b"X")
    with pytest.raises(ValueError, match="sha256 .* not kept"):
        inputs.download(["gemini"], tmp_path / "other", base_url=mirror.as_uri())
    assert not (tmp_path / "other" / "global_dpo" / "gemini_pairs.jsonl").exists()


def test_the_data_folder_setting_and_the_local_mbpp(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(paths.DATA_VARIABLE, str(shared_data))
    assert data.mbpp_source() == shared_data / "mbpp" and data.mbpp_source("other/hub-id") == "other/hub-id"
    written = data.prepare("mbpp", tmp_path / "prepared")  # the hub id, offline: the local copy is read, and said so
    assert f"MBPP: the local copy in {shared_data / 'mbpp'}" in capsys.readouterr().out
    assert files.read_provenance(written["test"])["source"] == str(shared_data / "mbpp")
    monkeypatch.setenv(paths.DATA_VARIABLE, str(tmp_path / "absent"))
    assert paths.shared_data_dir() is None and data.mbpp_source() == "mbpp"
    with pytest.raises(FileNotFoundError, match="download-data"):
        inputs.data_dir()
    assert paths.data_download_dir() == tmp_path / "absent"


def test_a_download_completes_the_data_folder_that_is_read(tmp_path, monkeypatch):
    """With no setting, ``../shared/data`` (when it exists) is read, so a missing file is fetched into it, not into
    a cache nothing reads while that folder exists."""
    monkeypatch.delenv(paths.DATA_VARIABLE, raising=False)
    beside, cache = tmp_path / "shared" / "data", tmp_path / "cache"
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(paths, "cache_dir", lambda: cache)
    assert paths.shared_data_dir() is None and paths.data_download_dir() == cache / "data"
    beside.mkdir(parents=True)
    assert paths.shared_data_dir() == beside and paths.data_download_dir() == beside


def test_replay_finds_the_authors_gemini_answers_and_refuses_another_file(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_VARIABLE, str(shared_data))
    assert inputs.gemini_pairs() == shared_data / "global_dpo" / "gemini_pairs.jsonl"
    (tmp_path / "global_dpo").mkdir()
    (tmp_path / "global_dpo" / "gemini_pairs.jsonl").write_text('{"task_id": 601}\n')
    monkeypatch.setenv(paths.DATA_VARIABLE, str(tmp_path))
    with pytest.raises(ValueError, match="not the authors' file"):
        inputs.gemini_pairs()


def test_the_verbs_score_a_folder_and_check_the_local_copies(published, tmp_path, monkeypatch, capsys):
    import json
    import lzma

    from shared_utils.cli import main

    monkeypatch.setenv("SHARED_UTILS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "published"
    folder.mkdir()
    for name in ("gemma_1b_baseline_model_output_run_1.json.xz", "gemma_1b_dpo_250_model_output_run_1.json.xz"):
        rows = json.loads(lzma.decompress((published / name).read_bytes()))[:3]  # three tasks: not the authors' runs
        (folder / name).write_bytes(lzma.compress(json.dumps(rows).encode()))
    (folder / paper_outputs.AUTHORS_TABLE).write_bytes((published / paper_outputs.AUTHORS_TABLE).read_bytes())
    status = main(["paper-outputs", "--data", str(folder), "--out", str(tmp_path / "out"), "--workers", "2"])
    out = capsys.readouterr().out
    assert status == 1 and "2 file(s) differ from the authors' per-run numbers" in out
    assert re.search(r"paper\s+gemma3-1b\s+base\s+dpo\s+pass@1", out) and "one family per protocol" in out
    assert {path.name for path in (tmp_path / "out").iterdir()} == {
        "per_run.csv", "table.csv", "comparisons.csv", "disagreements.csv", "figure.png", "provenance.json"}
    assert main(["download-data", "--check", "--to", str(published.parent)]) == 0
    assert "0 of 53 file(s) missing or different" in capsys.readouterr().out
    assert main(["download-data", "--what", "gemini", "--to", str(tmp_path / "empty")]) == 2
    assert "address is not set" in capsys.readouterr().err


def test_the_verdict_cache_is_keyed_by_the_judging_code(tmp_path, monkeypatch):
    """Verdicts cached by other sandbox or MI code are never read back as this code's."""
    import shutil

    package = Path(paper_outputs.__file__).parent
    copy = tmp_path / "shared_utils"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = paper_outputs.judging_code(copy)
    assert before == paper_outputs.judging_code(package)
    (copy / "cli.py").write_text("# not judging code\n")
    assert paper_outputs.judging_code(copy) == before
    asserts = copy / "sandbox" / "asserts.py"
    asserts.write_text(asserts.read_text() + "\n# a change to the judge\n")
    assert paper_outputs.judging_code(copy) != before

    found = [tmp_path / "run.json"]
    found[0].write_text("[]")
    first = paper_outputs.scores_cache(found, True)
    monkeypatch.setattr(paper_outputs, "judging_code", lambda: "other code")
    assert paper_outputs.scores_cache(found, True) != first
