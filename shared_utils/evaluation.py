"""Evaluation runs of base, ``-dpo``, ``-dpo-further`` (and ``-grpo``, beyond the paper): generate, score, save, compare.

Every run writes, next to the evaluation notebook: the raw completions in the paper's JSON
format (``<model>_<variant>_model_output_run_<i>.json``), a per-sample Parquet table and a
summary JSON per scoring (``scoring.SCORINGS``: the paper's protocol exactly, the corrected
execution, the fenced extraction). A run whose summary exists and whose identity (model, adapter
and its weights' hash, sampling, problems) the evaluation folder's manifest records is not redone;
one made otherwise stops the run (``overwrite`` redoes it). Generation itself resumes from its
checkpoint, so rerunning a cell after an interruption is cheap.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared_utils import data, files, prompts, scoring, statistics
from shared_utils.generation.core import LocalEngine, SamplingConfig
from shared_utils.layout import BASE, BENCHMARKS, EVALUATION_RUN, FURTHER, GRPO, STAGE1, ArtifactLayout

SCORINGS = tuple(scoring.SCORINGS)  # every run is scored every way, from the same completions
VARIANTS = (BASE, STAGE1, FURTHER, GRPO)  # always listed by ``describe``; later iterations once they exist


@dataclasses.dataclass
class EvalPlan:
    """What to evaluate (the layout's variants) and how (runs, samples, sampling, problem subset); the
    recipe's ``evaluation`` section fills it (``stages.evaluation_plan``)."""

    layout: ArtifactLayout
    model: str
    runs: int
    samples: int
    max_new_tokens: int
    temperature: float = SamplingConfig.temperature
    top_p: float = SamplingConfig.top_p
    top_k: int | None = SamplingConfig.top_k  # None: the model's generation_config.top_k
    limit: int | None = None
    subset: str = "first"  # data.SUBSETS: which ``limit`` problems (the split's first, or the shortest references)
    stop_at_code_end: bool = False  # the paper's generation runs to EOS or the token limit
    seed: int = 0
    training_seeds: int = 1  # adapters per variant (recipe key training_seeds): each evaluated, resampled over
    adapters: dict = dataclasses.field(default_factory=dict)  # name -> adapter folder: variants beside the layout's
    local_engine: LocalEngine = LocalEngine()  # the local backend's CPU speed options (recipe key local_engine)
    generation: dict = dataclasses.field(default_factory=dict)  # generate() options (replay); empty: ``backend``
    backend: str = "local"  # local | vllm: loads ``model`` and each variant's adapter (vLLM: one engine, LoRARequests)
    overwrite: bool = False  # redo runs recorded with another identity instead of stopping

    @property
    def spec(self):
        return self.layout.spec

    def adapter(self, variant: str, seed: int = 0) -> Path | None:
        """The adapter a variant loads for a training seed (None: the base weights)."""
        return Path(self.adapters[variant]) if variant in self.adapters else self.layout.with_seed(seed).adapter(variant)

    def seeds(self, variant: str) -> list[int]:
        """The training seeds of a variant with a recorded adapter (the base and a named adapter have one)."""
        if variant == BASE or variant in self.adapters:
            return [0]
        return [seed for seed in range(self.training_seeds) if variant in self.layout.with_seed(seed).variants()]

    def variants(self) -> list[str]:
        """The variants whose adapter exists (the base always does), every self-tuning iteration included; the
        ``adapters`` given by name (an ablation of Stage 1) come after Stage 1's, those not yet trained left out."""
        found = self.layout.variants()
        extra = [name for name, folder in self.adapters.items() if (Path(folder) / "adapter_config.json").is_file()]
        clash = set(extra) & set(found)
        if clash:
            raise ValueError(f"evaluation.adapters: {', '.join(sorted(clash))} is a variant of the layout already")
        at = found.index(STAGE1) + 1 if STAGE1 in found else 1
        return found[:at] + extra + found[at:]

    def further_variants(self) -> list[str]:
        """Stage 2's variants: every self-tuning iteration's, or ``dpo-further`` alone (reported missing)."""
        return [variant for variant in self.variants() if variant.startswith(FURTHER)] or [FURTHER]

    @property
    def ks(self) -> tuple[int, ...]:
        """pass@k for k = 1, 5, 10 where the samples allow, and always pass@samples (the paper's pass@10)."""
        return tuple(sorted({k for k in (*scoring.DEFAULT_KS, self.samples) if k <= self.samples}))

    def problems(self, benchmark: str = "mbpp") -> list[dict]:
        rows = (data.humaneval_problems() if benchmark == "humaneval"
                else data.load_problems(self.layout.global_.test_problems))
        return data.subset(rows, self.subset, self.limit)

    def sampling(self, run: int) -> SamplingConfig:
        # The paper's generation has no stop string, so extraction sees what the paper saw (``stop_at_code_end``).
        return SamplingConfig(n=self.samples, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens, seed=self.seed + run,
                              stop_at_code_end=self.stop_at_code_end, batch_size=self.local_engine.batch_size)

    @property
    def engine(self) -> str:
        """Which engine generates: ``local`` (our loop over transformers), ``vllm``, or a replayed source."""
        return self.generation.get("backend") or self.backend

    def describe(self) -> None:
        top_k = "the model's" if self.top_k is None else self.top_k
        print(f"model {self.model}; {self.runs} run(s) x {self.samples} samples; temperature {self.temperature}, "
              f"top_p {self.top_p}, top_k {top_k}; max_new_tokens {self.max_new_tokens}; generation: {self.engine}"
              + (f" {self.local_engine}" if self.engine == "local" and self.local_engine != LocalEngine() else ""))
        found = self.variants()
        for variant in dict.fromkeys([*VARIANTS, *found]):
            state = "base weights" if variant == BASE else (self.adapter(variant) if variant in found else "missing")
            print(f"  {variant:12s} {state}")


def run_identity(plan: EvalPlan, variant: str, run: int, benchmark: str, problems: list[dict], seed: int = 0) -> dict:
    """What one evaluation run is made of: reused only when the manifest records exactly this."""
    from shared_utils.manifest import adapter_sha256
    adapter = plan.adapter(variant, seed)
    return dict(model=plan.model, variant=variant, adapter=str(adapter) if adapter else None,
                adapter_sha256=adapter_sha256(adapter), benchmark=benchmark, problems_sha256=files.content_hash(problems),
                sampling=dataclasses.asdict(plan.sampling(run)), generation=plan.generation or plan.backend,
                scorings=list(SCORINGS), ks=list(plan.ks), **plan.local_engine.identity())


def run_variant(plan: EvalPlan, variant: str, *, benchmark: str = "mbpp", progress: bool = True):
    """All runs of one variant, for each of its training seeds' adapters; returns the per-run summary table (None if
    no adapter is recorded for it)."""
    import pandas as pd

    from shared_utils.generation import Request, generate, write_paper_format
    from shared_utils.generation.checkpoint import discard
    from shared_utils.models import load_model

    if variant not in plan.variants():
        print(f"{variant}: no adapter recorded in {plan.layout.manifest.file}; skipped")
        return None
    problems = plan.problems(benchmark)
    manifest = plan.layout.evaluation_manifest
    rows = []
    for seed, run in ((seed, run) for seed in plan.seeds(variant) for run in range(plan.runs)):
        if run == 0:
            adapter, loaded = plan.adapter(variant, seed), None
        stem = plan.layout.with_seed(seed).run_stem(variant, run, benchmark)
        summary_files = {name: scoring.score_files(stem, name)["summary"] for name in SCORINGS}
        identity = run_identity(plan, variant, run, benchmark, problems, seed)
        complete = all(path.is_file() for path in summary_files.values())
        if not manifest.reuse(stem.with_suffix(".json"), identity, overwrite=plan.overwrite, complete=complete,
                              what="evaluation run"):
            if plan.generation:
                options = plan.generation
            elif plan.backend == "vllm":  # the base weights stay in the engine; the adapter is a LoRARequest
                options = {"backend": "vllm", "model": plan.model, "adapter": adapter, "enable_lora": True}
            else:
                loaded = loaded or load_model(plan.model, adapter=adapter, dtype=plan.local_engine.dtype)
                options = {"loaded": loaded, **plan.local_engine.generate_options()}
            requests = [Request(p["task_id"], prompts.messages(p["text"])) for p in problems]
            sampling, checkpoint = plan.sampling(run), stem.with_name(stem.name + ".ckpt.jsonl")
            if plan.overwrite:
                discard(checkpoint)
            completions = generate(requests, **options, sampling=sampling, checkpoint=checkpoint, progress=progress)
            metadata = {"model": plan.model, "adapter": str(adapter) if adapter else None, "variant": variant,
                        "run": run, **({"training_seed": seed} if seed else {}), "benchmark": benchmark,
                        "sampling": dataclasses.asdict(sampling)}
            write_paper_format(completions, stem.with_suffix(".json"), metadata={**metadata, "engine": plan.engine})
            texts = {}
            for completion in completions:
                texts.setdefault(completion.task_id, []).append(completion.text)
            scored = scoring.score_all(texts, problems, SCORINGS, ks=plan.ks, progress=progress, **metadata)
            for name, (frame, summary) in scored.items():
                scoring.save_scores(frame, summary, stem, name)
            manifest.record(stem.with_suffix(".json"), EVALUATION_RUN, identity)
        for path in summary_files.values():
            rows.append(json.loads(path.read_text()))
    return pd.json_normalize(rows)


@dataclasses.dataclass
class Report:
    table: object  # MBPP: mean ± std over runs per variant and metric
    per_run: object
    intervals: object  # per variant, scoring and metric: the estimate and its 95% bootstrap interval
    paired: object  # per scoring: every comparison with its interval, Holm-adjusted p and verdict
    samples: dict  # (variant, scoring) -> pooled per-sample frame
    humaneval: "Report | None" = None  # the same for HumanEval, when its runs were made

    def text(self) -> str:
        from shared_utils.statistics import family_note

        text = self.table.to_string()
        if not self.paired.empty:
            notes = [f"{name}: {family_note(group)}" for name, group in self.paired.groupby("scoring", sort=False)]
            text = "\n".join([text, "", self.paired.round(4).to_string(index=False), *notes])
        if self.humaneval is None:
            return text
        return f"MBPP\n{text}\n\nHumanEval\n{self.humaneval.text()}"


def _load_frames(plan: EvalPlan, benchmark: str) -> dict:
    import pandas as pd

    frames = {}
    for variant in plan.variants():
        for name in SCORINGS:
            tables = {(seed, run): scoring.score_files(plan.layout.with_seed(seed).run_stem(variant, run, benchmark),
                                                       name)["samples"]
                      for seed in plan.seeds(variant) for run in range(plan.runs)}
            parts = [pd.read_parquet(table).assign(seed=seed, run=run) for (seed, run), table in tables.items()
                     if table.is_file()]
            if parts:
                frames[(variant, name)] = pd.concat(parts, ignore_index=True)
    return frames


def comparison(plan: EvalPlan) -> Report | None:
    """MBPP's comparison, with HumanEval's attached when its runs exist; each saved beside the runs.

    Per benchmark: mean ± std over runs for every metric, the per-run rows, each variant's metrics
    with a 95% interval, and paired comparisons (``statistics``) between consecutive variants and
    between the base and the last one, for every pass@k and average MI, under every scoring (each
    scoring's comparisons are one Holm family).
    """
    reports = {benchmark: _compare(plan, benchmark) for benchmark in BENCHMARKS}
    report = reports["mbpp"]
    if report is not None:
        report.humaneval = reports["humaneval"]
    return report


def _compare(plan: EvalPlan, benchmark: str) -> Report | None:
    import pandas as pd

    frames = _load_frames(plan, benchmark)
    if not frames:
        return None
    per_run = []
    for (variant, name), frame in frames.items():
        for (seed, run), part in frame.groupby(["seed", "run"]):
            summary = scoring.summarize(part, plan.ks)
            per_run.append({"variant": variant, "scoring": name, **({"seed": seed} if plan.training_seeds > 1 else {}),
                            "run": run, "solved_tasks": summary["solved_tasks"],
                            "avg_mi": summary["avg_mi"],
                            **{f"pass@{k}": v for k, v in summary["pass_at_k"].items()}})
    per_run = pd.DataFrame(per_run)
    metrics = [c for c in per_run.columns if c.startswith("pass@") or c == "avg_mi"]
    grouped = per_run.groupby(["variant", "scoring"], sort=False)[metrics]
    table = grouped.mean().round(4).astype(str) + " ± " + grouped.std(ddof=1).fillna(0).round(4).astype(str)
    observed = {key: scoring.observations(frame) for key, frame in frames.items()}
    metrics = statistics.metric_names(plan.ks)
    intervals = pd.DataFrame([{"variant": variant, "scoring": name, "metric": metric, **values}
                              for (variant, name), rows in observed.items()
                              for metric, values in statistics.interval(rows, metrics).items()])
    paired = []
    for name in SCORINGS:
        names = [variant for variant in plan.variants() if (variant, name) in observed]
        steps = list(zip(names, names[1:])) + ([(names[0], names[-1])] if len(names) > 2 else [])
        if steps:
            variants = {variant: observed[(variant, name)] for variant in names}
            paired.append(statistics.comparisons(variants, steps, metrics, scoring=name))
    paired = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    report = Report(table=table, per_run=per_run, intervals=intervals, paired=paired, samples=frames)
    files.write_json(plan.layout.comparison(benchmark),
                     {"per_run": per_run.to_dict("records"), "intervals": intervals.to_dict("records"),
                      "paired": paired.to_dict("records")})
    _record_in_adapters(plan, benchmark, table, frames)
    return report


def _record_in_adapters(plan: EvalPlan, benchmark: str, table, frames: dict) -> None:
    """Each evaluated adapter's card and provenance get its rows of the comparison table."""
    from shared_utils.training.card import add_evaluation

    for variant, rows in table.groupby(level="variant", sort=False):
        adapter = plan.adapter(variant)
        if adapter is None:
            continue
        add_evaluation(adapter, benchmark, {
            "variant": variant, "runs": plan.runs, "samples": plan.samples,
            "problems": int(frames[(variant, SCORINGS[0])]["task_id"].nunique()),
            "comparison": plan.layout.comparison(benchmark).name,
            "table": {scoring_name: row.to_dict() for (_, scoring_name), row in rows.iterrows()}})
