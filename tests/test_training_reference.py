"""Stage 2c: which reference model does DPO use? Proven on a tiny model for both modes.

A Stage-1 adapter with random (non-zero) B makes "base" and "dpo" log-probs differ, so the
trainer's reference log-probs can be matched against each, computed by hand from independently
loaded models.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch
from datasets import Dataset

from shared_utils import recipes
from shared_utils.training import TrainingSettings, build_trainer, load_pairs, train_dpo

pytestmark = pytest.mark.slow
BETA = 0.1


def toy_rows(n: int = 4) -> list[dict]:
    system = {"role": "system", "content": "Write Python."}
    return [{"prompt": [system, {"role": "user", "content": f"Return {i}."}],
             "chosen": [{"role": "assistant", "content": f"```python\ndef f():\n    return {i}\n```"}],
             "rejected": [{"role": "assistant", "content": f"```python\ndef f( ):\n  x = {i}\n  return x\n```"}],
             "task_id": i} for i in range(n)]


def toy_settings(reference: str, **dpo) -> TrainingSettings:
    """The paper's settings with toy sizes: one epoch of 4 pairs, a learning rate that moves a tiny model."""
    paper = recipes.load().training("stage1")
    toy = paper.replace(**{**dict(num_train_epochs=1, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                                  learning_rate=1e-2, max_length=128, activation_checkpointing=False, beta=BETA), **dpo})
    return dataclasses.replace(toy, reference=reference)


@pytest.fixture(scope="module")
def tiny(tiny_model_factory):
    return tiny_model_factory("smollm2-135m")


@pytest.fixture(scope="module")
def stage1(tiny, tmp_path_factory):
    """A Stage-1 adapter far from zero, so that the Stage-1 policy and the base disagree."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    config = recipes.load().training("stage1").peft_config()
    config.init_lora_weights = False  # random A and B
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), config)
    out = tmp_path_factory.mktemp("stage1") / "adapter"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def references(tiny, stage1):
    """Hand-computed (chosen, rejected) log-probs of the base and of the Stage-1 policy, per batch."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(stage1)).eval()
    return {"base": lambda batch: sequence_logps(base, batch), "dpo": lambda batch: sequence_logps(adapted, batch)}


def sequence_logps(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of a TRL-collated batch ([chosen..., rejected...])."""
    ids = batch["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    chosen, rejected = (token_logps * batch["completion_mask"][:, 1:]).sum(-1).chunk(2)
    return chosen, rejected


def first_batch(trainer):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


@pytest.mark.parametrize("reference", ["base", "dpo"])
def test_trainer_reference_is_the_requested_model(tiny, stage1, references, tmp_path, reference):
    """Both TRL paths agree with the hand computation: precomputed log-probs and the on-the-fly forward."""
    trainer = build_trainer(str(tiny), load_pairs(Dataset.from_list(toy_rows())), tmp_path / "work",
                            init_adapter=stage1, progress=False, settings=toy_settings(reference, precompute_ref_log_probs=True))
    batch = first_batch(trainer)
    precomputed = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    on_the_fly = trainer.compute_ref_log_probs(trainer.model, batch)
    other = "dpo" if reference == "base" else "base"
    expected, unexpected = references[reference](batch), references[other](batch)
    for value, want, not_want in zip((*precomputed, *on_the_fly), expected * 2, unexpected * 2):
        torch.testing.assert_close(value, want, atol=1e-4, rtol=1e-5)
        assert (value - not_want).abs().max() > 0.1, "base and Stage-1 agree; the test would prove nothing"
    # in both modes training starts from the Stage-1 weights
    trainer.model.eval()
    for policy, want in zip(sequence_logps(trainer.model, batch), references["dpo"](batch)):
        torch.testing.assert_close(policy, want, atol=1e-4, rtol=1e-5)
    names = set(trainer.model.peft_config)
    assert names == ({"default", "ref"} if reference == "dpo" else {"default"})


@pytest.mark.parametrize("reference", ["base", "dpo"])
def test_training_uses_the_reference_and_saves_only_the_trained_adapter(tiny, stage1, references, tmp_path,
                                                                         reference):
    """The first logged step's reward is beta * (Stage-1 policy - reference) on the chosen answers."""
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    pairs = Dataset.from_list(toy_rows())
    result = train_dpo(str(tiny), pairs, tmp_path / "stage2c", init_adapter=stage1, progress=False,
                       settings=toy_settings(reference, max_steps=2))
    trainer = build_trainer(str(tiny), load_pairs(pairs), tmp_path / "probe", init_adapter=stage1, progress=False,
                            settings=toy_settings(reference))
    batch = first_batch(trainer)
    policy_chosen, _ = references["dpo"](batch)
    ref_chosen, _ = references[reference](batch)
    log = pd.read_csv(result.log_csv)
    assert log["rewards/chosen"].iloc[0] == pytest.approx(BETA * float((policy_chosen - ref_chosen).mean()), abs=1e-3)

    folder = result.adapter_dir
    assert not [path for path in folder.iterdir() if path.is_dir()], "an extra adapter subfolder was saved"
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all(".ref." not in key for key in keys)
    record = json.loads((folder / "provenance.json").read_text())
    assert record["reference"] == reference and record["init_adapter"] == str(stage1)
    assert ("Stage-1 policy" if reference == "dpo" else "adapter disabled") in (folder / "README.md").read_text()
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), str(folder)).eval()
    moved = (sequence_logps(trained, batch)[0] - policy_chosen).abs().max()
    assert moved > 1e-3, "the saved adapter is still the Stage-1 adapter"


def test_stage1_reference_needs_an_initial_adapter(tiny, tmp_path):
    with pytest.raises(ValueError, match="init_adapter"):
        train_dpo(str(tiny), Dataset.from_list(toy_rows()), tmp_path / "out", settings=toy_settings("dpo"), progress=False)
