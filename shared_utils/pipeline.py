"""Small glue the notebooks share: where each stage reads and writes, and what they display.

Keeping this here (not in the notebooks) means five model folders cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared_utils import data, paths
from shared_utils.models import ModelSpec
from shared_utils.preferences import GLOBAL_DPO_NAME


def overrides(**values) -> dict:
    """Notebook parameters left at None (or -1 for max_steps) mean 'the registry default'."""
    return {key: value for key, value in values.items() if value is not None and not (key == "max_steps" and value < 0)}


def global_folder(spec: ModelSpec, override: str | Path | None = None) -> Path:
    """Stage 1's folder for the model's problem set, unless a notebook parameter names another."""
    return Path(override) if override else paths.global_dir(spec.problem_set)


def global_dataset(spec: ModelSpec, override: str | Path | None = None) -> Path:
    return global_folder(spec, override) / GLOBAL_DPO_NAME


def train_problems(spec: ModelSpec, override: str | Path | None = None) -> list[dict]:
    return data.load_problems(global_folder(spec, override) / data.TRAIN_NAME)


def test_problems(spec: ModelSpec, override: str | Path | None = None) -> list[dict]:
    return data.load_problems(global_folder(spec, override) / data.TEST_NAME)


def probe_problems(spec: ModelSpec, override: str | Path | None = None, n: int = 3) -> list[dict]:
    """A few fixed held-out problems for side-by-side answers of base and adapted models."""
    return test_problems(spec, override)[:n]


def token_length_stats(model: str, dataset):
    """Token lengths of prompt+chosen and prompt+rejected under the model's chat template."""
    import pandas as pd

    from shared_utils.models import load_tokenizer
    from shared_utils.prompts import for_training

    tokenizer = for_training(load_tokenizer(model))

    def length(prompt, answer):
        text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    frame = pd.DataFrame({
        side: [length(row["prompt"], row[side]) for row in dataset] for side in ("chosen", "rejected")
    })
    return frame.describe().T


def show_images(files) -> None:
    from IPython.display import Image, display

    for file in files:
        display(Image(filename=str(file)))


@dataclasses.dataclass
class Stage2Paths:
    """Folders of one self-tuning iteration, in the paper's naming.

    Iteration 1 starts from the Stage-1 adapter ``<prefix>-dpo-E-epochs``; iteration k > 1
    starts from iteration k-1's further adapter, and each iteration gets its own folders.
    """

    spec: ModelSpec
    output_dir: str | Path
    epochs: int | None = None
    iteration: int = 1
    further_epochs: int | None = None

    def __post_init__(self):
        self.output_dir = Path(self.output_dir)
        self.epochs = self.epochs or self.spec.epochs
        self.further_epochs = self.further_epochs or self.epochs
        if self.iteration < 1:
            raise ValueError(f"iteration must be 1 or more, got {self.iteration}")

    def _suffix(self, iteration: int) -> str:
        return "" if iteration == 1 else f"-iteration-{iteration}"

    def further_name(self, iteration: int) -> str:
        return self.spec.adapter_name(self.epochs, self.further_epochs) + self._suffix(iteration)

    @property
    def start_adapter(self) -> Path:
        if self.iteration == 1:
            return self.output_dir / self.spec.adapter_name(self.epochs)
        return self.output_dir / self.further_name(self.iteration - 1)

    @property
    def further_adapter(self) -> Path:
        return self.output_dir / self.further_name(self.iteration)

    @property
    def dataset(self) -> Path:
        return self.output_dir / (f"further_dpo_dataset_{self.spec.slug}_{self.epochs}_epochs"
                                  + self._suffix(self.iteration).replace("-", "_"))

    @property
    def checkpoint(self) -> Path:
        return self.dataset.with_name(self.dataset.name + ".generation.jsonl")


def rounds_frame(result):
    import pandas as pd

    frame = pd.DataFrame(result.rounds)
    if len(frame):
        frame["pass_rate"] = frame["samples_passed"] / frame["samples"].clip(lower=1)
    return frame


def report_local_pairs(rows: list[dict], problems: list[dict]) -> None:
    """Say plainly how many tasks produced a pair, and what that means for Stage 2c."""
    print(f"{len(rows)} of {len(problems)} tasks have two different passing samples and form a pair.")
    if len(rows) < max(2, len(problems) // 10):
        print("That is few: the model solves too few of these problems twice. Stage 2c trains on what there is "
              "(or is skipped when there is nothing); more samples, more rounds or a stronger Stage-1 model help.")
