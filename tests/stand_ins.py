"""Small stand-ins several test modules need: an adapter folder that is only its marker file, a free port."""

from __future__ import annotations

import socket
from pathlib import Path


# What ``training.card`` records for a trained adapter (provenance.json), as a Stage-1 gemma3-1b run writes it.
ADAPTER_RECORD = dict(
    kind="dpo-lora-adapter", dpo={"beta": 0.1, "learning_rate": 5e-7}, lora={"r": 16, "lora_alpha": 32},
    reference="base", training_format="conversational", base_model="google/gemma-3-1b-it", model="gemma3-1b",
    weights={"hub_id": "google/gemma-3-1b-it", "revision": None}, git_commit="0123abcd" * 5, init_adapter=None,
    dataset="pairs", pairs=4, dataset_sha256="ab" * 32, global_step=2, seed=42, max_pairs=None,
    metrics={"loss": 0.69}, plots=["loss.png"], versions={"trl": "1.16.0"})


def fake_adapter(folder: Path) -> Path:
    """A folder that the layout and the backends take for a trained adapter (its config, empty)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
