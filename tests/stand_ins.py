"""Small stand-ins several test modules need: an adapter folder of empty files, recorded or not, a free port, a
model that says what it is told."""

from __future__ import annotations

import socket
from pathlib import Path


# What ``training.card`` records for a trained adapter (provenance.json), as a Stage-1 gemma3-1b run writes it.
ADAPTER_RECORD = dict(
    kind="dpo-lora-adapter", dpo={"beta": 0.1, "learning_rate": 5e-7}, lora={"r": 16, "lora_alpha": 32},
    reference="base", training_format="conversational", base_model="google/gemma-3-1b-it", model="gemma3-1b",
    weights={"hub_id": "google/gemma-3-1b-it", "revision": None}, git_commit="0123abcd" * 5, init_adapter=None,
    base_weights={"load_in_4bit": False, "dtype": "bfloat16"},
    dataset="pairs", pairs=4, dataset_sha256="ab" * 32, global_step=2, seed=42, max_pairs=None,
    metrics={"loss": 0.69}, plots=["loss.png"], versions={"trl": "1.16.0"})


def fake_adapter(folder: Path, weights: str = "", *, complete: bool = False) -> Path:
    """A folder that the layout and the backends take for an adapter (its config and weights, nearly empty);
    ``weights`` stands for what was trained (the adapter's hash follows it). ``complete``: with the card and
    provenance training writes last, so training takes it for a finished one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_text(weights)
    if complete:
        (folder / "README.md").write_text("")
        (folder / "provenance.json").write_text("{}")
    return folder


TOY_PAIRS = [{"prompt": [{"role": "user", "content": f"task {i}"}], "chosen": f"def f():\n    return {i}",
              "rejected": f"def f():\n    x = {i}\n    return x", "task_id": i} for i in range(4)]


# Four pairs in the labelled dataset's chat form, which real DPO training takes (TOY_PAIRS only stand-ins do).
TRAINABLE_PAIRS = [{"prompt": [{"role": "user", "content": f"Return {i}."}],
                    "chosen": [{"role": "assistant", "content": f"```python\ndef f():\n    return {i}\n```"}],
                    "rejected": [{"role": "assistant", "content": f"```python\ndef f( ):\n  x = {i}\n  return x\n```"}],
                    "task_id": i} for i in range(4)]


def global_dataset(folder: Path) -> Path:
    """Four toy pairs saved as the labelled global dataset of ``folder`` and recorded as labelling records them
    (what Stage 1 trains on)."""
    from shared_utils import preferences
    from shared_utils.layout import LABELLED_PAIRS, GlobalLayout

    out = GlobalLayout(folder)
    saved = preferences.save_pairs(TOY_PAIRS, out.dataset)
    out.manifest.record(saved, LABELLED_PAIRS, {"pairs": "toy"})
    return saved


def recorded_adapter(layout, variant: str) -> Path:
    """A fake adapter where the layout writes ``variant``'s, recorded in the model's manifest as that stage does."""
    from shared_utils.layout import _variant_iteration

    if variant in ("dpo", "grpo"):
        folder, role, iteration = (layout.stage1_adapter if variant == "dpo" else layout.grpo_adapter), variant, None
    else:
        iteration = _variant_iteration(variant)
        folder, role = layout.further_adapter(iteration), "dpo-further"
    layout.manifest.record(fake_adapter(folder), role, {"variant": variant}, iteration)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scripted:
    """Wrap a model so that it emits a fixed token script (the real model still fills the cache)."""

    def __init__(self, model, script: list[int]):
        self.inner, self.script, self.calls = model, script, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, **kwargs):
        out = self.inner(**kwargs)
        step = self.calls
        self.calls += 1
        logits = out.logits.clone().fill_(-1e9)
        logits[..., self.script[min(step, len(self.script) - 1)]] = 0.0
        out.logits = logits
        return out
