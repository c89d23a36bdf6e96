"""Headless runs of a model's notebooks, stage by stage (``python -m shared_utils run``).

Each stage executes the real notebooks with papermill, so what CI and ``make demo`` run is
exactly what a user runs in Jupyter. Executed copies (with outputs) go to a git-ignored runs
folder; a failing stage stops the run with its error and the executed notebook's path.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from pathlib import Path

from shared_utils import paths, recipes
from shared_utils.layout import RENAMED, STAGES as PIPELINE, ArtifactLayout
from shared_utils.models import DEFAULT_MODEL
from shared_utils.notebooks import targets
from shared_utils.recipes import Recipe

STAGES = tuple(PIPELINE)
DEFAULT_STAGES = tuple(name for name, stage in PIPELINE.items() if stage.paper)  # "all": grpo only when named


@dataclasses.dataclass
class RunOptions:
    model: str = DEFAULT_MODEL
    stages: str = "all"
    smoke: bool = False  # lay resources/recipes/smoke.yaml over the model's recipe
    model_path: str | None = None
    mbpp_source: str = "mbpp"
    responses: str | None = None
    runs_dir: Path | None = None
    artifacts: Path | None = None  # where stage outputs go; default: next to the notebooks (smoke: the runs folder)
    global_dir: Path | None = None  # the global datasets of another run (an ablation's); default: artifacts/global
    protocol: str | None = None  # paper | corrected for every notebook; None: the recipe's
    switches: dict = dataclasses.field(default_factory=dict)  # single protocol differences over it (--switch)
    overrides: dict = dataclasses.field(default_factory=dict)  # recipe values for every notebook, over the smoke ones
    stream: bool = False  # echo what each notebook prints (progress bars too) as it runs
    cell_timeout: int = 3600  # seconds one notebook cell may run (a study's evaluation cell runs longer)

    def stage_list(self) -> list[str]:
        chosen = (list(DEFAULT_STAGES) if self.stages == "all"
                  else [s.strip() for s in self.stages.split(",") if s.strip()])
        renamed = [s for s in chosen if s in RENAMED]
        if renamed:
            raise ValueError("; ".join(f"stage {s!r} is now {RENAMED[s]!r}" for s in renamed))
        unknown = [s for s in chosen if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
        return chosen


def global_parameters(options: RunOptions, template: str, recipe: Recipe, layout: ArtifactLayout) -> dict:
    common = {"output_dir": str(layout.global_.folder)}
    demo = recipe.problem_set == "demo"
    if template == "global_1_dataset_preprocessing":
        return {**common, "source": "demo" if demo else options.mbpp_source}
    if template == "global_3_automated_global_dataset_labelling":
        return {**common, "problem_set": recipe.problem_set}
    params = {**common, "problem_set": recipe.problem_set, "overrides": run_overrides(options)}
    if options.responses:
        return {**params, "backend": "replay", "responses": str(options.responses)}
    if demo:  # offline: the model (a folder model: its registered base's weights) is its own generator
        return {**params, "backend": "local", "generator": options.model_path or recipe.model,
                "recipe": options.model}
    return {**params, "backend": "gemini"}


def model_parameters(options: RunOptions, layout: ArtifactLayout) -> dict:
    params = {"model_path": options.model_path, "overrides": run_overrides(options),
              "global_dir": str(layout.global_.folder), "output_dir": str(layout.model_dir)}
    return {key: value for key, value in params.items() if value is not None}


def run_overrides(options: RunOptions) -> dict:
    """The smoke overlay (a handful of problems, one training step) or nothing, then the run's own overrides."""
    return recipes.merge(recipes.read_yaml(recipes.SMOKE) if options.smoke else {}, options.overrides)


def stage_parameters(options: RunOptions, stage: str, template: str, recipe: Recipe, layout: ArtifactLayout) -> dict:
    if stage == "evaluation":  # scores every protocol side by side
        return {**model_parameters(options, layout), "output_dir": str(layout.evaluation_dir),
                "fine_tuning_dir": str(layout.model_dir)}
    params = (global_parameters(options, template, recipe, layout) if stage == "global"
              else model_parameters(options, layout))
    # GRPO is beyond the paper: it has no paper protocol to follow.
    protocol = notebook_protocol(options)
    return {**params, "protocol": protocol} if protocol and stage != "grpo" else params


def notebook_protocol(options: RunOptions) -> "str | dict | None":
    """A notebook's ``protocol`` parameter: the name alone, or with switches the recipe's section form."""
    if not options.switches:
        return options.protocol
    return {**({"name": options.protocol} if options.protocol else {}), "switches": dict(options.switches)}


def artifact_layout(options: RunOptions, runs_dir: Path) -> ArtifactLayout:
    """The repository's folders; for smoke runs (or ``artifacts``) one folder per kind under a separate root."""
    recipe = run_recipe(options)
    if options.artifacts is None and not options.smoke:
        return recipe.layout(global_dir=options.global_dir)
    root = Path(options.artifacts or runs_dir / "artifacts")
    return recipe.layout(global_dir=options.global_dir or root / "global", model_dir=root / options.model,
                         evaluation_dir=root / "evaluation")


def run_recipe(options: RunOptions) -> Recipe:
    """The model's recipe as the run's notebooks see it (its overlays laid over: problem set, epochs, sizes)."""
    return recipes.load(options.model, run_overrides(options))


def run_pipeline(options: RunOptions) -> int:
    """Execute the chosen stages in order; 0 on success, 1 at the first failing notebook."""
    from papermill.exceptions import PapermillExecutionError

    from shared_utils.notebooks import execute

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = Path(options.runs_dir or paths.RUNS_DIR / options.model / stamp)
    recipe = run_recipe(options)
    layout = artifact_layout(options, runs_dir)
    by_template = {(t.template, t.model.name if t.model else None): t.path for t in targets()}
    for stage in options.stage_list():
        for template in PIPELINE[stage].templates:
            notebook = by_template[(template, None if stage == "global" else options.model)]
            executed = runs_dir / notebook.name
            params = stage_parameters(options, stage, template, recipe, layout)
            print(f"[{stage}] {notebook.relative_to(paths.REPO_ROOT)} {params}", flush=True)
            started = time.monotonic()
            try:
                execute(notebook, executed, params, stream=options.stream, timeout=options.cell_timeout)
            except PapermillExecutionError as exc:
                print(f"[{stage}] FAILED in {notebook.name}: {exc.ename}: {exc.evalue}\n"
                      f"executed notebook: {executed}", flush=True)
                return 1
            print(f"[{stage}] done in {time.monotonic() - started:.0f} s -> {executed}", flush=True)
            print(_indent(summary_output(executed)), flush=True)
    print(f"executed notebooks: {runs_dir}\nartifacts: {layout.global_.folder}, {layout.model_dir}, "
          f"{layout.evaluation_dir}")
    return 0


def summary_output(executed: Path) -> str:
    """What the notebook's closing summary cell printed (every notebook ends with one)."""
    import nbformat

    code = [cell for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"]
    outputs = code[-1].get("outputs", []) if code else []
    return "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream").rstrip()


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
