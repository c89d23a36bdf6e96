"""One simulated Colab session: a fresh Python that runs notebooks' set-up cells as Colab would.

Usage: ``python colab_session.py CONTENT SOURCE_REPO REPORT WORKSPACE REPOSITORY NOTEBOOK...`` (notebook
paths relative to the repository; WORKSPACE and REPOSITORY are what the user sets in the cell, an empty
REPOSITORY leaves the rendered one). ``CONTENT`` stands for ``/content``; ``google.colab.drive.mount`` makes its
``drive/MyDrive``; ``git clone`` copies SOURCE_REPO's working tree (tracked and unignored files)
and ``pip``/``git pull`` are only recorded: no network and no install. For each notebook the
set-up cell runs (the first notebook's twice in a row, as after "Restart session"), then its parameters
cell, then the step that builds its layout, and the notebook leaves a marker of what it writes.
REPORT receives, per notebook, where it ran and which earlier outputs it found, and the commands; a
set-up cell that stops (``SystemExit``) ends the session with its message under ``stopped``.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat

commands: list[list[str]] = []
real_run = subprocess.run


def fake_run(command, *args, **kwargs):
    fetches = isinstance(command, list) and command[0] == "git" and {"clone", "pull"} & set(command)
    if not (fetches or isinstance(command, list) and command[1:3] == ["-m", "pip"]):
        return real_run(command, *args, **kwargs)  # anything else (uname, git rev-parse in the clone...) runs
    command = [str(part) for part in command]
    commands.append(command)
    if command[:2] == ["git", "clone"]:
        source, clone = Path(SOURCE), Path(command[-1])
        listed = real_run(["git", "-C", source, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                          capture_output=True, text=True, check=True).stdout
        for name in filter(None, listed.split("\0")):
            if (source / name).is_file():
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, clone / name)
        (clone / ".git").mkdir()
    return subprocess.CompletedProcess(command, 0)


def mount(mountpoint: str) -> None:
    commands.append(["mount", mountpoint])
    (Path(mountpoint) / "MyDrive").mkdir(parents=True, exist_ok=True)


def code_cells(notebook: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]


def what_it_finds_and_writes(notebook: str, names: dict) -> dict:
    """The layout the notebook's first step builds from its parameters; a marker for what it writes."""
    from shared_utils import recipes
    from shared_utils.layout import LABELLED_PAIRS, GlobalLayout

    if notebook.startswith("1_Global"):
        out = GlobalLayout.for_problem_set(names["problem_set"], names["output_dir"])
        out.dataset.mkdir(parents=True, exist_ok=True)
        out.manifest.record(out.dataset, LABELLED_PAIRS, {})  # as the labelling records it
        return {"wrote": str(out.dataset.resolve())}
    settings = recipes.load(names["recipe"].split("/")[1], names["overrides"], recipe=names["recipe"])
    if notebook.startswith("3_Evaluation"):
        layout = settings.layout(global_dir=names["global_dir"], model_dir=names["fine_tuning_dir"],
                                 evaluation_dir=names["output_dir"])
        return {"found": layout.variants(), "reads": str(layout.global_.test_problems.parent.resolve())}
    from shared_utils.layout import FURTHER, LOCAL_PAIRS, STAGE1

    layout = settings.layout(global_dir=names["global_dir"], model_dir=names["output_dir"])
    stage = Path(notebook).name.split("_")[0]
    iteration = names.get("iteration", 1)
    try:
        reads = {"1": lambda: layout.global_.labelled, "2": lambda: layout.start_adapter(iteration),
                 "3": lambda: layout.recorded(LOCAL_PAIRS, iteration)}[stage]()
    except FileNotFoundError:  # run alone: no earlier notebook recorded what it reads
        reads = None
    writes, role = {"1": (layout.stage1_adapter, STAGE1), "2": (layout.local_dataset(), LOCAL_PAIRS),
                    "3": (layout.further_adapter(), FURTHER)}[stage]
    writes.mkdir(parents=True, exist_ok=True)
    if stage != "2":
        (writes / "adapter_config.json").write_text("{}")
    layout.manifest.record(writes, role, {}, None if stage == "1" else iteration)  # as the stage records it
    return {"found": reads is not None and reads.exists(), "reads": str(reads.resolve()) if reads else None,
            "wrote": str(writes.resolve())}


def main() -> None:
    global SOURCE
    content, SOURCE, report, workspace, repository, *notebooks = sys.argv[1:]
    import google  # the real namespace package (google.genai lives there); only google.colab is fake

    colab, drive = types.ModuleType("google.colab"), types.ModuleType("google.colab.drive")
    drive.mount, colab.drive, google.colab = mount, drive, colab
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)  # libraries ask find_spec
    sys.modules.update({"google.colab": colab, "google.colab.drive": drive})
    subprocess.run = fake_run
    results = {}
    for index, notebook in enumerate(notebooks):
        setup, parameters = code_cells(Path(SOURCE) / notebook)[:2]
        for _ in range(2 if index == 0 else 1):
            cell = setup.replace('"/content', f'"{content}').replace('WORKSPACE = "drive"', f"WORKSPACE = {workspace!r}")
            if repository:
                cell = re.sub(r'^REPOSITORY = ".*?"', f"REPOSITORY = {repository!r}", cell, count=1, flags=re.M)
            try:
                exec(cell, {"__name__": "__main__"})
            except SystemExit as stop:
                Path(report).write_text(json.dumps({"notebooks": results, "commands": commands, "stopped": str(stop)}))
                return
        names: dict = {}
        exec(parameters, names)
        import shared_utils

        results[notebook] = {"cwd": os.getcwd(), "package": shared_utils.__file__,
                             **what_it_finds_and_writes(notebook, names)}
    Path(report).write_text(json.dumps({"notebooks": results, "commands": commands}))


if __name__ == "__main__":
    main()
