"""One DPO stage's settings: TRL's ``DPOConfig`` fields, PEFT's ``LoraConfig`` fields, and two of ours.

The values come from a recipe (``shared_utils.recipes``); this module checks them against the
installed TRL and PEFT and builds their config objects. What depends on the machine rather than
the recipe is decided here: bf16 on GPUs for bfloat16 models, ``use_cpu`` where there is no GPU
(only then do processes started by ``accelerate launch``/torchrun form a gloo data-parallel group
instead of each training alone), and progress bars.
"""

from __future__ import annotations

import dataclasses

REFERENCES = ("base", "stage1")
TRAINING_FORMATS = ("conversational", "as_published")  # ``training.formats`` explains both


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """``dpo``: DPOConfig fields; ``lora``: LoraConfig fields; ``reference``: what DPO compares the policy
    with (``training.dpo`` explains both); ``max_pairs``: train on the N shortest pairs only;
    ``load_dtype``: the weights' dtype for training (None: the model's own, see ``models.torch_dtype``;
    the paper's protocol loads float32 and trains under bf16 autocast); ``training_format``: the pairs
    as chat, or as the authors' TRL 0.23 saw them (``training.formats``); ``protocol``: its name, recorded."""

    dpo: dict
    lora: dict
    reference: str = "base"
    max_pairs: int | None = None
    load_dtype: str | None = None
    training_format: str = "conversational"
    protocol: str = "corrected"
    where: str = "training settings"  # named in error messages: the recipe layers and the stage

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"{self.where}: reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.training_format not in TRAINING_FORMATS:
            raise ValueError(f"{self.where}: training_format must be one of {TRAINING_FORMATS}, "
                             f"got {self.training_format!r}")
        self.dpo_config("unused")
        self.peft_config()

    @property
    def epochs(self) -> int:
        """Whole epochs, as adapter names spell them."""
        return int(self.dpo_value("num_train_epochs"))

    def dpo_value(self, name: str):
        """A DPOConfig field as training will see it: the recipe's value, else TRL's default."""
        from trl import DPOConfig

        if name in self.dpo:
            return self.dpo[name]
        return next(field.default for field in dataclasses.fields(DPOConfig) if field.name == name)

    def dpo_config(self, output_dir: str, *, bf16: bool = False, progress: bool = True):
        """TRL's ``DPOConfig`` built by ``HfArgumentParser``, which rejects keys DPOConfig does not have."""
        from transformers import HfArgumentParser
        from trl import DPOConfig

        from shared_utils.models import device

        values = {**self.dpo, "output_dir": output_dir, "bf16": bf16, "use_cpu": device() == "cpu",
                  "disable_tqdm": not progress}
        try:
            (config,) = HfArgumentParser(DPOConfig).parse_dict(values)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.where}: training: {exc}") from None
        return config

    def peft_config(self):
        from peft import LoraConfig

        try:
            return LoraConfig(**self.lora)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.where}: lora: {exc}") from None

    def replace(self, **dpo_changes) -> "TrainingSettings":
        """The same settings with some DPOConfig fields changed (CLI flags, tests)."""
        return dataclasses.replace(self, dpo={**self.dpo, **dpo_changes})

    def as_dict(self) -> dict:
        """What the adapter's card and the resume check record."""
        return {"dpo": dict(self.dpo), "lora": dict(self.lora), "reference": self.reference,
                "max_pairs": self.max_pairs, "load_dtype": self.load_dtype, "training_format": self.training_format,
                "protocol": self.protocol}
