"""Evaluation runs of base, ``-dpo`` and ``-dpo-further``: generate, score, save, compare.

Every run writes, next to the evaluation notebook: the raw completions in the paper's JSON
format (``<model>_<variant>_model_output_run_<i>.json``), a per-sample Parquet table and a
summary JSON per extraction mode. A run whose summary exists is not redone, and generation
itself resumes from its checkpoint, so rerunning a cell after an interruption is cheap.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared_utils import data, evaluation, io, paths, pipeline, prompts
from shared_utils.models import ModelSpec

VARIANTS = ("base", "dpo", "dpo-further")
EXTRACTIONS = ("paper", "fenced")


@dataclasses.dataclass
class EvalPlan:
    spec: ModelSpec
    model: str
    output_dir: Path
    fine_tuning_dir: Path
    epochs: int
    further_epochs: int
    runs: int
    samples: int
    max_new_tokens: int
    limit: int | None = None
    global_dir: Path | None = None
    seed: int = 0

    @classmethod
    def for_model(cls, spec: ModelSpec, *, model_path=None, output_dir=".", global_dir=None, fine_tuning_dir=None,
                  epochs=None, further_epochs=None, runs=None, samples=None, max_new_tokens=None,
                  limit=None) -> "EvalPlan":
        epochs = epochs or spec.epochs
        return cls(spec=spec, model=str(model_path or spec.name), output_dir=Path(output_dir),
                   fine_tuning_dir=Path(fine_tuning_dir or paths.model_dir(spec.name)), epochs=epochs,
                   further_epochs=further_epochs or epochs, runs=runs or spec.eval_runs,
                   samples=samples or spec.eval_samples, max_new_tokens=max_new_tokens or spec.max_new_tokens,
                   limit=limit, global_dir=Path(global_dir) if global_dir else None)

    def adapter(self, variant: str) -> Path | None:
        if variant == "base":
            return None
        if variant == "dpo":
            return self.fine_tuning_dir / self.spec.adapter_name(self.epochs)
        if variant == "dpo-further":
            return self.fine_tuning_dir / self.spec.adapter_name(self.epochs, self.further_epochs)
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")

    @property
    def ks(self) -> tuple[int, ...]:
        """pass@k for k = 1, 5, 10 where the samples allow, and always pass@samples (the paper's pass@10)."""
        return tuple(sorted({k for k in (*evaluation.DEFAULT_KS, self.samples) if k <= self.samples}))

    def variants(self) -> list[str]:
        """The variants whose adapter exists (the base always does)."""
        return [v for v in VARIANTS if v == "base" or (self.adapter(v) / "adapter_config.json").is_file()]

    def problems(self, benchmark: str = "mbpp") -> list[dict]:
        rows = data.humaneval_problems() if benchmark == "humaneval" else pipeline.test_problems(self.spec, self.global_dir)
        return rows[: self.limit]

    def stem(self, variant: str, run: int, benchmark: str = "mbpp") -> Path:
        prefix = "" if benchmark == "mbpp" else f"{benchmark}_"
        return self.output_dir / f"{prefix}{self.spec.slug}_{variant}_model_output_run_{run}"

    def sampling(self, run: int):
        from shared_utils.generation import SamplingConfig

        # The paper's generation, unchanged: no stop string, so extraction sees what the paper saw.
        return SamplingConfig(n=self.samples, max_new_tokens=self.max_new_tokens, seed=self.seed + run,
                              stop_at_code_end=False)

    def describe(self) -> None:
        print(f"model {self.model}; {self.runs} run(s) x {self.samples} samples; max_new_tokens {self.max_new_tokens}")
        for variant in VARIANTS:
            adapter = self.adapter(variant)
            state = "base weights" if adapter is None else (adapter if variant in self.variants() else "missing")
            print(f"  {variant:12s} {state}")


def run_variant(plan: EvalPlan, variant: str, *, benchmark: str = "mbpp", progress: bool = True):
    """All runs of one variant; returns the per-run summary table (None if its adapter is missing)."""
    import pandas as pd

    from shared_utils.generation import Request, generate, write_paper_format
    from shared_utils.models import load_model

    if variant not in plan.variants():
        print(f"{variant}: no adapter at {plan.adapter(variant)}; skipped")
        return None
    adapter = plan.adapter(variant)
    problems = plan.problems(benchmark)
    loaded = None
    rows = []
    for run in range(plan.runs):
        stem = plan.stem(variant, run, benchmark)
        summary_files = {mode: stem.with_name(f"{stem.name}.{mode}.summary.json") for mode in EXTRACTIONS}
        if not all(path.is_file() for path in summary_files.values()):
            loaded = loaded or load_model(plan.model, adapter=adapter)
            quirks = loaded[2].quirks if loaded[2] else plan.spec.quirks
            requests = [Request(p["task_id"], prompts.messages(p["text"], quirks=quirks)) for p in problems]
            sampling = plan.sampling(run)
            completions = generate(requests, model=plan.model, adapter=str(adapter) if adapter else None,
                                   sampling=sampling, checkpoint=stem.with_name(stem.name + ".ckpt.jsonl"),
                                   loaded=loaded, progress=progress)
            metadata = {"model": plan.model, "adapter": str(adapter) if adapter else None, "variant": variant,
                        "run": run, "benchmark": benchmark, "sampling": dataclasses.asdict(sampling)}
            write_paper_format(completions, stem.with_suffix(".json"), metadata=metadata)
            texts = {}
            for completion in completions:
                texts.setdefault(completion.task_id, []).append(completion.text)
            for mode in EXTRACTIONS:
                frame = evaluation.score_completions(texts, problems, extract=mode, progress=progress)
                summary = {**metadata, "extract": mode, **evaluation.summarize(frame, plan.ks)}
                evaluation.save_scores(frame, summary, stem.with_name(f"{stem.name}.{mode}"))
        for mode, path in summary_files.items():
            rows.append(json.loads(path.read_text()))
    return pd.json_normalize(rows)


@dataclasses.dataclass
class Report:
    table: object  # mean ± std over runs per variant and metric
    per_run: object
    paired: object
    samples: dict  # (variant, extract) -> pooled per-sample frame

    def text(self) -> str:
        return self.table.to_string()


def _load_frames(plan: EvalPlan, benchmark: str = "mbpp") -> dict:
    import pandas as pd

    frames = {}
    for variant in plan.variants():
        for mode in EXTRACTIONS:
            parts = [pd.read_parquet(plan.stem(variant, run, benchmark).with_name(
                f"{plan.stem(variant, run, benchmark).name}.{mode}.samples.parquet")).assign(run=run)
                for run in range(plan.runs)
                if plan.stem(variant, run, benchmark).with_name(
                    f"{plan.stem(variant, run, benchmark).name}.{mode}.samples.parquet").is_file()]
            if parts:
                frames[(variant, mode)] = pd.concat(parts, ignore_index=True)
    return frames


def comparison(plan: EvalPlan, benchmark: str = "mbpp") -> Report:
    """Mean ± std over runs for every metric, the per-run rows, and paired bootstrap differences."""
    import pandas as pd

    frames = _load_frames(plan, benchmark)
    per_run = []
    for (variant, mode), frame in frames.items():
        for run, part in frame.groupby("run"):
            summary = evaluation.summarize(part, plan.ks)
            per_run.append({"variant": variant, "extract": mode, "run": run, "solved_tasks": summary["solved_tasks"],
                            "avg_mi": summary["avg_mi"],
                            **{f"pass@{k}": v for k, v in summary["pass_at_k"].items()}})
    per_run = pd.DataFrame(per_run)
    metrics = [c for c in per_run.columns if c.startswith("pass@") or c == "avg_mi"]
    grouped = per_run.groupby(["variant", "extract"], sort=False)[metrics]
    table = grouped.mean().round(4).astype(str) + " ± " + grouped.std(ddof=1).fillna(0).round(4).astype(str)
    paired = []
    names = [v for v in VARIANTS if (v, "paper") in frames]
    for a, b in zip(names, names[1:]) if len(names) > 1 else []:
        for metric, result in evaluation.compare(frames[(a, "paper")], frames[(b, "paper")]).items():
            paired.append({"from": a, "to": b, "metric": metric, **result})
    if len(names) == 3:
        for metric, result in evaluation.compare(frames[("base", "paper")], frames[("dpo-further", "paper")]).items():
            paired.append({"from": "base", "to": "dpo-further", "metric": metric, **result})
    report = Report(table=table, per_run=per_run, paired=pd.DataFrame(paired), samples=frames)
    io.write_json(plan.output_dir / f"{plan.spec.slug}_comparison.json",
                  {"per_run": per_run.to_dict("records"), "paired": report.paired.to_dict("records")})
    return report
