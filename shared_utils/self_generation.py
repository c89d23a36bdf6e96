"""Stage 2a, the paper's novel step: the Stage-1 model samples its own solutions.

Each round asks again only for the tasks that still have fewer than ``min_passing``
passing samples, optionally with the paper's feedback prompt and one failed solution.
Generation is checkpointed per (task, round, sample), so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared_utils import prompts
from shared_utils.extraction import extract_code
from shared_utils.preferences import run_checks


@dataclasses.dataclass
class SelfGenConfig:
    rounds: int = 5
    min_passing: int = 2
    feedback: bool = True
    extract: str = "fenced"
    timeout: float = 5.0


@dataclasses.dataclass
class SelfGenResult:
    passing: dict  # task_id -> passing extracted codes, in generation order
    failed: dict  # task_id -> failing extracted codes
    rounds: list[dict]  # per-round statistics


def round_prompt(problem: dict, failed: list[str], round_index: int, feedback: bool) -> str:
    if round_index == 0 or not feedback or not failed:
        return problem["text"]
    return prompts.retry_prompt(problem["text"], failed[0])


def self_generate(problems: list[dict], loaded=None, *, sampling=None, config: SelfGenConfig = SelfGenConfig(),
                  checkpoint: str | Path, progress: bool = True, **generation_options) -> SelfGenResult:
    """Rounds of sampling by ``loaded`` (a ``models.LoadedModel``: the Stage-1 model with its adapter).

    ``generation_options`` name another source of samples instead: ``backend="vllm", model=, adapter=``
    (one engine for every round), or ``backend="replay", source=FILE`` (a checkpoint of earlier rounds).
    """
    from shared_utils.generation import Request, SamplingConfig, generate

    sampling = sampling or SamplingConfig()
    by_id = {problem["task_id"]: problem for problem in problems}
    passing = {task_id: [] for task_id in by_id}
    failed = {task_id: [] for task_id in by_id}
    stats = []
    for round_index in range(config.rounds):
        pending = [task_id for task_id in by_id if len(passing[task_id]) < config.min_passing]
        if not pending:
            break
        requests = [Request(task_id, prompts.messages(round_prompt(by_id[task_id], failed[task_id], round_index,
                                                                   config.feedback)),
                            round=round_index) for task_id in pending]
        completions = generate(requests, **{"backend": "local", **generation_options}, loaded=loaded,
                               sampling=sampling, checkpoint=checkpoint, progress=progress)
        candidates = [(c.task_id, extract_code(c.text, config.extract)) for c in completions if c.round == round_index]
        verdicts = run_checks(by_id, candidates, timeout=config.timeout, progress=progress)
        for (task_id, code), ok in zip(candidates, verdicts):
            (passing if ok else failed)[task_id].append(code)
        stats.append({
            "round": round_index, "tasks_asked": len(pending), "samples": len(candidates),
            "samples_passed": int(sum(verdicts)),
            "tasks_with_enough": sum(len(codes) >= config.min_passing for codes in passing.values()),
        })
    return SelfGenResult(passing=passing, failed=failed, rounds=stats)
