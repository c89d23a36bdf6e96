"""LoRA fine-tuning: DPO (Stage 1 and Stage 2c, ``train_dpo``) and, beyond the paper, GRPO (``train_grpo``)."""

from shared_utils.training.config import GRPOSettings, TrainingSettings
from shared_utils.training.dpo import TrainResult, build_trainer, load_pairs, run_identity, train_dpo
from shared_utils.training.grpo import identity as grpo_identity
from shared_utils.training.grpo import train_grpo

__all__ = ["GRPOSettings", "TrainingSettings", "TrainResult", "build_trainer", "grpo_identity",
           "load_pairs", "run_identity", "train_dpo", "train_grpo"]
