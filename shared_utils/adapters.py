"""Look inside a trained LoRA adapter: its card, its size, where it changed the model, what it answers.

``inspect`` needs only the adapter folder (no base weights are loaded); ``compare_answers``
loads the base once and switches the adapter off for the base answers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from shared_utils import files

CARD_FIELDS = ("model", "base_model", "weights", "git_commit", "init_adapter", "dataset", "dataset_sha256", "pairs", "max_pairs", "global_step",
               "seed", "dpo", "reference", "protocol", "load_dtype", "training_format", "lora", "metrics", "versions",
               "created", "kind", "problems", "prompts", "start", "grpo", "reward", "evaluation")
PROBE_FILE = "probe_answers.json"  # compare_answers' table, kept with the adapter it describes
_LORA_KEY = re.compile(r"^(?P<path>.+)\.lora_(?P<kind>[AB])(?:\.[^.]+)?\.weight$")
_LAYER = re.compile(r"layers\.(\d+)\.")


def _adapter_config(adapter_dir: Path) -> dict:
    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json; is this a saved LoRA adapter?")
    return json.loads(path.read_text())


def lora_updates(adapter_dir: str | Path):
    """One row per adapted weight: layer, module and the Frobenius norm of its update ``scale * B @ A``.

    The norm says where DPO moved the model, and by how much, without loading the base.
    """
    import pandas as pd
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    config = _adapter_config(adapter_dir)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict] = {}
    for key, tensor in tensors.items():
        match = _LORA_KEY.match(key)
        if match:
            pairs.setdefault(match["path"], {})[match["kind"]] = tensor.float()
    rows = []
    for path, weights in sorted(pairs.items()):
        module = path.rsplit(".", 1)[-1]
        rank = config.get("rank_pattern", {}).get(module, config["r"])
        alpha = config.get("alpha_pattern", {}).get(module, config["lora_alpha"])
        scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        delta = scale * weights["B"] @ weights["A"]
        layer = _LAYER.search(path)
        rows.append({"layer": int(layer.group(1)) if layer else -1, "module": module, "shape": tuple(delta.shape),
                     "update_norm": float(delta.norm()), "A_norm": float(weights["A"].norm()),
                     "B_norm": float(weights["B"].norm())})
    return pd.DataFrame(rows)


def inspect(adapter_dir: str | Path) -> dict:
    """The adapter's card fields, trainable parameter count and per-layer/module update sizes."""
    from safetensors import safe_open

    adapter_dir = Path(adapter_dir)
    config = _adapter_config(adapter_dir)
    record = files.read_provenance(adapter_dir) or {}
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as handle:
        parameters = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
    updates = lora_updates(adapter_dir)
    return {
        "adapter_dir": str(adapter_dir),
        **{field: record[field] for field in CARD_FIELDS if field in record},
        "base_model_path": config.get("base_model_name_or_path"),
        "lora_config": {key: config.get(key) for key in ("r", "lora_alpha", "lora_dropout", "bias", "target_modules")},
        "trainable_parameters": parameters,
        "updates": updates,
        "update_table": updates.pivot_table(index="layer", columns="module", values="update_norm") if len(updates) else updates,
    }


def _base_name(adapter_dir: Path) -> str:
    """The name the adapter was trained from (registry name when recorded), else its config's base path."""
    recorded = (files.read_provenance(adapter_dir) or {}).get("model")
    if recorded:
        return recorded
    from shared_utils.models import base_model_of

    return base_model_of(adapter_dir)


def compare_answers(adapter_dir: str | Path, problems: list[dict], n: int = 3, *, max_new_tokens: int = 512):
    """Greedy answers of the base and the adapted model to the first ``n`` problems, side by side.

    Each answer gets its extracted code's MI and the sandbox verdict on the problem's asserts. The
    table is kept in the adapter folder (``PROBE_FILE``) and returned from there when the same
    problems and token limit are asked again: on a CPU the probe takes longer than the training
    it follows, and greedy answers of the same weights do not change. A retrained adapter is a new
    folder, so its probe is made afresh.
    """
    import pandas as pd

    from shared_utils import models, prompts

    adapter_dir = Path(adapter_dir)
    asked = {"task_ids": [problem.get("task_id") for problem in problems[:n]], "max_new_tokens": max_new_tokens}
    cached = adapter_dir / PROBE_FILE
    if cached.is_file() and (saved := json.loads(cached.read_text(encoding="utf-8")))["asked"] == asked:
        return pd.DataFrame(saved["rows"])
    loaded = models.load_model(_base_name(adapter_dir), adapter=adapter_dir)
    rows = []
    for problem in problems[:n]:
        text = loaded.render(prompts.messages(problem["text"]))
        with loaded.model.disable_adapter():
            base = _greedy(loaded, text, max_new_tokens)
        adapted = _greedy(loaded, text, max_new_tokens)
        rows.append({"task_id": problem.get("task_id"), **_judge("base", base, problem),
                     **_judge("adapted", adapted, problem)})
    files.write_json(cached, {"asked": asked, "rows": rows})
    return pd.DataFrame(rows)


def _greedy(loaded, text: str, max_new_tokens: int) -> str:
    import torch

    from shared_utils import prompts

    tokenizer = loaded.tokenizer
    batch = prompts.encode(tokenizer, [text]).to(loaded.model.device)
    with torch.no_grad():
        output = loaded.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def _judge(prefix: str, answer: str, problem: dict) -> dict:
    """MI and sandbox verdict of one answer's fenced code, as ``<prefix>_*`` columns."""
    from shared_utils.extraction import extract_code
    from shared_utils.maintainability import score
    from shared_utils.sandbox import check

    code = extract_code(answer, "fenced")
    outcome = check(code, problem["test_list"], setup=problem.get("test_setup_code", ""))
    return {f"{prefix}_answer": answer, f"{prefix}_mi": score(code).mi,
            f"{prefix}_passed": outcome.passed, f"{prefix}_status": outcome.status}


def summary(info: dict) -> str:
    """The text ``python -m shared_utils inspect`` prints."""
    import pandas as pd

    from shared_utils.models import describe_weights

    metrics = info.get("metrics", {})
    if "grpo" in info:  # beyond the paper: refined online, rewarded by the sandbox and MI
        trained = [f"continued from: {info.get('init_adapter') or '-'}   reference: the starting policy",
                   f"prompts: {info.get('problems', '?')} ({info.get('prompts', '?')} prompts)",
                   "grpo: " + ", ".join(f"{key}={value}" for key, value in info["grpo"].items()),
                   "reward: " + ", ".join(f"{key}={value}" for key, value in info.get("reward", {}).items())]
    else:
        trained = [f"continued from: {info.get('init_adapter') or '-'}   reference: {info.get('reference', '?')}",
                   f"protocol: {info.get('protocol', 'corrected')}   training format: "
                   f"{info.get('training_format', 'conversational')}",
                   f"data: {info.get('dataset', '?')} ({info.get('pairs', '?')} pairs, "
                   f"sha256 {info.get('dataset_sha256', '?')})",
                   "dpo: " + ", ".join(f"{key}={value}" for key, value in info.get("dpo", {}).items())]
    lines = [
        f"adapter: {info['adapter_dir']}",
        f"base model: {info.get('base_model', info.get('base_model_path'))}",
        f"weights trained: {describe_weights(info['weights']) if 'weights' in info else '?'}",
        f"repository commit: {info.get('git_commit') or '?'}",
        *trained,
        "lora: " + ", ".join(f"{key}={value}" for key, value in info["lora_config"].items()),
        "metrics: " + ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                                for key, value in metrics.items()),
        f"trainable parameters: {info['trainable_parameters']:,}",
        "",
        "LoRA update size ||scale * B @ A||_F per layer and module:",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        lines.append(info["update_table"].to_string())
    return "\n".join(lines)
