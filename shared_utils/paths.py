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


DATA_VARIABLE = "SHARED_DATA_DIR"  # names the local data folder (MBPP splits, the authors' files); see the README


def data_dir_candidates() -> list[Path]:
    """Where a local data folder is looked for, in order: ``$SHARED_DATA_DIR`` alone when it is set;
    else ``../shared/data`` beside the checkout, then the cache that ``download-data`` fills."""
    if os.environ.get(DATA_VARIABLE):
        return [Path(os.environ[DATA_VARIABLE]).expanduser()]
    return [REPO_ROOT.parent / "shared" / "data", cache_dir() / "data"]


def shared_data_dir() -> Path | None:
    """The local data folder (``data_dir_candidates``'s first existing one), or None."""
    return next((candidate for candidate in data_dir_candidates() if candidate.is_dir()), None)


def data_download_dir() -> Path:
    """Where ``download-data`` writes: the local data folder that is read (``shared_data_dir``), so that a file it
    lacks lands where it will be found; without one, ``$SHARED_DATA_DIR`` when set, else the git-ignored cache."""
    return shared_data_dir() or (data_dir_candidates()[0] if os.environ.get(DATA_VARIABLE) else cache_dir() / "data")


def global_dir(problem_set: str = "mbpp") -> Path:
    """Where Stage 1's datasets live: the paper's MBPP at the top, other problem sets in a subfolder."""
    return GLOBAL_DIR if problem_set == "mbpp" else GLOBAL_DIR / problem_set


def model_dir(model: str) -> Path:
    """A model's fine-tuning folder, where its notebooks write adapters and datasets."""
    return FINE_TUNING_DIR / model


def evaluation_dir(model: str) -> Path:
    return EVALUATION_DIR / model
