"""Notebooks are a front end that CI executes: stale renderings or a broken cell fail the build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from shared_utils import notebooks, paths
from shared_utils.layout import STAGE1
from shared_utils.manifest import Manifest
from shared_utils.models import REGISTRY
from shared_utils.recipes import model_names
from shared_utils.runner import RunOptions, artifact_layout, run_pipeline


def test_committed_notebooks_and_readme_table_match_their_sources():
    assert notebooks.render_all(check=True) == [], "run `make notebooks` and commit the result"


def test_readme_model_table_comes_from_the_registry_and_recipes():
    readme = notebooks.README.read_text()
    table = notebooks.model_table()
    assert table in readme
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == list(REGISTRY)
    demo = next(row for row in rows if row.startswith("| `smollm2-135m`"))
    assert "CPU (embedded weights)" in demo and "[2 epochs, lr 0.0001, batch 4 x 1](2_Fine_Tuning_Process/smollm2-135m/recipe.yaml)" in demo
    assert "4-bit under 40 GB" in next(row for row in rows if row.startswith("| `gemma3-12b`"))


def test_every_rendering_is_output_free_with_a_parameters_cell_and_a_summary():
    found = notebooks.targets()
    assert len(found) == 3 + 5 * len(model_names()) + 1  # the paper-outputs notebook
    for target in found:
        notebook = nbformat.reads(notebooks.render(target), as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(not cell.outputs and cell.execution_count is None for cell in code), target.path
        assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1, target.path
        assert "notebook_env.prepare" in code[0].source, target.path
        assert notebook.cells[-2].source.strip() == "## Summary", target.path


def test_a_notebook_saved_with_its_outputs_is_not_stale(tmp_path):
    """What Jupyter writes on save (outputs, counts, language version, widget state, timings) is not a change;
    a change to a cell's source is, and re-rendering is then the advice."""
    target = next(t for t in notebooks.targets() if t.template == "model_1_dpo")
    rendered = notebooks.render(target)
    notebook = nbformat.reads(rendered, as_version=4)
    for count, cell in enumerate((cell for cell in notebook.cells if cell.cell_type == "code"), 1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42 pairs\n"),
                        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})]
        cell.metadata.update(execution={"iopub.status.idle": "2026-12-04T16:00:00Z"}, scrolled=True)
    notebook.metadata.language_info = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python"}
    notebook.metadata.widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    saved = tmp_path / target.path.name
    nbformat.write(notebook, saved)
    assert not notebooks.is_stale(saved, rendered)

    notebook.cells[-1].source += "\nprint('edited by hand')"
    nbformat.write(notebook, saved)
    assert notebooks.is_stale(saved, rendered)
    assert notebooks.is_stale(tmp_path / "missing.ipynb", rendered)


def _with_cpu_demo(target) -> dict:
    """A global notebook's names after its parameters cell with ``cpu_demo=True`` and the statements that read it."""
    import ast

    cells = [cell.source for cell in nbformat.reads(notebooks.render(target), as_version=4).cells
             if cell.cell_type == "code"]
    names: dict = {}
    exec(cells[1] + "\ncpu_demo = True", names)  # the parameters cell, as papermill injects a parameter
    switch = [node for node in ast.parse(cells[2]).body if isinstance(node, ast.If)
              and isinstance(node.test, ast.Name) and node.test.id == "cpu_demo"]
    assert len(switch) == 1, target.path
    exec("from shared_utils import stages\n" + ast.unparse(switch[0]), names)
    return names


def test_one_parameter_selects_the_cpu_path_of_every_global_notebook(tmp_path):
    """``cpu_demo=True`` gives each global notebook what the headless demo run passes it."""
    from shared_utils import recipes
    from shared_utils.runner import global_parameters

    options = RunOptions(model="smollm2-135m")
    recipe = recipes.load(options.model)
    layout = artifact_layout(options, tmp_path)
    for target in (t for t in notebooks.targets() if t.template.startswith("global_")):
        names = _with_cpu_demo(target)
        expected = global_parameters(options, target.template, recipe, layout)
        for name in set(expected) & {"source", "problem_set", "backend", "generator", "recipe"}:
            assert names[name] == expected[name], (target.path, name)
    assert _with_cpu_demo(next(t for t in notebooks.targets() if t.template.startswith("global_2")))["backend"] == "local"


def _executed_outputs(path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(json.dumps(output) for cell in notebook.cells for output in cell.get("outputs", []))


def copy_of_the_checkout(destination: Path) -> Path:
    """The checkout's tracked and not ignored files in a fresh folder: a clone without its history."""
    listed = subprocess.run(["git", "-C", str(paths.REPO_ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
                             "-z"], capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (paths.REPO_ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(paths.REPO_ROOT / name, destination / name)
    return destination


@pytest.mark.slow
def test_a_model_added_as_a_folder_with_a_recipe_renders_and_runs(tmp_path):
    """A variant of the demo model with another Stage-1 beta: one folder, one recipe, its rendered notebooks; its
    Stage-1 notebook trains it on its base's weights with its own beta and its base's learning rate.

    Added to a copy of the checkout, so that the checkout itself never holds it (not even when the run is killed).
    The global datasets are laid down here (the demo problems, four labelled pairs, recorded), so only the model's
    own notebook runs; how the global notebooks name a folder model's weights is ``test_folder_models``'s.
    """
    from shared_utils import data, preferences
    from shared_utils.layout import LABELLED_PAIRS, GlobalLayout
    from stand_ins import TRAINABLE_PAIRS

    name = "smollm2-135m-beta-0.3"
    clone = copy_of_the_checkout(tmp_path / "clone")
    folder = clone / paths.FINE_TUNING_DIR.name / name
    folder.mkdir()
    (folder / "recipe.yaml").write_text("base: smollm2-135m\nstage1:\n  training:\n    beta: 0.3\n")
    env = {**os.environ, "PYTHONPATH": str(clone), "SHARED_UTILS_CACHE": str(paths.cache_dir())}

    def in_the_clone(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], cwd=clone, env=env, capture_output=True, text=True)

    probe = in_the_clone("-c", "from shared_utils import notebooks, recipes; "
                               f"print(recipes.model_spec({name!r}).hub_id, len([t for t in notebooks.targets() "
                               f"if t.model and t.model.name == {name!r}]))")
    assert probe.stdout.split() == [REGISTRY["smollm2-135m"].hub_id, "5"], probe.stderr
    stale = in_the_clone("-m", "shared_utils", "render-notebooks", "--check").stdout
    assert "README.md" in stale and f"{name}/1_" in stale  # the table and the folder lack it until rendered
    assert in_the_clone("-m", "shared_utils", "render-notebooks").returncode == 0
    prepared = GlobalLayout(tmp_path / "global")
    data.prepare("demo", prepared.folder)
    prepared.manifest.record(preferences.save_pairs(TRAINABLE_PAIRS, prepared.dataset), LABELLED_PAIRS, {})
    run = in_the_clone("-c", "from shared_utils.runner import RunOptions, run_pipeline; "
                             f"raise SystemExit(run_pipeline(RunOptions(model={name!r}, stages='stage1', smoke=True, "
                             f"runs_dir={str(tmp_path / 'runs')!r}, global_dir={str(prepared.folder)!r})))")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    model_dir = tmp_path / "runs" / "artifacts" / name
    adapter = Manifest(model_dir).latest(STAGE1).path
    card = json.loads((adapter / "provenance.json").read_text())
    assert card["dpo"]["beta"] == 0.3 and card["dpo"]["learning_rate"] == 1e-4  # its own, then its base's
    assert card["model"] == name and card["weights"]["hub_id"] == REGISTRY["smollm2-135m"].hub_id
    assert not paths.model_dir(name).exists()


@pytest.fixture(scope="module")
def mbpp_global(tmp_path_factory, mbpp_dir, gemini_pairs):
    """Stage 1 data for the paper models, rebuilt offline by the real global notebooks (replay)."""
    root = tmp_path_factory.mktemp("paper")
    options = RunOptions(model="gemma3-1b", stages="global", smoke=True, mbpp_source=str(mbpp_dir),
                         responses=str(gemini_pairs), runs_dir=root / "runs", artifacts=root / "out")
    assert run_pipeline(options) == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gemma3-1b", "gemma3-4b", "gemma3-12b", "qwen3-4b"])
def test_paper_model_first_and_grpo_notebooks_run_on_a_tiny_lookalike(model, mbpp_global, tiny_model_factory):
    """Stage 1, then GRPO from its adapter (smoke: one step of two samples per prompt) on the same tiny model."""
    options = RunOptions(model=model, stages="stage1,grpo", smoke=True, model_path=str(tiny_model_factory(model)),
                         runs_dir=mbpp_global / model, artifacts=mbpp_global / "out", overrides={"grpo": {"start": "dpo"}})
    assert run_pipeline(options) == 0
    layout = artifact_layout(options, mbpp_global / model)
    assert (layout.stage1_adapter / "adapter_config.json").is_file()
    assert "Traceback" not in _executed_outputs(mbpp_global / model / f"1_{layout.spec.slug}_dpo.ipynb")
    card = json.loads((layout.grpo_adapter / "provenance.json").read_text())
    assert card["init_adapter"] == str(layout.stage1_adapter) and card["global_step"] == 1
    assert "code/correctness" in _executed_outputs(mbpp_global / model / f"4_{layout.spec.slug}_grpo.ipynb")


def test_readme_opens_with_the_two_commands_and_links_every_notebook_in_colab():
    readme = (paths.REPO_ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    for target in notebooks.targets():
        relative = target.path.relative_to(paths.REPO_ROOT).as_posix()
        assert f"]({relative})" in readme, relative
        assert f"colab.research.google.com/github/{notebooks.REPOSITORY}/blob/main/{relative})" in readme, relative



def test_readme_starts_with_set_up_data_and_each_notebooks_parameters_and_time():
    """Before any reference material: how to set up, where the data comes from, what each notebook takes and costs."""
    readme = (paths.REPO_ROOT / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## Set-up", "## The data: where each input comes from",
                            "## The notebooks: parameters and CPU times",
                            "## Where to change what"]
    times = readme.split("## The notebooks: parameters and CPU times")[1].split("\n## ")[0]
    for target in notebooks.targets():
        if target.model is None or target.model.name == "smollm2-135m":
            kind = target.path.stem.replace(target.model.slug, "<model>") if target.model else target.path.stem
            row = next(line for line in times.splitlines() if line.startswith(f"| `{kind}`"))
            parameters = nbformat.reads(notebooks.render(target), as_version=4).cells
            tagged = next(cell.source for cell in parameters if "parameters" in cell.metadata.get("tags", []))
            for name in (line.split(" = ")[0] for line in tagged.splitlines() if " = " in line):
                assert f"`{name}`" in row, (kind, name)
