"""Stage 1 training: the paper's settings, the saved adapter folder, rerun and resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from datasets import Dataset
from huggingface_hub import ModelCard

from shared_utils import files
from shared_utils.training import load_pairs, train_dpo
from shared_utils.training import dpo as dpo_module
from stand_ins import free_port
from test_training_reference import toy_rows, toy_settings


def test_load_pairs_reads_a_saved_folder_without_touching_it(tmp_path):
    rows = toy_rows(6)
    rows[2]["chosen"][0]["content"] = "```python\n" + "x = 1\n" * 50 + "```"
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "pairs"))
    before = sorted(path.name for path in (tmp_path / "pairs").iterdir())
    pairs = load_pairs(tmp_path / "pairs", max_pairs=4)
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    assert [row["prompt"][1]["content"] for row in pairs] == ["Return 0.", "Return 1.", "Return 3.", "Return 4."]
    pairs.map(lambda row: row)  # what TRL does; must not write cache files into the folder
    assert sorted(path.name for path in (tmp_path / "pairs").iterdir()) == before
    with pytest.raises(ValueError, match="rejected"):
        load_pairs(Dataset.from_list([{"prompt": [], "chosen": []}]))


@pytest.mark.slow
def test_stage1_writes_a_complete_adapter_and_reruns_for_free(tiny_model_factory, tmp_path, monkeypatch):
    from shared_utils.models import load_model

    tiny = tiny_model_factory("smollm2-135m")
    pairs = Dataset.from_list(toy_rows(8))
    out = tmp_path / "smollm2-135m-dpo-2-epochs"
    result = train_dpo(str(tiny), pairs, out, settings=toy_settings("base", num_train_epochs=2), progress=False)
    assert result.adapter_dir == out and not out.with_name(out.name + ".work").exists()
    for name in ("adapter_config.json", "adapter_model.safetensors", "training_log.csv", "README.md",
                 "provenance.json", "loss.png", "rewards_margins.png", "rewards_accuracies.png", "kl_estimate.png"):
        assert (out / name).is_file(), name
    log = pd.read_csv(result.log_csv)
    assert list(log["step"]) == [1, 2, 3, 4]
    history = json.loads((out / "log_history.json").read_text())  # TRL's own record, for the study's curves
    assert [row["step"] for row in history if "loss" in row] == [1, 2, 3, 4] and "train_runtime" in history[-1]
    assert history[-1]["step"] == 4 and "rewards/margins" in history[0]
    assert {"loss", "rewards/margins", "rewards/accuracies", "kl_estimate"} <= set(log.columns)
    assert log["kl_estimate"].iloc[-1] == pytest.approx(log["rewards/chosen"].iloc[-1] / 0.1)
    assert result.metrics["rewards/margins"] == pytest.approx(log["rewards/margins"].iloc[-1])
    record = json.loads((out / "provenance.json").read_text())
    assert record["dataset_sha256"] == files.content_hash(load_pairs(pairs), dpo_module.PAIR_COLUMNS) and record["lora"]["r"] == 16
    assert record["versions"]["trl"] and record["global_step"] == 4
    card = (out / "README.md").read_text()
    for fact in (record["dataset_sha256"], "| learning_rate | 0.01 |", "| lora_alpha | 32 |", "adapter disabled", "trl"):
        assert fact in card
    metadata = ModelCard.load(out / "README.md").data  # what PEFT wrote there, kept under our text
    assert metadata.library_name == "peft" and metadata.pipeline_tag == "text-generation" and "dpo" in metadata.tags
    loaded = load_model(str(tiny), adapter=out)
    assert loaded.model.peft_config["default"].r == 16 and loaded.adapter == out

    monkeypatch.setattr(dpo_module, "build_trainer", lambda *a, **k: pytest.fail("retrained a complete adapter"))
    assert train_dpo(str(tiny), pairs, out, settings=toy_settings("base", num_train_epochs=2)).metrics == result.metrics


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_last_checkpoint(tiny_model_factory, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    tiny = tiny_model_factory("smollm2-135m")
    pairs, out = Dataset.from_list(toy_rows(4)), tmp_path / "adapter"
    settings = toy_settings("base", per_device_train_batch_size=2, max_steps=3, save_strategy="steps", save_steps=1)
    build, calls = dpo_module.build_trainer, []

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt

    def interrupted(*a, **k):
        trainer = build(*a, **k)
        trainer.add_callback(Interrupt())
        return trainer

    monkeypatch.setattr(dpo_module, "build_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(str(tiny), pairs, out, settings=settings, progress=False)
    work = out.with_name(out.name + ".work")
    assert (work / "checkpoint-1").is_dir() and not out.exists()

    def spied(*a, **k):
        trainer = build(*a, **k)
        train = trainer.train
        trainer.train = lambda **kw: calls.append(kw) or train(**kw)
        return trainer

    monkeypatch.setattr(dpo_module, "build_trainer", spied)
    result = train_dpo(str(tiny), pairs, out, settings=settings, progress=False)
    assert calls == [{"resume_from_checkpoint": True}]
    assert list(pd.read_csv(result.log_csv)["step"]) == [1, 2, 3] and not work.exists()


@pytest.mark.slow
def test_accelerate_launch_trains_on_two_cpu_processes(tiny_model_factory, tmp_path):
    """The multi-process path (`accelerate launch -m shared_utils train`) is the notebook's code path."""
    import os
    import subprocess
    import sys

    tiny = tiny_model_factory("smollm2-135m")
    Dataset.from_list(toy_rows(8)).save_to_disk(str(tmp_path / "pairs"))
    out = tmp_path / "adapter"
    # --multi_gpu hands over to torchrun; with no GPU visible each process joins a gloo (CPU) group.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()),
               "-m", "shared_utils", "train", "--model", str(tiny), "--dataset", str(tmp_path / "pairs"),
               "--out", str(out), "--num_train_epochs", "1", "--per_device_train_batch_size", "2",
               "--gradient_accumulation_steps", "1", "--max_length", "128", "--learning_rate", "1e-2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "provenance.json").read_text())
    assert record["global_step"] == 2  # 8 pairs / (2 processes x 2 per device)
    assert (out / "adapter_model.safetensors").is_file() and not out.with_name("adapter.work").exists()


@pytest.mark.slow
def test_qwen_answers_are_tokenised_as_generated_without_a_think_block(tiny_model_factory, tmp_path):
    """Qwen3-2507's template would put an empty think block before every DPO answer."""
    from shared_utils.training import build_trainer

    trainer = build_trainer(str(tiny_model_factory("qwen3-4b")), load_pairs(Dataset.from_list(toy_rows(2))),
                            tmp_path / "work", settings=toy_settings("base"), progress=False)
    tokenizer = trainer.processing_class
    for row in trainer.train_dataset:
        for side in ("chosen_ids", "rejected_ids"):
            text = tokenizer.decode(row[side])
            assert text.startswith("```python\n") and "<think>" not in text, text


@pytest.mark.slow
def test_gemma3_vision_tower_carries_no_adapter(tiny_model_factory, tmp_path):
    """Gemma 3 4b/12b: the LoRA target names also name the vision tower's layers; only the language model trains."""
    trainer = dpo_module.build_trainer(str(tiny_model_factory("gemma3-4b")), load_pairs(Dataset.from_list(toy_rows())),
                                       tmp_path / "work", settings=toy_settings("base"), progress=False)
    adapted = {name.removesuffix(".lora_A") for name, _ in trainer.model.named_modules() if name.endswith(".lora_A")}
    targets = set(toy_settings("base").lora["target_modules"])
    language = [name for name, _ in trainer.model.base_model.model.model.language_model.named_modules()
                if name.rsplit(".", 1)[-1] in targets]
    assert language and len(adapted) == len(language)
    assert all(".language_model." in name for name in adapted), sorted(adapted)[:3]
    vision = [name for name, _ in trainer.model.named_modules() if "vision_tower" in name]
    assert vision and not [name for name in vision if "lora_" in name]


def test_bf16_set_in_the_recipe_trains_under_bf16_autocast_on_a_cpu(tiny_model_factory, tmp_path):
    """The CPU study's ``bf16: true``: the trainer autocasts to bfloat16 on the CPU (it used to be decided by the
    device alone, GPUs only); unset, a CPU trains in float32 as before."""
    import torch

    pairs = load_pairs(Dataset.from_list(toy_rows(2)))
    model = str(tiny_model_factory("smollm2-135m"))
    autocast = dpo_module.build_trainer(model, pairs, tmp_path / "bf16", settings=toy_settings("base", bf16=True),
                                        progress=False)
    assert autocast.args.bf16 and autocast.accelerator.mixed_precision == "bf16"
    with autocast.accelerator.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    plain = dpo_module.build_trainer(model, pairs, tmp_path / "fp32", settings=toy_settings("base"), progress=False)
    assert not plain.args.bf16 and plain.accelerator.mixed_precision == "no"
