"""What a trained adapter folder carries besides its weights: log, plots, model card, provenance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared_utils import files
from shared_utils.models import describe_weights, weights_record
from shared_utils.training import curves

LOG_NAME = "training_log.csv"
LOG_HISTORY = "log_history.json"  # TRL's trainer.state.log_history as logged, every key of every step (curves)
KL_COLUMN = "kl_estimate"
KL_NOTE = ("KL estimate = rewards/chosen / beta, the mean log-probability ratio log pi(y_w|x) - log pi_ref(y_w|x) "
           "on the chosen answers of each logged batch (the answers are not sampled from the policy, so this tracks "
           "drift from the reference rather than being an unbiased KL).")
TRAINING_FORMATS = {
    "conversational": "conversational: the system prompt and the task as chat messages, the fenced answer as the "
                      "assistant's turn, rendered by the model's chat template",
    "as_published": "as_published: what the authors' TRL 0.23 trained on; the prompt is the two answers' longest "
                    "common prefix (e.g. \"```python\\ndef f(\"), the answers their remainders plus EOS; no task text, "
                    "no system prompt, no chat template, no BOS",
}
GRPO_FINAL_KEYS = ("loss", "reward", "reward_std", "code/correctness", "code/maintainability", "code/pass_rate", "kl",
                   "completions/mean_length", "mi/written", "mi/scored", "rejected/truncated", "rejected/format",
                   "rejected/obfuscated")
FINAL_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
              "logps/chosen", "logps/rejected", KL_COLUMN)


@dataclasses.dataclass
class TrainResult:
    """What a finished adapter folder holds besides its weights, as training returns it."""

    adapter_dir: Path
    metrics: dict
    log_csv: Path
    plots: list[Path]


def training_log(log_history: list[dict], beta: float):
    """The trainer's log history as a table, one row per logged step, with the KL estimate added."""
    import pandas as pd

    frame = pd.DataFrame([row for row in log_history if "loss" in row])
    if "rewards/chosen" in frame:
        frame[KL_COLUMN] = frame["rewards/chosen"] / beta
    return frame


def final_metrics(frame, log_history: list[dict], keys: tuple[str, ...] = FINAL_KEYS) -> dict:
    """The last logged step's metrics (DPO's unless ``keys``) plus the run summary (train_loss, runtime, steps)."""
    last = frame.iloc[-1].to_dict() if len(frame) else {}
    summary = next((row for row in reversed(log_history) if "train_runtime" in row), {})
    metrics = {key: float(last[key]) for key in keys if key in last}
    metrics.update({key: value for key, value in summary.items()})
    return metrics


def write_artifacts(folder: Path, trainer, *, name: str, identity: dict, dataset, pairs: int, base_model: str) -> None:
    """training_log.csv, the plots, README.md and provenance.json next to the saved adapter."""
    frame = training_log(trainer.state.log_history, trainer.args.beta)
    frame.to_csv(folder / LOG_NAME, index=False)
    files.write_json(folder / LOG_HISTORY, trainer.state.log_history)
    written = curves.plot_training(frame, folder)
    metrics = final_metrics(frame, trainer.state.log_history)
    fields = dict(kind="dpo-lora-adapter", base_model=base_model, weights=weights_record(identity["model"]),
                  base_weights=base_weights(trainer.model),
                  dataset=_describe(dataset), pairs=pairs, global_step=trainer.state.global_step,
                  seed=trainer.args.seed, metrics=metrics, plots=[path.name for path in written], kl_estimate=KL_NOTE,
                  **identity)
    record = files.provenance(**fields)
    portable_base(folder, base_model)
    files.write_json(folder / "provenance.json", record)
    files.write_text(folder / "README.md", str(model_card(name, record, peft_card=folder / "README.md")))


def portable_base(folder: Path, base_model: str) -> None:
    """PEFT records the folder the base weights loaded from (for the embedded model, this machine's cache);
    the adapter names its base as a reader can find it: the hub id, or the folder it was given as."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    files.write_json(config_file, {**config, "base_model_name_or_path": base_model})


def add_evaluation(adapter_dir: Path, benchmark: str, evaluation: dict) -> None:
    """Record a benchmark's evaluation summary in the adapter's provenance and card (rewritten from the
    provenance); a later evaluation of the same benchmark replaces it."""
    record = files.read_provenance(adapter_dir)
    if record is None or record.get("kind") not in ("dpo-lora-adapter", "grpo-lora-adapter"):
        return  # not trained here (a published adapter): there is no card of ours to extend
    record["evaluation"] = {**record.get("evaluation", {}), benchmark: evaluation}
    write_card = grpo_card if record.get("kind") == "grpo-lora-adapter" else model_card
    files.write_json(adapter_dir / "provenance.json", record)
    files.write_text(adapter_dir / "README.md",
                     str(write_card(adapter_dir.name, record, peft_card=adapter_dir / "README.md")))


def base_weights(model) -> dict:
    """How the base weights under the adapter were held during training: NF4 4-bit (QLoRA) or a plain dtype."""
    config = getattr(model.config, "quantization_config", None)
    if not getattr(model, "is_loaded_in_4bit", False) or config is None:
        return {"load_in_4bit": False, "dtype": _dtype_name(model.dtype)}
    return {"load_in_4bit": True, "quant_type": config.bnb_4bit_quant_type,
            "double_quant": config.bnb_4bit_use_double_quant, "compute_dtype": _dtype_name(config.bnb_4bit_compute_dtype)}


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _base_weights_lines(weights: dict | None) -> list[str]:
    """How the base weights were held in training (none recorded by adapters trained before it was)."""
    if weights is None:
        return []
    if not weights["load_in_4bit"]:
        return [f"- Base weights in training: {weights['dtype']}, not quantised"]
    return [f"- Base weights in training: 4-bit {weights['quant_type'].upper()} (bitsandbytes"
            + (", double quantisation" if weights["double_quant"] else "")
            + f", computing in {weights['compute_dtype']}): QLoRA, the adapter itself trained in float32"]


def _describe(dataset) -> str:
    return str(Path(dataset).resolve()) if isinstance(dataset, (str, Path)) else f"in-memory Dataset ({len(dataset)} rows)"


def card_data(record: dict, peft_card: Path | None = None, method: str = "dpo"):
    """The card's metadata: PEFT's (``library_name: peft``, tags, pipeline tag) with the hub's base-model link.

    PEFT writes ``base_model`` as the folder the weights were loaded from (the embedded model's, a
    cache's); the record's ``base_model`` is the hub id, which is what links the adapter to its base
    on the Hub. A base that is only a local folder (a tiny look-alike) gets no link.
    """
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCard.load(peft_card).data if peft_card is not None and peft_card.is_file() else ModelCardData()
    base = record["base_model"]
    tags = {tag for tag in data.tags or [] if not tag.startswith("base_model:")} | {"peft", "lora", method, "trl"}
    data.base_model = None if Path(base).exists() else base
    if data.base_model:
        tags.add(f"base_model:adapter:{base}")
    data.library_name, data.tags = "peft", sorted(tags)
    data.pipeline_tag = data.pipeline_tag or "text-generation"
    return data


def model_card(name: str, record: dict, peft_card: Path | None = None):
    """A ``huggingface_hub.ModelCard``: ``card_data``'s metadata, then base model, data and hash, every
    hyperparameter, versions and final metrics in words and tables."""
    dpo, lora = record["dpo"], record["lora"]
    reference = ("the base model with the adapter disabled (the paper's behaviour)" if record["reference"] == "base"
                 else "the Stage-1 policy (a frozen copy of the initial adapter)")
    lines = [
        f"# {name}",
        "",
        "A LoRA adapter trained with Direct Preference Optimisation (TRL `DPOTrainer`) on MBPP preference pairs "
        "ranked by the Maintainability Index.",
        "",
        *_origin(record),
        *_base_weights_lines(record.get("base_weights")),
        f"- Continued from: `{record['init_adapter']}`" if record["init_adapter"] else "- Initial adapter: none (fresh LoRA)",
        f"- Reference model: {reference}",
        f"- Training format: {TRAINING_FORMATS[record['training_format']]}",
        f"- Data: `{record['dataset']}`, {record['pairs']} pairs, sha256 `{record['dataset_sha256']}`",
        f"- Steps: {record['global_step']}, seed {record['seed']}"
        + (f", the {record['max_pairs']} shortest pairs" if record["max_pairs"] else ""),
        "",
        "## Hyperparameters",
        "",
        "The recipe's TRL `DPOConfig` and PEFT `LoraConfig` fields:",
        "",
        *_table("DPO", dpo),
        *_table("LoRA", lora),
        "TRL's defaults apply otherwise: sigmoid loss, AdamW, linear learning-rate decay without warm-up, and "
        "`disable_dropout=True`, which sets every dropout (the LoRA dropout included) to 0 during DPO.",
        "",
        "## Final metrics",
        "",
        *_table("metric", record["metrics"]),
        KL_NOTE,
        "",
        *_evaluation(record),
        *_closing(record),
    ]
    return _card(lines, record, peft_card)


def write_grpo_artifacts(folder: Path, trainer, *, name: str, identity: dict, prompts: int, base_model: str) -> None:
    """The GRPO adapter's log, plots (reward components, KL, completion length, MI), card and provenance."""
    frame = training_log(trainer.state.log_history, trainer.args.beta)
    frame.to_csv(folder / LOG_NAME, index=False)
    files.write_json(folder / LOG_HISTORY, trainer.state.log_history)
    written = curves.plot_training(frame, folder, curves.GRPO_PLOTS)
    metrics = final_metrics(frame, trainer.state.log_history, GRPO_FINAL_KEYS)
    record = files.provenance(kind="grpo-lora-adapter", base_model=base_model, weights=weights_record(identity["model"]),
                              prompts=prompts, global_step=trainer.state.global_step, seed=trainer.args.seed,
                              metrics=metrics, plots=[path.name for path in written], **identity)
    portable_base(folder, base_model)
    files.write_json(folder / "provenance.json", record)
    files.write_text(folder / "README.md", str(grpo_card(name, record, peft_card=folder / "README.md")))


def grpo_card(name: str, record: dict, peft_card: Path | None = None):
    """The GRPO adapter's ``huggingface_hub.ModelCard``: PEFT's metadata with the hub base-model link
    (``card_data``), then where it started, how samples were rewarded, every setting, final metrics."""
    start = f"`{record['init_adapter']}` ({record['start']})" if record["init_adapter"] else "the base model (a fresh LoRA)"
    lines = [
        f"# {name}",
        "",
        "Beyond the paper: a LoRA adapter refined online with GRPO (TRL `GRPOTrainer`). Each step samples "
        "`num_generations` answers per MBPP training prompt from the current policy, runs every one against the "
        "problem's asserts in the sandbox and rewards correct, maintainable code (`shared_utils.rewards`, the "
        "rewards by name and weight below; truncated answers, answers the evaluation cannot read and code built "
        "from strings earn nothing).",
        "",
        *_origin(record),
        f"- Started from: {start}; the KL reference is the starting policy",
        f"- Prompts: {record['prompts']} from `{record['problems']}`",
        f"- Steps: {record['global_step']}, seed {record['seed']}",
        "",
        "## Settings",
        "",
        *_table("reward", record["reward"]),
        *_table("GRPO", record["grpo"]),
        *_table("LoRA (fresh adapters only)", record["lora"]),
        "## Final metrics",
        "",
        *_table("metric", record["metrics"]),
        *_evaluation(record),
        *_closing(record),
    ]
    return _card(lines, record, peft_card, method="grpo")


def _card(lines: list[str], record: dict, peft_card: Path | None, method: str = "dpo"):
    """A ``huggingface_hub.ModelCard``: ``card_data``'s metadata as its header, then these lines."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{card_data(record, peft_card, method).to_yaml()}\n---\n\n" + "\n".join(lines))


def _origin(record: dict) -> list[str]:
    """Which weights were trained (not only a hub id) and from which commit of this repository."""
    weights = record.get("weights")
    return [f"- Base model: `{record['base_model']}`; the weights trained: "
            + (describe_weights(weights) if weights else f"loaded from `{record['model']}`"),
            f"- Repository commit: `{record.get('git_commit') or 'unknown (not a git clone)'}`"]


def _evaluation(record: dict) -> list[str]:
    """The evaluation's summary, once ``add_evaluation`` has recorded one."""
    lines = []
    for benchmark, evaluation in (record.get("evaluation") or {}).items():
        metrics = list(next(iter(evaluation["table"].values())))
        lines += [f"## Evaluation: {benchmark}", "",
                  f"{evaluation['problems']} problems x {evaluation['samples']} samples x {evaluation['runs']} runs "
                  f"as the `{evaluation['variant']}` variant, mean ± std over runs (per run and paired differences: "
                  f"`{evaluation['comparison']}`).", "",
                  "| scoring | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics),
                  *[f"| {name} | " + " | ".join(_cell(row[metric]) for metric in metrics) + " |"
                    for name, row in evaluation["table"].items()], ""]
    return lines


def _table(header: str, values: dict) -> list[str]:
    return [f"| {header} | value |", "|---|---|", *[f"| {key} | {_cell(value)} |" for key, value in values.items()], ""]


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else f"{value}"


def _closing(record: dict) -> list[str]:
    return ["Plots: " + ", ".join(f"`{plot}`" for plot in record["plots"]) + f"; the full log is `{LOG_NAME}`.", "",
            "## Library versions", "", *[f"- {package}: {version}" for package, version in record["versions"].items()],
            ""]


def reuse(out_dir: Path, identity: dict):
    """The ``TrainResult`` of a finished adapter whose provenance records ``identity``; a differing one is refused."""
    from shared_utils.manifest import same_or_stop

    record = json.loads((out_dir / "provenance.json").read_text())
    same_or_stop(out_dir, {key: record.get(key) for key in identity}, identity, made=record.get("created"),
                 what="adapter")
    return read_result(out_dir)


def read_result(out_dir: Path):
    """The ``TrainResult`` of a finished adapter folder."""
    record = json.loads((out_dir / "provenance.json").read_text())
    return TrainResult(adapter_dir=out_dir, metrics=record.get("metrics", {}), log_csv=out_dir / LOG_NAME,
                       plots=[out_dir / name for name in record.get("plots", [])])
