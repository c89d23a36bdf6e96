"""One function per pipeline stage; the notebooks, the CLI verbs and the runner are thin shells over them.

Each stage takes its settings from a recipe (``recipes.load``) and every path from a layout
(``layout.ArtifactLayout`` / ``GlobalLayout``), and returns what its notebook shows.
``model`` loads other weights than the recipe's model (a local folder, a tiny look-alike).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared_utils import data, files, preferences
from shared_utils.layout import ArtifactLayout, GlobalLayout
from shared_utils.models import DEFAULT_MODEL
from shared_utils.recipes import Recipe

PAIR_BACKENDS = ("replay", "local", "gemini", "openai")
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
                 progress: bool = True, **backend_options) -> GlobalPairs:
    """Stage 1a+b: two implementations per training problem; the tasks where both pass are kept.

    ``replay`` checks saved answers (``responses``: the paper's DPOPair JSON lines), ``gemini``
    and ``openai`` ask a remote model, ``local`` samples ``generator`` (a model that cannot follow
    the JSON schema: the first two different passing samples make a pair, sized by the recipe's
    ``global_pairs`` section, which also holds the problem ``limit``).
    """
    from shared_utils import generation, prompts

    if backend not in PAIR_BACKENDS:
        raise ValueError(f"unknown pair backend {backend!r}; expected one of {', '.join(PAIR_BACKENDS)}")
    section = recipe.section("global_pairs")
    protocol = recipe.protocol()
    tasks = data.load_problems(problems or out.train_problems)[: section["limit"]]
    if backend == "local":
        sampling = generation.SamplingConfig(n=section["samples"], max_new_tokens=section["max_new_tokens"])
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
                raise ValueError("the replay backend needs responses= (JSON lines of {task_id, code_output_1, "
                                 "code_output_2})")
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
    return GlobalPairs(rows=rows, counts=counts, saved=saved)


def label(pairs: str | Path, out: GlobalLayout, protocol=None) -> tuple[list[dict], Path]:
    """Stage 1c: the implementation with the higher MI is chosen; writes the DPO-ready global dataset.

    The pairs hold the code as Stage 1b ran it (``protocol.pair_code``). ``protocol=None``
    follows the protocol the pairs were made under; one given that disagrees is refused, not mixed.
    """
    from shared_utils.protocol import Protocol, resolve

    made_under = (files.read_provenance(pairs) or {}).get("protocol")
    protocol = Protocol(**made_under) if protocol is None and made_under else resolve(protocol)
    made = (made_under or {}).get("pair_code")
    if made is not None and made != protocol.pair_code:
        raise ValueError(f"{pairs}: made with pair_code={made}, but protocol {protocol.name!r} has "
                         f"pair_code={protocol.pair_code}; run global-pairs again with the same protocol")
    rows = preferences.label_global(preferences.load_rows(pairs), pair_format=protocol.pair_format)
    saved = preferences.save_pairs(rows, out.dataset, source=str(pairs), key="radon mi_visit(code, multi=True)",
                                   protocol=protocol.switches())
    return rows, saved


def train_stage1(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True):
    """Stage 1: DPO + LoRA on the global dataset, into the layout's Stage-1 adapter."""
    from shared_utils.training import train_dpo

    return train_dpo(model or recipe.model, layout.global_.dataset, layout.stage1_adapter,
                     settings=recipe.training("stage1"), progress=progress)


@dataclasses.dataclass
class LocalPairs:
    problems: list[dict]
    generation: object  # self_generation.SelfGenResult
    rounds: object  # one row per round: tasks asked, samples, passing samples
    rows: list[dict]
    dataset: Path | None  # None: no task had two different passing samples, nothing saved


def self_generate(recipe: Recipe, layout: ArtifactLayout, iteration: int = 1, *, model: str | None = None,
                  progress: bool = True) -> LocalPairs:
    """Stage 2a: the iteration's starting adapter samples, is checked and builds its own pairs.

    Through vLLM where it is installed and a GPU is present, else the local loop.
    """
    import pandas as pd

    from shared_utils import generation, self_generation
    from shared_utils.models import load_model

    section = recipe.section("stage2a")
    model = model or recipe.model
    start = layout.start_adapter(iteration)
    problems = data.load_problems(layout.global_.train_problems)[: section["limit"]]
    protocol = recipe.protocol()
    sampling = generation.SamplingConfig(n=section["samples"], max_new_tokens=section["max_new_tokens"])
    if generation.resolve_backend("auto") == "vllm":  # one engine for every round, the adapter a LoRARequest
        source = {"backend": "vllm", "model": model, "adapter": start}
    else:
        source = {"loaded": load_model(model, adapter=start)}
    result = self_generation.self_generate(
        problems, sampling=sampling,
        config=self_generation.SelfGenConfig(rounds=section["rounds"], feedback=section["feedback"], protocol=protocol),
        checkpoint=layout.generation_checkpoint(iteration), progress=progress, **source)
    rounds = pd.DataFrame(result.rounds)
    if len(rounds):
        rounds["pass_rate"] = rounds["samples_passed"] / rounds["samples"].clip(lower=1)
    rows = self_generation.local_pairs(problems, result, min_gap=section["min_gap"], protocol=protocol)
    dataset = None
    if rows:
        dataset = preferences.save_pairs(rows, layout.local_dataset(iteration), start_adapter=str(start),
                                         sampling=sampling.__dict__, rounds=rounds.to_dict("records"),
                                         recipe=recipe.describe(), protocol=protocol.switches())
    return LocalPairs(problems=problems, generation=result, rounds=rounds, rows=rows, dataset=dataset)


def train_stage2(recipe: Recipe, layout: ArtifactLayout, iteration: int = 1, *, model: str | None = None,
                 progress: bool = True):
    """Stage 2c: continue the iteration's starting adapter on its local pairs; None when there are none."""
    from shared_utils.training import train_dpo

    dataset = layout.local_dataset(iteration)
    if not dataset.exists():
        return None
    return train_dpo(model or recipe.model, dataset, layout.further_adapter(iteration),
                     init_adapter=layout.start_adapter(iteration), settings=recipe.training("stage2c"), progress=progress)


def train_grpo(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True,
               overwrite: bool = False):
    """Beyond the paper: GRPO from the recipe's ``grpo.start`` adapter on the training prompts, into the
    layout's GRPO adapter."""
    from shared_utils.training import train_grpo as train

    settings = recipe.grpo()
    problems = layout.global_.train_problems
    return train(model or recipe.model, data.load_problems(problems), layout.grpo_adapter, settings=settings,
                 init_adapter=layout.grpo_start(settings.start), problems_source=str(problems), progress=progress,
                 overwrite=overwrite)


def evaluation_plan(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None):
    """The recipe's evaluation, generating through vLLM where it is installed and a GPU is present."""
    from shared_utils.evaluation import EvalPlan
    from shared_utils.generation import resolve_backend

    section = recipe.section("evaluation")
    return EvalPlan(layout, model=str(model or recipe.model), runs=section["runs"], samples=section["samples"],
                    max_new_tokens=section["max_new_tokens"], limit=section["limit"], backend=resolve_backend("auto"))


def evaluate(recipe: Recipe, layout: ArtifactLayout, *, model: str | None = None, progress: bool = True):
    """Evaluation: every variant's runs (HumanEval too when the recipe asks), then the comparison."""
    from shared_utils import evaluation

    plan = evaluation_plan(recipe, layout, model=model)
    benchmarks = ["mbpp"] + (["humaneval"] if recipe.section("evaluation")["humaneval"] else [])
    for benchmark in benchmarks:
        for variant in plan.variants():
            evaluation.run_variant(plan, variant, benchmark=benchmark, progress=progress)
    return evaluation.comparison(plan)
