"""Per-model notebooks rendered from one template per notebook kind, and executed headless.

Templates are jupytext "percent" scripts in ``notebook_templates``; rendering substitutes the
model (``string.Template``), prepends the shared set-up cell and writes output-free notebooks.
Execution goes through papermill, so a notebook's tagged parameters cell is what a headless
run (``python -m shared_utils run``) or a test changes.
"""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path

from shared_utils import files, paths
from shared_utils.models import REGISTRY, ModelSpec

TEMPLATES = Path(__file__).parent / "notebook_templates"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


@dataclasses.dataclass(frozen=True)
class Target:
    template: str
    path: Path
    model: ModelSpec | None = None


def _model_name(spec: ModelSpec, kind: str) -> str:
    return {
        "model_1_dpo": f"1_{spec.slug}_dpo.ipynb",
        "model_2_dpo_local_dataset_self_generation": f"2_{spec.slug}_dpo_local_dataset_self_generation.ipynb",
        "model_3_dpo_further": f"3_{spec.slug}_dpo_further.ipynb",
    }[kind]


def targets() -> list[Target]:
    """Every notebook in the repository and the template it is rendered from."""
    found = [Target(t.stem, paths.GLOBAL_DIR / f"{t.stem.removeprefix('global_')}.ipynb")
             for t in sorted(TEMPLATES.glob("global_*.py"))]
    for spec in REGISTRY.values():
        for template in sorted(TEMPLATES.glob("model_*.py")):
            found.append(Target(template.stem, paths.model_dir(spec.name) / _model_name(spec, template.stem), spec))
        found.append(Target("evaluate", paths.evaluation_dir(spec.name) / f"evaluate_{spec.slug}.ipynb", spec))
    return found


def render(target: Target) -> str:
    import jupytext
    import nbformat

    fields = {"model_literal": "None"}
    if target.model is not None:
        spec = target.model
        fields = {"model": spec.name, "slug": spec.slug, "adapter_prefix": spec.adapter_prefix,
                  "model_literal": repr(spec.name)}
    body = string.Template((TEMPLATES / f"{target.template}.py").read_text()).substitute(fields)
    setup = string.Template((TEMPLATES / "_setup.py").read_text()).substitute(fields)
    notebook = jupytext.reads(body, fmt="py:percent")
    setup_cell = jupytext.reads(setup, fmt="py:percent").cells[0]
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    notebook.cells.insert(first_code, setup_cell)
    for cell in notebook.cells:
        cell.metadata.pop("lines_to_next_cell", None)
        cell.pop("id", None)
    notebook.metadata = {"kernelspec": KERNEL, "language_info": {"name": "python"}}
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index}"
    return nbformat.writes(notebook) + "\n"


def render_all(*, check: bool = False) -> list[Path]:
    """Write every notebook whose content differs from its rendering; return those paths.

    With ``check=True`` nothing is written: the returned paths are the stale notebooks.
    """
    stale = []
    for target in targets():
        text = render(target)
        if not target.path.is_file() or target.path.read_text() != text:
            stale.append(target.path)
            if not check:
                files.write_text(target.path, text)
    return stale


def execute(notebook: str | Path, output: str | Path, parameters: dict, *, timeout: int = 3600,
            progress: bool = True) -> Path:
    """Run a notebook top to bottom in its own folder with papermill; the executed copy goes to ``output``."""
    import papermill

    notebook = Path(notebook)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(notebook.parent),
                               kernel_name="python3", progress_bar=progress, execution_timeout=timeout,
                               log_output=False)
    return Path(output)
