"""The package's modules import each other as a tree, and naming things stays light.

Every import counts, the ones inside functions too (they run the moment a caller needs them, so
a circle through them is a circle). Identity (``models``), recipes and folders (``layout``) load
neither TRL nor torch: building a folder name must not probe a GPU.
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys

import pytest

from shared_utils import paths

PACKAGE = paths.REPO_ROOT / "shared_utils"
HEAVY = ("torch", "trl", "peft", "transformers")


def _modules() -> dict[str, object]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(paths.REPO_ROOT).with_suffix("").parts
        if "notebook_templates" in parts:  # notebook sources, not modules
            continue
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: the package modules it imports}``, from every import statement in it."""
    modules = _modules()
    graph = {}
    for name, file in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def test_the_package_imports_form_no_circle():
    graph = import_graph()
    assert {"shared_utils.models", "shared_utils.recipes", "shared_utils.layout"} <= set(graph)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as circle:
        pytest.fail(f"import circle: {' -> '.join(circle.args[1])}")


def test_identity_knows_nothing_of_recipes_folders_or_prompts():
    graph = import_graph()
    assert not graph["shared_utils.models"] & {"shared_utils.recipes", "shared_utils.layout", "shared_utils.manifest",
                                                "shared_utils.notebooks", "shared_utils.stages"}
    assert "shared_utils.models" not in graph["shared_utils.prompts"]


def _loaded_after(code: str) -> list[str]:
    """The heavy libraries in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=paths.REPO_ROOT).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.parametrize("module", ["shared_utils.layout", "shared_utils.recipes", "shared_utils.models",
                                    "shared_utils.manifest"])
def test_naming_modules_load_neither_trl_nor_torch(module):
    assert _loaded_after(f"import {module}") == []


def test_a_models_folders_are_named_without_trl_or_torch():
    code = ("from shared_utils import recipes\n"
            "layout = recipes.load('gemma3-4b', {'stage1': {'training': {'num_train_epochs': 3}}}).layout()\n"
            "assert layout.stage1_adapter.name == 'gemma-3-4b-dpo-3-epochs', layout.stage1_adapter")
    assert _loaded_after(code) == []
