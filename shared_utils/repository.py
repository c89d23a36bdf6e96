"""Where this repository is published, and the links into it that the README and the notebooks carry."""

from __future__ import annotations

from pathlib import Path

from shared_utils import paths

UNSET = "OWNER/REPO"
REPOSITORY = UNSET  # where this repository is published on GitHub (owner/name): the Colab badges and the clone use it
COLAB = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/"


def notebook_link(path: Path) -> str:
    """``[name](path)`` and its Open-in-Colab badge (the badge image is a reference defined once)."""
    relative = path.relative_to(paths.REPO_ROOT).as_posix()
    return f"[`{path.name}`]({relative}) [![Colab][colab]]({COLAB}{relative})"
