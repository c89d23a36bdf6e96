"""DPO + LoRA fine-tuning (Stage 1 and Stage 2c): ``train_dpo`` and its settings."""

from shared_utils.training.config import TrainingSettings
from shared_utils.training.dpo import TrainResult, build_trainer, dataset_hash, load_pairs, train_dpo

__all__ = ["TrainingSettings", "TrainResult", "build_trainer", "dataset_hash", "load_pairs", "train_dpo"]
