"""Shared fixtures: offline everywhere, the real MBPP beside the checkout, tiny look-alike models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from shared_utils.paths import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("no local data folder: set SHARED_DATA_DIR, or lay ../shared/data beside this checkout")
    return path


@pytest.fixture(scope="session")
def mbpp_dir(shared_data) -> Path:
    return shared_data / "mbpp"


@pytest.fixture(scope="session")
def gemini_pairs(shared_data) -> Path:
    return shared_data / "global_dpo" / "gemini_pairs.jsonl"


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Build (once per session) a tiny random look-alike of a registry model; returns its folder."""
    from tiny_models import build_tiny_model

    built: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in built:
            built[name] = build_tiny_model(name, tmp_path_factory.mktemp(name) / "model")
        return built[name]

    return make


@pytest.fixture
def train_calls(monkeypatch) -> dict:
    """Stand in for ``train_dpo``: it writes a fake adapter at ``out`` (its weights name the settings) and
    records what it was passed: ``settings`` (the last), ``calls`` (every call's dataset, out and init_adapter)."""
    from shared_utils.training import TrainResult
    from stand_ins import fake_adapter

    seen = {"calls": []}

    def fake_train(model, dataset, out, *, settings, init_adapter=None, **_):
        seen["settings"] = settings
        seen["calls"].append({"dataset": dataset, "out": out, "init_adapter": init_adapter, "settings": settings})
        fake_adapter(out, weights=repr(settings.as_dict()), complete=True)
        return TrainResult(adapter_dir=out, metrics={}, log_csv=out, plots=[])

    monkeypatch.setattr("shared_utils.training.train_dpo", fake_train)
    return seen
