"""DPO + LoRA training with TRL's ``DPOTrainer``: Stage 1 and the Stage-2c continuation.

Reference model, as TRL 1.16 does it (see ``DPOTrainer.__init__`` / ``_compute_loss``): with a
PEFT policy and no ``ref_model``, reference log-probs come from the same weights with the
adapter switched off, or with a frozen adapter named ``"ref"`` active when one exists. TRL
creates that ``"ref"`` copy itself whenever it is handed a ``PeftModel`` (a pretrained
adapter). So:

``reference="base"``
    The policy is the base model plus a fresh LoRA made by TRL from ``peft_config``; for
    Stage 2c the Stage-1 weights are then loaded into that adapter. No ``"ref"`` adapter
    exists, so the reference is the base with adapters disabled (the paper's behaviour).
``reference="dpo"`` (the Stage-1 adapter, by the layout's name for it)
    The policy is ``PeftModel.from_pretrained(base, stage1, is_trainable=True)``; TRL copies
    it into the frozen ``"ref"`` adapter, so the reference is the Stage-1 policy. Only the
    small LoRA tensors are duplicated, never the base weights. ``"ref"`` is left out of the
    saved output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from shared_utils import files, models, prompts
from shared_utils.layout import STAGE1
from shared_utils.training.card import TrainResult
from shared_utils.training.config import TrainingSettings

TRAINED_ADAPTER = "default"
PAIR_COLUMNS = ("prompt", "chosen", "rejected")  # what DPO trains on, and what the pairs' hash covers
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", "provenance.json")


def load_pairs(dataset, max_pairs: int | None = None):
    """A ``datasets.Dataset`` of pairs from a saved folder or a Dataset, in memory.

    In memory, so that TRL's tokenisation cache never writes into the caller's dataset folder.
    ``max_pairs`` keeps the shortest pairs (in their original order): the CPU demo's time goes
    with sequence length, and the card records the setting.
    """
    from datasets import Dataset, load_from_disk

    if not isinstance(dataset, Dataset):
        path = Path(dataset)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a saved dataset folder (datasets.save_to_disk)")
        dataset = load_from_disk(str(path), keep_in_memory=True)
    missing = set(PAIR_COLUMNS) - set(dataset.column_names)
    if missing:
        raise ValueError(f"the preference dataset lacks column(s) {', '.join(sorted(missing))}")
    dataset = dataset.select_columns(list(PAIR_COLUMNS))
    if max_pairs is not None and len(dataset) > max_pairs:
        sizes = [len(json.dumps(row)) for row in dataset]
        dataset = dataset.select(sorted(sorted(range(len(sizes)), key=sizes.__getitem__)[:max_pairs]))
    return dataset


def use_bf16(spec, requested: bool | None = None) -> bool:
    """bf16 autocast: the recipe's ``bf16`` where its training section sets one (on this machine's AMX-BF16
    CPU a study DPO step of the embedded model took 17 s against 20.6 s in float32), else on GPUs for
    bfloat16 models."""
    if requested is not None:
        return bool(requested)
    return models.device() == "cuda" and spec is not None and spec.dtype == "bfloat16"


def build_trainer(model: str, pairs, work_dir: Path, *, init_adapter=None, settings: TrainingSettings,
                  progress: bool = True):
    """A ``DPOTrainer`` whose reference is the one ``settings.reference`` names (module docstring), fed the
    pairs in ``settings.training_format`` (``training.formats``), on 4-bit base weights where
    ``settings.load_in_4bit`` or the model's policy asks."""
    from peft import PeftConfig, PeftModel
    from trl import DPOTrainer

    from shared_utils.training import formats

    if settings.reference == STAGE1 and init_adapter is None:
        raise ValueError(f'reference="{STAGE1}" needs init_adapter (the Stage-1 adapter to continue)')
    loaded = models.load_model(model, trainable=True, dtype=settings.load_dtype, load_in_4bit=settings.load_in_4bit)
    base, spec, tokenizer = loaded.model, loaded.spec, prompts.for_training(loaded.tokenizer)
    config = settings.dpo_config(str(work_dir), bf16=use_bf16(spec, settings.dpo.get("bf16")), progress=progress)
    if settings.training_format == "as_published":
        trainer_class, pairs = formats.AsPublishedDPOTrainer, formats.as_published_pairs(pairs)
    else:
        trainer_class, pairs = DPOTrainer, formats.conversational_pairs(pairs)
    common = dict(args=config, train_dataset=pairs, processing_class=tokenizer)
    if init_adapter is None:
        trainer = trainer_class(model=base, peft_config=language_model_only(settings.peft_config(), base), **common)
    elif settings.reference == STAGE1:
        policy = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
        trainer = trainer_class(model=policy, **common)
        if "ref" not in trainer.model.peft_config:
            raise RuntimeError("TRL did not create the frozen 'ref' adapter; the reference would be the base model")
    else:
        peft_config = PeftConfig.from_pretrained(str(init_adapter))
        peft_config.inference_mode = False
        trainer = trainer_class(model=base, peft_config=peft_config, **common)
        _load_adapter_weights(trainer.model, init_adapter)
    keep_trainable_weights_float32(trainer.model)
    return trainer


def keep_trainable_weights_float32(peft_model) -> None:
    """Undo TRL's bf16 cast of a quantized model's adapter weights (``DPOTrainer.__init__``, QLoRA).

    At the paper's learning rate (5e-7) an AdamW step on ``lora_A`` (values near 0.016, where
    bf16's spacing is about 1.2e-4) rounds to nothing, so a bf16 adapter barely trains. Kept in
    float32, the optimizer updates full-precision weights; PEFT casts the layer input to the
    adapter's dtype and the output back, and autocast still runs the matmuls in bf16. Runs
    before ``train()`` builds the optimizer, so the optimizer holds the float32 tensors.
    """
    import torch

    if not (getattr(peft_model, "is_loaded_in_4bit", False) or getattr(peft_model, "is_loaded_in_8bit", False)):
        return
    for param in peft_model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)


def language_model_only(lora_config, model):
    """``lora_config`` with its target names restricted to the language model when they match elsewhere too.

    Gemma 3 4b/12b load as ``Gemma3ForConditionalGeneration``, whose vision tower has its own
    ``q_proj``, ``k_proj``, ... ; PEFT matches a list of names by suffix anywhere in the model, but a
    string as a regex over full module names (``re.fullmatch``), so the list becomes a regex under the
    decoder's module path. Text-only models keep their plain list (and adapter_config.json).
    """
    import re

    targets, decoder = lora_config.target_modules, model.get_decoder()
    if isinstance(targets, str) or not targets or decoder is model:
        return lora_config
    prefix = next(name for name, module in model.named_modules() if module is decoder)
    matched = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in targets]
    if all(name.startswith(prefix + ".") for name in matched):
        return lora_config
    names = "|".join(re.escape(target) for target in sorted(targets))
    return dataclasses.replace(lora_config, target_modules=rf"{re.escape(prefix)}\..*\.(?:{names})")


def _load_adapter_weights(peft_model, adapter_dir) -> None:
    """Copy a saved adapter's weights into the policy's trainable adapter, insisting on a full match."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    result = set_peft_model_state_dict(peft_model, load_peft_weights(str(adapter_dir)), adapter_name=TRAINED_ADAPTER)
    lora_missing = [key for key in result.missing_keys if "lora_" in key]
    if result.unexpected_keys or lora_missing:
        raise ValueError(f"{adapter_dir}: adapter does not fit the model "
                         f"(unexpected {result.unexpected_keys[:3]}, missing {lora_missing[:3]})")


def is_complete(out_dir: Path) -> bool:
    return all((out_dir / name).is_file() for name in REQUIRED_FILES)


def identity(model, pairs, init_adapter, settings: TrainingSettings) -> dict:
    """What a DPO run is made of: the model, the pairs' hash, the starting adapter and its weights' hash, every
    setting. A checkpoint is resumed, and a finished adapter reused, only when it matches; the card records it."""
    from shared_utils.manifest import adapter_sha256

    return dict(model=str(model), dataset_sha256=files.content_hash(pairs, PAIR_COLUMNS),
                init_adapter=str(init_adapter) if init_adapter else None,
                init_adapter_sha256=adapter_sha256(init_adapter), **settings.as_dict())


def run_identity(model, dataset, settings: TrainingSettings, init_adapter=None) -> dict:
    """``identity`` of training ``model`` on a saved dataset (or a Dataset), before any training."""
    return identity(model, load_pairs(dataset, settings.max_pairs), init_adapter, settings)


def prepare_work_dir(work_dir: Path, identity: dict) -> bool:
    """Keep the work folder when it was started with the same settings; else start afresh. True: resume."""
    from transformers.trainer_utils import get_last_checkpoint

    stamp = work_dir / "run.json"
    same = stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(identity, default=str))
    if not same:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        files.write_json(stamp, identity)
    return same and get_last_checkpoint(str(work_dir)) is not None


def train_dpo(model: str, dataset, out_dir: str | os.PathLike, *, settings: TrainingSettings,
              init_adapter: str | os.PathLike | None = None, progress: bool = True,
              overwrite: bool = False) -> TrainResult:
    """Train (or continue, with ``init_adapter``) a LoRA adapter with DPO and save it to ``out_dir``.

    Training happens in ``<out_dir>.work/`` with checkpoints; rerun with the same settings
    after an interruption, it resumes from the last one. ``out_dir`` appears only when
    complete; an existing complete one is returned as is when its card records the same ``identity``,
    refused when it records another, and trained again with ``overwrite``.
    """
    from accelerate import PartialState

    from shared_utils.training import card

    out_dir = Path(out_dir)
    pairs = load_pairs(dataset, settings.max_pairs)
    made = identity(model, pairs, init_adapter, settings)
    if is_complete(out_dir) and not overwrite:
        return card.reuse(out_dir, made)
    spec = models.find_spec(model)
    work_dir = out_dir.with_name(out_dir.name + ".work")
    # cpu=True lets processes started by torchrun/accelerate on a machine without GPUs form a gloo group.
    state = PartialState(cpu=models.device() == "cpu")
    resume = [False]
    if state.is_main_process:
        resume[0] = prepare_work_dir(work_dir, made)
    resume = _broadcast(resume)
    state.wait_for_everyone()

    trainer = build_trainer(model, pairs, work_dir, init_adapter=init_adapter, settings=settings, progress=progress)
    trainer.train(resume_from_checkpoint=True if resume else None)
    final = work_dir / "final"
    trainer.save_model(str(final))
    if state.is_main_process:
        keep_only_trained_adapter(final, trainer)
        card.write_artifacts(final, trainer, name=out_dir.name, identity=made, dataset=dataset, pairs=len(pairs),
                             base_model=models.resolve(model) if spec is None else spec.hub_id)
        with files.atomic_path(out_dir) as tmp:
            os.replace(final, tmp)
        shutil.rmtree(work_dir, ignore_errors=True)
    state.wait_for_everyone()
    return card.read_result(out_dir)


def _broadcast(flag: list) -> bool:
    from accelerate.utils import broadcast_object_list

    return bool(broadcast_object_list(flag, from_process=0)[0])


def keep_only_trained_adapter(folder: Path, trainer) -> None:
    """PEFT saves every adapter (``"ref"`` into a subfolder); the output holds only the trained one."""
    for name in trainer.accelerator.unwrap_model(trainer.model).peft_config:
        if name != TRAINED_ADAPTER:
            shutil.rmtree(folder / name, ignore_errors=True)
    (folder / "training_args.bin").unlink(missing_ok=True)
