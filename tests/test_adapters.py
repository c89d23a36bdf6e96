"""Adapter inspection on a tiny model: the card fields, the parameter count, the update norms, the answers."""

from __future__ import annotations

import pytest
import torch

from shared_utils import adapters, data, files, recipes

MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def adapter(tiny_model_factory, tmp_path_factory):
    """The paper's LoRA on a tiny look-alike with random A and B (a fresh LoRA has B = 0), plus a card record."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    tiny = tiny_model_factory("smollm2-135m")
    config = recipes.load().training("stage1").peft_config()
    config.init_lora_weights = False
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), config)
    out = tmp_path_factory.mktemp("adapter") / "smollm2-135m-dpo-2-epochs"
    model.save_pretrained(out)
    files.write_json(out / "provenance.json", {"model": str(tiny), "reference": "dpo", "pairs": 4,
                                               "dpo": {"beta": 0.1}, "metrics": {"loss": 0.25}})
    return out, model


def test_inspect_counts_parameters_and_measures_each_update_without_the_base(adapter):
    folder, model = adapter
    info = adapters.inspect(folder)
    assert info["trainable_parameters"] == sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    assert info["reference"] == "dpo" and info["pairs"] == 4 and info["lora_config"]["lora_alpha"] == 32
    updates = info["updates"]
    assert set(updates["module"]) == MODULES and set(updates["layer"]) == {0, 1}
    q_proj = model.base_model.model.model.layers[1].self_attn.q_proj
    by_hand = (32 / 16) * q_proj.lora_B["default"].weight @ q_proj.lora_A["default"].weight
    row = updates[(updates["layer"] == 1) & (updates["module"] == "q_proj")].iloc[0]
    assert row["update_norm"] == pytest.approx(float(by_hand.detach().norm()), rel=1e-5)
    assert info["update_table"].shape == (2, 7)
    text = adapters.summary(info)
    assert "reference: dpo" in text and "loss=0.25" in text and f"{info['trainable_parameters']:,}" in text


def test_inspect_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        adapters.inspect(tmp_path)


def test_compare_answers_puts_base_and_adapted_side_by_side_with_verdicts(adapter):
    folder, _ = adapter
    problems = data.demo_problems("test")[:2]
    table = adapters.compare_answers(folder, problems, max_new_tokens=6)
    assert list(table["task_id"]) == [p["task_id"] for p in problems]
    for side in ("base", "adapted"):
        assert {f"{side}_answer", f"{side}_mi", f"{side}_passed", f"{side}_status"} <= set(table.columns)
    assert not table["adapted_passed"].any()  # six tokens of a random model pass nothing
    assert (table["base_answer"] != table["adapted_answer"]).any()  # the adapter really is switched off for the base

    # Asked again (a rerun cell), the table comes from the adapter folder without loading a model.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("shared_utils.models.load_model", lambda *_, **__: pytest.fail("the probe ran again"))
        again = adapters.compare_answers(folder, problems, max_new_tokens=6)
    assert again.equals(table)
    assert (folder / adapters.PROBE_FILE).is_file()
    shorter = adapters.compare_answers(folder, problems[:1], max_new_tokens=6)  # other problems: a new probe
    assert list(shorter["task_id"]) == [problems[0]["task_id"]]
