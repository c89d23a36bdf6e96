"""LoRA and DPO hyperparameters: the paper's values by default, the registry's per-model sizes."""

from __future__ import annotations

import dataclasses
from typing import Any

REFERENCES = ("base", "stage1")


@dataclasses.dataclass(frozen=True)
class LoraArgs:
    """The paper's LoRA configuration, exactly."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    bias: str = "none"
    target_modules: tuple = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    task_type: str = "CAUSAL_LM"

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, bias=self.bias,
                          target_modules=list(self.target_modules), task_type=self.task_type)


@dataclasses.dataclass
class DPOArgs:
    """DPO settings; the defaults are the paper's (beta 0.1, lr 5e-7, 250 epochs, max_length 1024)."""

    epochs: int = 250
    beta: float = 0.1
    learning_rate: float = 5e-7
    max_length: int = 1024
    batch_size: int = 1
    grad_accum: int = 16
    gradient_checkpointing: bool = True
    seed: int = 42
    max_steps: int = -1  # >0 for smoke runs
    reference: str = "base"  # "base" (paper) | "stage1" (only meaningful with init_adapter)
    precompute_ref_log_probs: bool = False
    logging_steps: int = 1
    save_steps: int | None = None  # None: a checkpoint per epoch
    max_pairs: int | None = None  # train on the N shortest pairs only (CPU demo sizes)

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")

    @classmethod
    def for_model(cls, spec, **overrides: Any) -> "DPOArgs":
        """The registry's sizes for a model (the paper's; CPU-sized for the demo model), then ``overrides``.

        ``spec`` is a ``ModelSpec``, a registry name, or None (an unregistered model: the paper's
        defaults). Overrides that are None are ignored, so CLI options can be passed through.
        CPU models train without gradient checkpointing: there time, not memory, is short.
        """
        if isinstance(spec, str):
            from shared_utils.models import get_spec

            spec = get_spec(spec)
        sized = {} if spec is None else dict(
            epochs=spec.epochs, learning_rate=spec.learning_rate, max_length=spec.max_length,
            batch_size=spec.batch_size, grad_accum=spec.grad_accum, max_pairs=spec.train_pairs,
            gradient_checkpointing=spec.needs_gpu)
        return cls(**{**sized, **{key: value for key, value in overrides.items() if value is not None}})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def dpo_config(args: DPOArgs, output_dir: str, *, bf16: bool, progress: bool):
    """Translate our arguments into TRL 1.16's ``DPOConfig`` (checkpoints for resuming, no reporting).

    ``use_cpu`` on machines without a GPU: only then do processes started by ``accelerate
    launch``/torchrun form a (gloo) data-parallel group instead of each training alone.
    """
    from trl import DPOConfig

    from shared_utils.models import device

    every_epoch = args.save_steps is None
    return DPOConfig(
        output_dir=output_dir,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.learning_rate,
        beta=args.beta,
        max_length=args.max_length,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        precompute_ref_log_probs=args.precompute_ref_log_probs,
        logging_steps=args.logging_steps,
        save_strategy="epoch" if every_epoch else "steps",
        save_steps=args.save_steps or 500,
        save_total_limit=2,
        bf16=bf16,
        use_cpu=device() == "cpu",
        report_to="none",
        disable_tqdm=not progress,
    )
