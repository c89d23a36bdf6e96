"""One function per pipeline stage; the notebooks, the CLI verbs and the runner are thin shells over them.

Each stage takes its settings from a recipe (``recipes.load``) and every path from a layout
(``layout.ArtifactLayout`` / ``GlobalLayout``), and returns what its notebook shows.
``model`` loads other weights than the recipe's model (a local folder, a tiny look-alike).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared_utils import data, files, inputs, preferences
from shared_utils.layout import (FURTHER, GLOBAL_PAIRS, GRPO, LABELLED_PAIRS, LOCAL_PAIRS, STAGE1, ArtifactLayout,
                                 GlobalLayout)
from shared_utils.models import DEFAULT_MODEL
from shared_utils.recipes import Recipe

# The global notebooks' CPU path (`make demo`'s) behind one parameter, ``cpu_demo``: the embedded model's
# demo problem set, whose pairs the embedded model samples itself, sized by its own recipe.
CPU_DEMO = {"source": data.DEMO_SOURCE, "problem_set": "demo", "backend": "local", "generator": DEFAULT_MODEL,
            "recipe": DEFAULT_MODEL}


@dataclasses.dataclass
class GlobalPairs:
    rows: list[dict]
    counts: preferences.PairCounts
    saved: Path


def global_pairs(out: GlobalLayout, recipe: Recipe, *, backend: str = "replay", generator: str = "gemini-2.5-pro",
                 responses: str | Path | None = None, problems: str | Path | None = None,
                 progress: bool = True, overwrite: bool = False, **backend_options) -> GlobalPairs:
    """Stage 1a+b: two implementations per training problem; the tasks where both pass are kept.

    ``replay`` checks saved answers (``responses``: the paper's DPOPair JSON lines; by default the
    authors' Gemini answers in the local data folder, ``inputs.gemini_pairs``), ``gemini``
    and ``openai`` ask a remote model, ``local`` samples ``generator`` (a model that cannot follow
    the JSON schema: the first two different passing samples make a pair, sized by the recipe's
    ``global`` section, which also holds the problem ``limit``). The pairs are made anew on
    every run; what an earlier run left to resume (the local samples, the remote requests) is kept
    when its settings match and refused when they do not, unless ``overwrite`` discards it first.
    """
    import shutil

    from shared_utils import generation, prompts
    from shared_utils.generation.checkpoint import discard

    if backend not in generation.PAIR_BACKENDS:
        raise ValueError(f"unknown pair backend {backend!r}; expected one of {', '.join(generation.PAIR_BACKENDS)}")
    if overwrite:
        discard(out.generation_checkpoint)
        shutil.rmtree(out.pair_requests, ignore_errors=True)
    section = recipe.section("global")
    protocol = recipe.protocol()
    problems = Path(problems or out.train_problems)
    tasks = data.load_problems(problems)[: section["limit"]]
    if backend == "local":
        sampling = generation.SamplingConfig.from_recipe(section)
        requests = [generation.Request(p["task_id"], prompts.messages(p["text"])) for p in tasks]
        completions = generation.generate(requests, backend="local", model=generator, sampling=sampling,
                                          checkpoint=out.generation_checkpoint, progress=progress)
        texts: dict = {}
        for completion in completions:
            texts.setdefault(completion.task_id, []).append(completion.text)
        rows, counts = preferences.pairs_from_samples(tasks, texts, generator=generator, protocol=protocol)
    else:
        if backend == "replay":
            if responses is None:
                responses = inputs.gemini_pairs()
                print(f"replay: the authors' Gemini answers, {responses}")
            wanted = {p["task_id"] for p in tasks}
            answers = {k: v for k, v in generation.replay_pairs(responses).items() if k in wanted}
        else:
            answers = generation.request_pairs(tasks, backend=backend, model=generator, state_dir=out.pair_requests,
                                               protocol=protocol, **backend_options)
        rows, counts = preferences.check_pair_responses(tasks, answers, generator=generator, progress=progress,
                                                        protocol=protocol)
    saved = preferences.save_pairs(rows, out.pairs, generator=generator, backend=backend, counts=counts.__dict__,
                                   recipe=recipe.describe(), protocol=protocol.switches())
    preferences.write_counts(counts, out.pair_counts)
    replayed = Path(responses) if backend == "replay" else None
    out.manifest.record(saved, GLOBAL_PAIRS, {
        "problems": str(problems), "problems_sha256": files.content_hash(tasks), "global": section,
        "backend": backend, "generator": generator, "responses": str(replayed) if replayed else None,
        "responses_sha256": files.sha256_of(replayed) if replayed and replayed.is_file() else None,
        "protocol": protocol.switches()})
    return GlobalPairs(rows=rows, counts=counts, saved=saved)


def label(pairs: str | Path, out: GlobalLayout, protocol=None) -> tuple[list[dict], Path]:
    """Stage 1c: the implementation with the higher MI is chosen; writes the DPO-ready global dataset.

    The pairs hold the code as Stage 1b ran it (``protocol.pair_code``). ``protocol=None``
    follows the protocol the pairs were made under; one given that disagrees is refused, not mixed.
    """
    from shared_utils.protocol import recorded, resolve

    made_under = (files.read_provenance(pairs) or {}).get("protocol")
    protocol = recorded(made_under) if protocol is None and made_under else resolve(protocol)
    made = (made_under or {}).get("pair_code")
    if made is not None and made != protocol.pair_code:
        raise ValueError(f"{pairs}: made with pair_code={made}, but protocol {protocol.name!r} has "
                         f"pair_code={protocol.pair_code}; run global-pairs again with the same protocol")
    made_from = preferences.load_rows(pairs)
    rows = preferences.label_global(made_from, pair_format=protocol.pair_format)
    key = "radon mi_visit(code, multi=True)"
    saved = preferences.save_pairs(rows, out.dataset, source=str(pairs), key=key, protocol=protocol.switches())
    out.manifest.record(saved, LABELLED_PAIRS, dict(pairs=str(pairs), pairs_sha256=files.content_hash(made_from),
                                                    key=key, protocol=protocol.switches()))
    return rows, saved


def train_stage1(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True,
                 overwrite: bool = False):
    """Stage 1: DPO + LoRA on the labelled global pairs the global folder records, into the layout's Stage-1 adapter,
    recorded in its manifest."""
    recipe.training("stage1")  # checked before any input is looked for
    return _each_seed(recipe, layout, lambda seeded, seed: _train_adapter(
        seeded, STAGE1, None, model or recipe.model, seeded.global_.labelled, seeded.stage1_adapter,
        recipe.training("stage1", seed), progress=progress, overwrite=overwrite))


def _each_seed(recipe: Recipe, layout: ArtifactLayout, stage):
    """A training stage once per training seed (recipe key ``training_seeds``), each on the layout of its seed (its
    own inputs and outputs); the first seed's result is returned (the paper's single run, what a notebook shows)."""
    results = [stage(layout.with_seed(seed), seed) for seed in recipe.training_seeds]
    return results[0]


def _train_adapter(layout: ArtifactLayout, role: str, iteration: int | None, model: str, dataset, out: Path, settings,
                   *, init_adapter: Path | None = None, progress: bool, overwrite: bool):
    """Reuse the recorded adapter when its identity is the one asked for, else train it and record it."""
    from shared_utils import training
    from shared_utils.training import card
    from shared_utils.training.dpo import is_complete

    identity = training.run_identity(model, dataset, settings, init_adapter)
    if layout.manifest.reuse(out, identity, overwrite=overwrite, complete=is_complete(out), what="adapter"):
        return card.read_result(out)
    result = training.train_dpo(model, dataset, out, settings=settings, init_adapter=init_adapter, progress=progress,
                                overwrite=True)
    layout.manifest.record(out, role, identity, iteration, layout.seed)
    return result


@dataclasses.dataclass
class LocalPairs:
    problems: list[dict]
    generation: object  # self_generation.SelfGenResult
    rounds: object  # one row per round: tasks asked, samples, passing samples
    rows: list[dict]
    dataset: Path | None  # None: no task had two different passing samples, nothing saved


def self_generate(recipe: Recipe, layout: ArtifactLayout, iteration: int = 1, *, model: str | None = None,
                  progress: bool = True, overwrite: bool = False) -> LocalPairs:
    """Stage 2a: the iteration's starting adapter (the recorded one) samples, is checked and builds its own pairs.

    Through vLLM where it is installed and a GPU is present, else the local loop; the dataset's
    provenance names the engine and the weights' dtype (``protocol.generation_dtype``). A local
    dataset recorded with the same identity is reused. Each training seed's adapter samples its own.
    """
    return _each_seed(recipe, layout, lambda seeded, _: _self_generate(
        recipe, seeded, iteration, model=model, progress=progress, overwrite=overwrite))


def _self_generate(recipe: Recipe, layout: ArtifactLayout, iteration: int, *, model: str | None, progress: bool,
                   overwrite: bool) -> LocalPairs:
    from shared_utils import generation, self_generation
    from shared_utils.generation.checkpoint import discard
    from shared_utils.manifest import adapter_sha256
    from shared_utils.models import load_model

    section = recipe.section("stage2a")
    model = model or recipe.model
    start = layout.start_adapter(iteration)
    problems = data.subset(data.load_problems(layout.global_.train_problems), section["subset"], section["limit"])
    protocol = recipe.protocol()
    engine = generation.LocalEngine.from_recipe(section, "stage2a")
    if protocol.generation_dtype == "float32" and engine.dtype not in (None, "float32"):
        raise ValueError(f"stage2a.local_engine.dtype {engine.dtype} contradicts the protocol's generation_dtype "
                         "float32: drop one of them")
    sampling = generation.SamplingConfig.from_recipe(section, stop_at_code_end=protocol.stop_at_code_end,
                                                     batch_size=engine.batch_size)
    dtype = "float32" if protocol.generation_dtype == "float32" else engine.dtype  # None: the model's own
    settings = {key: value for key, value in section.items() if key != "local_engine"}
    identity = dict(model=str(model), start_adapter=str(start), start_adapter_sha256=adapter_sha256(start),
                    problems_sha256=files.content_hash(problems), stage2a=settings, sampling=sampling.__dict__,
                    protocol=protocol.switches(), **engine.identity())
    out = layout.local_dataset(iteration)
    if layout.manifest.reuse(out, identity, overwrite=overwrite, what="local dataset"):
        return _saved_local_pairs(out, problems)
    checkpoint = layout.generation_checkpoint(iteration)
    if overwrite:
        discard(checkpoint)
    if generation.resolve_backend("auto") == "vllm":  # one engine for every round, the adapter a LoRARequest
        source = {"backend": "vllm", "model": model, "adapter": start, "dtype": dtype}
    else:
        source = {"loaded": load_model(model, adapter=start, dtype=dtype), **engine.generate_options()}
    result = self_generation.self_generate(
        problems, sampling=sampling,
        config=self_generation.SelfGenConfig(rounds=section["rounds"], feedback=section["feedback"], protocol=protocol),
        checkpoint=checkpoint, progress=progress, **source)
    rounds = _rounds_frame(result.rounds)
    rows = self_generation.local_pairs(problems, result, min_gap=section["min_gap"], protocol=protocol)
    dataset = None
    if rows:
        dataset = preferences.save_pairs(rows, out, start_adapter=str(start), sampling=sampling.__dict__,
                                         generation=generation.engine_of(checkpoint), rounds=rounds.to_dict("records"),
                                         recipe=recipe.describe(), protocol=protocol.switches())
        layout.manifest.record(dataset, LOCAL_PAIRS, identity, iteration, layout.seed)
    return LocalPairs(problems=problems, generation=result, rounds=rounds, rows=rows, dataset=dataset)


def _rounds_frame(rounds: list[dict]):
    import pandas as pd

    frame = pd.DataFrame(rounds)
    if len(frame) and "pass_rate" not in frame:
        frame["pass_rate"] = frame["samples_passed"] / frame["samples"].clip(lower=1)
    return frame


def _saved_local_pairs(dataset: Path, problems: list[dict]) -> LocalPairs:
    """A reused local dataset as Stage 2a returns it: its rows and the rounds its provenance recorded."""
    rounds = (files.read_provenance(dataset) or {}).get("rounds", [])
    return LocalPairs(problems=problems, generation=None, rounds=_rounds_frame(rounds),
                      rows=preferences.load_rows(dataset), dataset=dataset)


def train_stage2(recipe: Recipe, layout: ArtifactLayout, iteration: int = 1, *, model: str | None = None,
                 progress: bool = True, overwrite: bool = False):
    """Stage 2c: continue the iteration's starting adapter on its local pairs (both as recorded); None when
    Stage 2a recorded no pairs (for a training seed: no adapter of that seed)."""
    def one(seeded: ArtifactLayout, seed: int):
        if not seeded.has(LOCAL_PAIRS, iteration):
            return None
        return _train_adapter(seeded, FURTHER, iteration, model or recipe.model,
                              seeded.recorded(LOCAL_PAIRS, iteration), seeded.further_adapter(iteration),
                              recipe.training("stage2c", seed), init_adapter=seeded.start_adapter(iteration),
                              progress=progress, overwrite=overwrite)

    return _each_seed(recipe, layout, one)


def train_grpo(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True,
               overwrite: bool = False):
    """Beyond the paper: GRPO from the recipe's ``grpo.start`` adapter (the recorded one) on the training prompts,
    into the layout's GRPO adapter, recorded in its manifest; one per training seed, each from its seed's start."""
    return _each_seed(recipe, layout, lambda seeded, seed: _train_grpo(
        recipe, seeded, seed, model=model or recipe.model, progress=progress, overwrite=overwrite))


def _train_grpo(recipe: Recipe, layout: ArtifactLayout, seed: int, *, model: str, progress: bool, overwrite: bool):
    from shared_utils import training
    from shared_utils.training import card
    from shared_utils.training.dpo import is_complete

    settings = recipe.grpo(seed)
    source = layout.global_.train_problems
    problems, start, out = data.load_problems(source), layout.grpo_start(settings.start), layout.grpo_adapter
    identity = training.grpo_identity(model, problems, settings, init_adapter=start, problems_source=str(source))
    if layout.manifest.reuse(out, identity, overwrite=overwrite, complete=is_complete(out), what="adapter"):
        return card.read_result(out)
    result = training.train_grpo(model, problems, out, settings=settings, init_adapter=start,
                                 problems_source=str(source), progress=progress, overwrite=True)
    layout.manifest.record(out, GRPO, identity, seed=layout.seed)
    return result


def evaluation_plan(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, overwrite: bool = False):
    """The recipe's evaluation, generating through vLLM where it is installed and a GPU is present."""
    from shared_utils.evaluation import EvalPlan
    from shared_utils.generation import LocalEngine, resolve_backend

    section = recipe.section("evaluation")
    return EvalPlan(layout, model=str(model or recipe.model), runs=section["runs"], samples=section["samples"],
                    max_new_tokens=section["max_new_tokens"], temperature=section["temperature"],
                    top_p=section["top_p"], top_k=section["top_k"], limit=section["limit"],
                    subset=section["subset"], stop_at_code_end=section["stop_at_code_end"], seed=section["seed"],
                    adapters=section["adapters"], training_seeds=len(recipe.training_seeds),
                    local_engine=LocalEngine.from_recipe(section, "evaluation"),
                    backend=resolve_backend("auto"), overwrite=overwrite)


def evaluate(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True,
             overwrite: bool = False):
    """Evaluation: every recorded variant's runs (HumanEval too when the recipe asks), then the comparison."""
    from shared_utils import evaluation

    plan = evaluation_plan(recipe, layout, model=model, overwrite=overwrite)
    benchmarks = ["mbpp"] + (["humaneval"] if recipe.section("evaluation")["humaneval"] else [])
    for benchmark in benchmarks:
        for variant in plan.variants():
            evaluation.run_variant(plan, variant, benchmark=benchmark, progress=progress)
    return evaluation.comparison(plan)
