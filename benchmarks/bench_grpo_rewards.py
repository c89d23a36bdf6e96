"""Reward computation of GRPO steps: the whole generation batch through one ``check_many`` vs one by one.

A GRPO step with the paper models' recipe scores 32 completions (4 prompts x 8 samples). The
recipe's rewards by name (``rewards.Judge.reward_functions``: correctness and maintainability)
are called exactly as ``GRPOTrainer._calculate_rewards`` calls them (chat completions, the
dataset's ``test_list`` and ``test_setup_code`` columns, ``log_metric``), in the same run:
  * batched: each function once per step, sharing one judge, so one sandbox batch of 32
    candidates on every core;
  * one by one: each function once per completion, the way a reward function that checks each
    sample (``sandbox.check`` in a loop) scores a step.
Samples per prompt are the MBPP reference or mutants of it (about 40% of them wrong), fenced as
a model answers; candidates slower than a second are screened out, as in ``bench_sandbox.py``,
so the figures measure the sandbox and the reward, not the 5 s timeout. Rewards must agree.
Figures go to ``benchmarks/results/grpo_rewards.md``.

Run: ``.venv/bin/python benchmarks/bench_grpo_rewards.py`` from the repository root.
"""

from __future__ import annotations

import random

from _common import RESULTS, machine, publish, timed  # the script's own folder is on sys.path
from bench_sandbox import _erroring, _mutant, _problems, _quick

from shared_utils.rewards import Judge, RewardSettings
from shared_utils.sandbox.api import usable_cores

OUT = RESULTS / "grpo_rewards.md"
PROMPTS, GENERATIONS, STEPS = 4, 8, 12  # the paper models' recipe: 8 x 4 completions per step


def steps(seed: int = 0) -> list[dict]:
    """``STEPS`` generation batches of ``PROMPTS`` problems x ``GENERATIONS`` answers, as TRL hands them over."""
    rng = random.Random(seed)
    problems = [p for p, quick in zip(_problems(), _quick([(p["code"], p["test_list"], p["test_setup_code"])
                                                          for p in _problems()])) if quick]
    rng.shuffle(problems)
    batches = []
    for step in range(STEPS):
        group = problems[step * PROMPTS:(step + 1) * PROMPTS]
        rows = [(problem, _sample(problem["code"], rng)) for problem in group for _ in range(GENERATIONS)]
        screened = _quick([(code, problem["test_list"], problem["test_setup_code"]) for problem, code in rows])
        rows = [(problem, code if quick else problem["code"]) for (problem, code), quick in zip(rows, screened)]
        batches.append({
            "completions": [[{"role": "assistant", "content": f"```python\n{code}\n```"}] for _, code in rows],
            "test_list": [problem["test_list"] for problem, _ in rows],
            "test_setup_code": [problem["test_setup_code"] for problem, _ in rows],
        })
    return batches


def _sample(code: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.03:
        return _erroring(code, rng)
    return (_mutant(code, rng) or code) if roll < 0.45 else code


def total(functions: list, weights: list[float], **batch) -> list[float]:
    """Every function called once on ``batch`` as TRL calls them, then TRL's weighted sum per completion."""
    logged: dict = {}
    columns = [function(**batch, log_metric=logged.__setitem__) for function in functions]
    return [sum(weight * column[i] for weight, column in zip(weights, columns)) for i in range(len(columns[0]))]


def batched(settings: RewardSettings, batches: list[dict]) -> list[float]:
    functions = Judge(settings).reward_functions()
    return [r for batch in batches for r in total(functions, settings.weights(), **batch)]


def one_by_one(settings: RewardSettings, batches: list[dict]) -> list[float]:
    functions = Judge(settings).reward_functions()
    return [r for batch in batches for i in range(len(batch["completions"]))
            for r in total(functions, settings.weights(), **{key: values[i:i + 1] for key, values in batch.items()})]


def sandbox_only(batches: list[dict]) -> None:
    from shared_utils.extraction import extract_code
    from shared_utils.prompts import answer_text
    from shared_utils.sandbox import check_many

    for batch in batches:
        check_many([(extract_code(answer_text(c), "paper"), tests, setup) for c, tests, setup in
                    zip(batch["completions"], batch["test_list"], batch["test_setup_code"])], progress=False)


def main() -> None:
    batches = steps()
    count = sum(len(batch["completions"]) for batch in batches)
    settings = RewardSettings()  # the paper models' reward settings: 5 s per assert
    batched(settings, batches[:1])  # start the sandbox's pool once
    first_s, first = timed(batched, settings, batches)
    single_s, single = timed(one_by_one, settings, batches)
    second_s, second = timed(batched, settings, batches)
    sandbox_s, _ = timed(sandbox_only, batches)
    assert first == single == second, "rewards differ between the two ways of scoring"
    batch_s = min(first_s, second_s)
    passing = sum(r >= 1 / 1.5 for r in first)
    lines = [
        "# GRPO reward computation: one `check_many` per step vs one by one",
        "",
        f"Machine: {machine()}; {usable_cores()} sandbox workers.",
        f"{STEPS} steps x {PROMPTS} MBPP problems x {GENERATIONS} samples = {count} completions; "
        f"{passing} pass every assert; mean reward {sum(first) / count:.3f}. Rewards identical both ways.",
        "",
        "| reward computation | seconds | per step (ms) | candidates/s |",
        "|---|---:|---:|---:|",
        f"| each reward function once per step (one `check_many` of {PROMPTS * GENERATIONS}), best of two | {batch_s:.2f} | "
        f"{1000 * batch_s / STEPS:.0f} | {count / batch_s:,.0f} |",
        f"| each function once per completion (one `check_many` of 1 each) | {single_s:.2f} | {1000 * single_s / STEPS:.0f} | "
        f"{count / single_s:,.0f} |",
        f"| for scale: the sandbox alone on the same batches (no MI, no reward) | {sandbox_s:.2f} | "
        f"{1000 * sandbox_s / STEPS:.0f} | {count / sandbox_s:,.0f} |",
        "",
        f"Batched is {single_s / batch_s:.1f}x faster (the two batched runs: {first_s:.2f} s and {second_s:.2f} s). "
        "The rest of a batched step is the gate (compiling each answer, looking for code built from strings) and "
        "the MI of each passing sample, twice (as written and in its normal form), in the calling process.",
        "",
    ]
    publish(OUT, lines)


if __name__ == "__main__":
    main()
