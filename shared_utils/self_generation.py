"""Stage 2a, the paper's novel step: the Stage-1 model samples its own solutions.

Each round asks again only for the tasks that still have fewer than ``min_passing``
passing samples, optionally with the feedback prompt and one failed solution.
Generation is checkpointed per (task, round, sample), so an interrupted run resumes.
How answers are generated, extracted, run, shown back and stored follows a ``protocol.Protocol``.

The authors decoded each whole sequence and kept ``split(<chat marker>)[-1].strip()``: the
answer, stripped. We decode only the new tokens, which is the answer; ``as_the_authors_held`` strips it,
and every use of the raw answer (the paper's feedback, MI text and stored chosen/rejected) reads
it that way. Their extraction (fence markers deleted, then stripped) gives the same code with or
without that strip, so extraction reads the answer as decoded (``fenced`` would not: an answer
ending in an opening fence and a newline holds an empty block, stripped it holds none).
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
    timeout: float = 5.0
    protocol: object = None  # a name or ``protocol.Protocol``; None: the default


@dataclasses.dataclass
class SelfGenResult:
    passing: dict  # task_id -> passing extracted codes, in generation order
    failed: dict  # task_id -> failing extracted codes
    rounds: list[dict]  # per-round statistics
    passing_texts: dict = dataclasses.field(default_factory=dict)  # the answers behind ``passing`` (``as_the_authors_held``)
    failed_texts: dict = dataclasses.field(default_factory=dict)  # the answers behind ``failed`` (``as_the_authors_held``)


def round_prompt(problem: dict, result: SelfGenResult, round_index: int, feedback: bool, protocol) -> str:
    """The task, and from the second round on (with ``feedback``) one failed solution.

    ``protocol.feedback="paper"``: the last failing raw answer of the most recent round that had
    one, in the paper's wording; ``"corrected"``: the first failing extracted code.
    """
    task_id = problem["task_id"]
    if round_index == 0 or not feedback or not result.failed[task_id]:
        return problem["text"]
    if protocol.feedback == "paper":
        return prompts.paper_retry_prompt(problem["text"], result.failed_texts[task_id][-1])
    return prompts.retry_prompt(problem["text"], result.failed[task_id][0])


def as_the_authors_held(completion_text: str) -> str:
    """A sampled answer as the authors' code held it: ``decoded.split(<chat marker>)[-1].strip()``."""
    return completion_text.strip()


def mi_text(answer: str, code: str, protocol) -> str:
    """What Stage 2b's MI is computed on: the extracted code, or the paper's backtick-free answer."""
    return answer.replace("```", "") if protocol.selfgen_mi == "paper" else code


def self_generate(problems: list[dict], loaded=None, *, sampling=None, config: SelfGenConfig = SelfGenConfig(),
                  checkpoint: str | Path, progress: bool = True, **generation_options) -> SelfGenResult:
    """Rounds of sampling by ``loaded`` (a ``models.LoadedModel``: the Stage-1 model with its adapter).

    ``generation_options`` name another source of samples instead: ``backend="vllm", model=, adapter=``
    (one engine for every round), or ``backend="replay", source=FILE`` (a checkpoint of earlier rounds).
    ``sampling`` must stop at the code end exactly when the protocol does (``stop_at_code_end``).
    """
    from shared_utils.generation import Request, SamplingConfig, generate
    from shared_utils.protocol import resolve

    protocol = resolve(config.protocol)
    sampling = sampling or SamplingConfig(stop_at_code_end=protocol.stop_at_code_end)
    if sampling.stop_at_code_end != protocol.stop_at_code_end:
        raise ValueError(f"sampling.stop_at_code_end={sampling.stop_at_code_end}, but protocol {protocol.name!r} "
                         f"has stop_at_code_end={protocol.stop_at_code_end}")
    by_id = {problem["task_id"]: problem for problem in problems}
    def per_task() -> dict:
        return {task_id: [] for task_id in by_id}

    result = SelfGenResult(passing=per_task(), failed=per_task(), rounds=[], passing_texts=per_task(),
                           failed_texts=per_task())
    for round_index in range(config.rounds):
        pending = [task_id for task_id in by_id if len(result.passing[task_id]) < config.min_passing]
        if not pending:
            break
        requests = [Request(task_id, prompts.messages(round_prompt(by_id[task_id], result, round_index,
                                                                   config.feedback, protocol)),
                            round=round_index) for task_id in pending]
        completions = [c for c in generate(requests, **{"backend": "local", **generation_options}, loaded=loaded,
                                           sampling=sampling, checkpoint=checkpoint, progress=progress)
                       if c.round == round_index]
        candidates = [(c.task_id, extract_code(c.text, protocol.selfgen_extract)) for c in completions]
        verdicts = run_checks(by_id, candidates, timeout=config.timeout, progress=progress, protocol=protocol)
        for completion, (task_id, code), ok in zip(completions, candidates, verdicts):
            (result.passing if ok else result.failed)[task_id].append(code)
            (result.passing_texts if ok else result.failed_texts)[task_id].append(as_the_authors_held(completion.text))
        result.rounds.append({
            "round": round_index, "tasks_asked": len(pending), "samples": len(candidates),
            "samples_passed": int(sum(verdicts)),
            "tasks_with_enough": sum(len(codes) >= config.min_passing for codes in result.passing.values()),
        })
    return result


def local_pairs(problems: list[dict], result: SelfGenResult, *, min_gap: float = 0.0, protocol=None) -> list[dict]:
    """Stage 2b on a Stage 2a result, paired, scored and stored as ``protocol`` says: chosen/rejected are
    the answers as generated (``local_answer="raw"``, the authors' ``valid_solutions.append(generated_solution)``)
    or the extracted code in a python fence (``"fenced"``)."""
    from shared_utils.protocol import resolve
    from shared_utils.preferences import label_local

    protocol = resolve(protocol)
    scored = {task_id: [mi_text(text, code, protocol) for text, code in zip(result.passing_texts[task_id], codes)]
              for task_id, codes in result.passing.items()}
    answers = result.passing_texts if protocol.local_answer == "raw" else None
    return label_local(problems, result.passing, min_gap=min_gap, pairing=protocol.local_pairing, scored=scored,
                       answers=answers, pair_format=protocol.pair_format)
