"""Well-known locations inside the repository and the local caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GLOBAL_DIR = REPO_ROOT / "1_Global_Dataset_Generation"
FINE_TUNING_DIR = REPO_ROOT / "2_Fine_Tuning_Process"
EVALUATION_DIR = REPO_ROOT / "3_Evaluation"
RUNS_DIR = REPO_ROOT / "runs"


def cache_dir() -> Path:
    """Git-ignored cache for converted models; ``SHARED_UTILS_CACHE`` overrides it."""
    return Path(os.environ.get("SHARED_UTILS_CACHE", REPO_ROOT / ".cache"))


def shared_data_dir() -> Path | None:
    """The read-only data folder laid beside the checkout (``../shared/data``), if present."""
    candidate = Path(os.environ.get("SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


def global_dir(problem_set: str = "mbpp") -> Path:
    """Where Stage 1's datasets live: the paper's MBPP at the top, other problem sets in a subfolder."""
    return GLOBAL_DIR if problem_set == "mbpp" else GLOBAL_DIR / problem_set


def model_dir(model: str) -> Path:
    """A model's fine-tuning folder, where its notebooks write adapters and datasets."""
    return FINE_TUNING_DIR / model


def evaluation_dir(model: str) -> Path:
    return EVALUATION_DIR / model
