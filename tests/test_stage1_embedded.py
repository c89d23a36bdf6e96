"""Stage 1 end to end and offline: the global dataset rebuilt from the shared Gemini
responses with the headless verbs, a Stage-1 adapter trained on the embedded model, and proof
that DPO did its job (the chosen-minus-rejected log-probability margin rises with the adapter)."""

from __future__ import annotations

import json
import statistics

import pytest

from shared_utils import preferences
from shared_utils.cli import main
from shared_utils.layout import GlobalLayout

pytestmark = pytest.mark.slow
PAIRS = 8


@pytest.fixture(scope="module")
def global_dataset(mbpp_dir, gemini_pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("global")
    assert main(["prepare", "--source", str(mbpp_dir), "--out", str(root)]) == 0
    assert main(["global-pairs", "--backend", "replay", "--responses", str(gemini_pairs), "--problems", str(root),
                 "--out", str(root)]) == 0
    assert main(["label", "--pairs", str(root), "--out", str(root)]) == 0
    assert GlobalLayout(root).train_problems.is_dir()
    return GlobalLayout(root).dataset


def test_replayed_global_dataset_has_every_shared_pair(global_dataset):
    rows = preferences.load_rows(global_dataset)
    assert len(rows) == 238
    assert all(row["chosen_mi"] >= row["rejected_mi"] for row in rows)
    counts = json.loads(GlobalLayout(global_dataset.parent).pair_counts.read_text())
    assert counts["both"] == 238


@pytest.fixture(scope="module")
def stage1_adapter(global_dataset, tmp_path_factory):
    from shared_utils import recipes
    from shared_utils.training import train_dpo

    recipe = recipes.load("smollm2-135m", {"stage1": {"training": {"num_train_epochs": 2}, "max_pairs": PAIRS}})
    out = recipe.layout(model_dir=tmp_path_factory.mktemp("stage1")).stage1_adapter
    return train_dpo("smollm2-135m", global_dataset, out, settings=recipe.training("stage1"), progress=False)


def test_adapter_is_saved_with_card_and_plots(stage1_adapter, capsys):
    folder = stage1_adapter.adapter_dir
    assert folder.name == "smollm2-135m-dpo-2-epochs"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "training_log.csv", "loss.png",
                 "rewards_margins.png"):
        assert (folder / name).is_file(), name
    card = (folder / "README.md").read_text()
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in card and f"{PAIRS} pairs" in card
    assert main(["inspect", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "trainable parameters" in printed and "q_proj" in printed


def test_dpo_raises_the_chosen_minus_rejected_margin(stage1_adapter):
    from shared_utils.models import load_model
    from shared_utils.training import load_pairs
    from preference_margins import preference_margins

    record = json.loads((stage1_adapter.adapter_dir / "provenance.json").read_text())
    pairs = load_pairs(record["dataset"], max_pairs=PAIRS)
    loaded = load_model("smollm2-135m", adapter=stage1_adapter.adapter_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    with model.disable_adapter():
        before = statistics.mean(preference_margins(model, tokenizer, pairs))
    after = statistics.mean(preference_margins(model, tokenizer, pairs))
    assert after > before + 0.5, (before, after)
