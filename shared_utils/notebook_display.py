"""What the notebooks show besides a stage's result: token lengths, images, probe problems, plain reports.

Keeping this here (not in the notebooks) means five model folders cannot drift apart.
"""

from __future__ import annotations

from shared_utils import data
from shared_utils.layout import ArtifactLayout


def probe_problems(layout: ArtifactLayout, n: int = 3) -> list[dict]:
    """A few fixed held-out problems for side-by-side answers of base and adapted models."""
    return data.load_problems(layout.global_.test_problems)[:n]


def token_length_stats(model: str, dataset):
    """Token lengths of prompt+chosen and prompt+rejected under the model's chat template."""
    import pandas as pd

    from shared_utils.models import load_tokenizer
    from shared_utils.prompts import for_training
    from shared_utils.training.formats import conversational_example

    tokenizer = for_training(load_tokenizer(model))

    def length(prompt, answer):
        text = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    rows = [conversational_example(row) for row in dataset]  # the authors' row shape too
    frame = pd.DataFrame({side: [length(row["prompt"], row[side]) for row in rows] for side in ("chosen", "rejected")})
    return frame.describe().T


def show_images(files) -> None:
    from IPython.display import Image, display

    for file in files:
        display(Image(filename=str(file)))


def report_local_pairs(rows: list[dict], problems: list[dict]) -> None:
    """Say plainly how many tasks produced a pair, and what that means for Stage 2c."""
    print(f"{len(rows)} of {len(problems)} tasks have two different passing samples and form a pair.")
    if len(rows) < max(2, len(problems) // 10):
        print("That is few: the model solves too few of these problems twice. Stage 2c trains on what there is "
              "(or is skipped when there is nothing); more samples, more rounds or a stronger Stage-1 model help.")
