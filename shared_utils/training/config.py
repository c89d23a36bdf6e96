"""A training stage's settings: TRL's ``DPOConfig`` (or, for GRPO, ``GRPOConfig``) fields, PEFT's
``LoraConfig`` fields, and a few of ours.

The values come from a recipe (``shared_utils.recipes``); this module checks them against the
installed TRL and PEFT and builds their config objects. What depends on the machine rather than
the recipe is decided here: bf16 on GPUs for bfloat16 models, ``use_cpu`` where there is no GPU
(only then do processes started by ``accelerate launch``/torchrun form a gloo data-parallel group
instead of each training alone), progress bars, and GRPO's generation with vLLM where it can run.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from shared_utils.layout import BASE, FURTHER, STAGE1

REFERENCES = (BASE, STAGE1)  # the base model, or the Stage-1 adapter (``dpo``, the layout's name for it)
TRAINING_FORMATS = ("conversational", "as_published")  # ``training.formats`` explains both
GRPO_STARTS = (FURTHER, STAGE1, BASE)


def trl_config(config_class, fields: dict, output_dir: str, *, bf16: bool = False, progress: bool = True,
               where: str = "training settings"):
    """A TRL config built by ``HfArgumentParser``, which rejects keys the class does not have."""
    from transformers import HfArgumentParser

    from shared_utils.models import device

    values = {**fields, "output_dir": output_dir, "bf16": bf16, "use_cpu": device() == "cpu", "disable_tqdm": not progress}
    try:
        (config,) = HfArgumentParser(config_class).parse_dict(values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: training: {exc}") from None
    return config


def lora_config(fields: dict, where: str):
    """PEFT's ``LoraConfig``, its values checked first: PEFT itself accepts ``r=-3`` or ``r="abc"`` and
    fails only once the model has loaded (or not at all), so each value must match its field's type
    and the sizes must make sense."""
    from peft import LoraConfig

    hints = typing.get_type_hints(LoraConfig)
    for name, value in fields.items():
        if name in hints and not _matches(value, hints[name]):
            raise ValueError(f"{where}: lora: {name}={value!r} is not {_spelt(hints[name])}")
    for name, low, high in (("r", 1, None), ("lora_alpha", 1e-12, None), ("lora_dropout", 0, 1)):
        value = fields.get(name)
        if value is not None and (value < low or (high is not None and value >= high)):
            raise ValueError(f"{where}: lora: {name}={value!r} must be "
                             + (f"at least {low}" if high is None else f"in [{low}, {high})"))
    try:
        return LoraConfig(**fields)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: lora: {exc}") from None


def _matches(value, hint) -> bool:
    """Whether ``value`` (as YAML gives it) fits a type annotation of ``LoraConfig``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_matches(item, args[0]) for item in value) if args \
            else isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _spelt(hint) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """``dpo``: DPOConfig fields; ``lora``: LoraConfig fields; ``reference``: what DPO compares the policy
    with (``training.dpo`` explains both); ``max_pairs``: train on the N shortest pairs only;
    ``load_dtype``: the weights' dtype for training (None: the model's own, see ``models.torch_dtype``;
    the paper's protocol loads float32 and trains under bf16 autocast); ``load_in_4bit``: NF4 4-bit base
    weights (QLoRA) when True, on a CPU too; None follows the model's policy (``models.wants_4bit``);
    ``training_format``: the pairs as chat, or as the authors' TRL 0.23 saw them (``training.formats``);
    ``protocol``: its name, recorded."""

    dpo: dict
    lora: dict
    reference: str = "base"
    max_pairs: int | None = None
    load_dtype: str | None = None
    load_in_4bit: bool | None = None
    training_format: str = "conversational"
    protocol: str = "corrected"
    where: str = "training settings"  # named in error messages: the recipe layers and the stage

    def __post_init__(self):
        if self.reference not in REFERENCES:
            raise ValueError(f"{self.where}: reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.training_format not in TRAINING_FORMATS:
            raise ValueError(f"{self.where}: training_format must be one of {TRAINING_FORMATS}, "
                             f"got {self.training_format!r}")
        if self.load_in_4bit not in (None, True, False):
            raise ValueError(f"{self.where}: load_in_4bit must be true, false or null, got {self.load_in_4bit!r}")
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
        from trl import DPOConfig

        return trl_config(DPOConfig, self.dpo, output_dir, bf16=bf16, progress=progress, where=self.where)

    def peft_config(self):
        return lora_config(self.lora, self.where)

    def replace(self, **dpo_changes) -> "TrainingSettings":
        """The same settings with some DPOConfig fields changed (CLI flags, tests)."""
        return dataclasses.replace(self, dpo={**self.dpo, **dpo_changes})

    def as_dict(self) -> dict:
        """What the adapter's card and the resume check record."""
        return {"dpo": dict(self.dpo), "lora": dict(self.lora), "reference": self.reference,
                "max_pairs": self.max_pairs, "load_dtype": self.load_dtype, "load_in_4bit": self.load_in_4bit,
                "training_format": self.training_format,
                "protocol": self.protocol}


@dataclasses.dataclass(frozen=True)
class GRPOSettings:
    """The GRPO stage (beyond the paper). ``grpo``: TRL ``GRPOConfig`` fields; ``lora``: LoraConfig fields
    of a fresh adapter (``start="base"``; otherwise the start adapter's own); ``reward``:
    ``rewards.RewardSettings`` fields; ``start``: the adapter GRPO continues (``GRPO_STARTS``);
    ``limit``: only the first N training prompts."""

    grpo: dict
    lora: dict
    reward: dict
    start: str = "dpo-further"
    limit: int | None = None
    where: str = "grpo settings"

    def __post_init__(self):
        if self.start not in GRPO_STARTS:
            raise ValueError(f"{self.where}: start must be one of {GRPO_STARTS}, got {self.start!r}")
        if "reward_weights" in self.grpo:
            raise ValueError(f"{self.where}: training.reward_weights: weigh the rewards by name under "
                             "reward.functions instead (rewards.REWARDS)")
        self.grpo_config("unused")
        self.peft_config()
        self.reward_settings()

    def grpo_config(self, output_dir: str, *, bf16: bool = False, progress: bool = True):
        """TRL's ``GRPOConfig``; generation with colocated vLLM where a GPU and vLLM are present, unless the
        recipe sets ``use_vllm`` itself (TRL supports LoRA there: it merges the adapter into vLLM's weights)."""
        from trl import GRPOConfig

        return trl_config(GRPOConfig, {**vllm_defaults(), **self.grpo}, output_dir, bf16=bf16, progress=progress,
                          where=self.where)

    def peft_config(self):
        return lora_config(self.lora, self.where)

    def reward_settings(self):
        from shared_utils.rewards import RewardSettings

        try:
            return RewardSettings(**self.reward)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.where}: reward: {exc}") from None

    def replace(self, **grpo_changes) -> "GRPOSettings":
        """The same settings with some GRPOConfig fields changed (CLI flags, tests)."""
        return dataclasses.replace(self, grpo={**self.grpo, **grpo_changes})

    def as_dict(self) -> dict:
        return {"grpo": dict(self.grpo), "lora": dict(self.lora), "reward": dict(self.reward), "start": self.start,
                "limit": self.limit}


def vllm_defaults() -> dict:
    import importlib.util

    from shared_utils.models import device

    if device() == "cuda" and importlib.util.find_spec("vllm") is not None:
        return {"use_vllm": True, "vllm_mode": "colocate"}
    return {}
