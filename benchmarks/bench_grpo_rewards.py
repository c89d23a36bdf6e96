"""Reward computation of GRPO steps: the whole generation batch through one ``check_many`` vs one by one.

A GRPO step with the paper models' recipe scores 32 completions (4 prompts x 8 samples).
``rewards.CodeReward`` is called exactly as ``GRPOTrainer._calculate_rewards`` calls it (chat
completions, the dataset's ``test_list`` and ``test_setup_code`` columns, ``log_metric``), in
the same run:
  * batched: one call per step, so one sandbox batch of 32 candidates on every core;
  * one by one: one call per completion, the way a reward function that checks each sample
    (``sandbox.check`` in a loop) scores a step.
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

from shared_utils.rewards import CodeReward, RewardSettings
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
            "completions": [[{"role": "assistant", "content": f"Here you go:\n```python\n{code}\n```"}] for _, code in rows],
            "test_list": [problem["test_list"] for problem, _ in rows],
            "test_setup_code": [problem["test_setup_code"] for problem, _ in rows],
        })
    return batches


def _sample(code: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.03:
        return _erroring(code, rng)
    return (_mutant(code, rng) or code) if roll < 0.45 else code


def batched(reward: CodeReward, batches: list[dict]) -> list[float]:
    logged: dict = {}
    return [r for batch in batches for r in reward(**batch, log_metric=logged.__setitem__)]


def one_by_one(reward: CodeReward, batches: list[dict]) -> list[float]:
    logged: dict = {}
    return [r for batch in batches for i in range(len(batch["completions"]))
            for r in reward(**{key: values[i:i + 1] for key, values in batch.items()}, log_metric=logged.__setitem__)]


def sandbox_only(batches: list[dict]) -> None:
    from shared_utils.extraction import extract_code
    from shared_utils.rewards import answer_text
    from shared_utils.sandbox import check_many

    for batch in batches:
        check_many([(extract_code(answer_text(c), "fenced"), tests, setup) for c, tests, setup in
                    zip(batch["completions"], batch["test_list"], batch["test_setup_code"])], progress=False)


def main() -> None:
    batches = steps()
    count = sum(len(batch["completions"]) for batch in batches)
    reward = CodeReward(RewardSettings())  # the paper models' reward settings: 5 s per assert
    batched(reward, batches[:1])  # start the sandbox's pool once
    first_s, first = timed(batched, reward, batches)
    single_s, single = timed(one_by_one, reward, batches)
    second_s, second = timed(batched, reward, batches)
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
        f"| one `CodeReward` call per step (one `check_many` of {PROMPTS * GENERATIONS}), best of two | {batch_s:.2f} | "
        f"{1000 * batch_s / STEPS:.0f} | {count / batch_s:,.0f} |",
        f"| one call per completion (one `check_many` of 1 each) | {single_s:.2f} | {1000 * single_s / STEPS:.0f} | "
        f"{count / single_s:,.0f} |",
        f"| for scale: the sandbox alone on the same batches (no MI, no reward) | {sandbox_s:.2f} | "
        f"{1000 * sandbox_s / STEPS:.0f} | {count / sandbox_s:,.0f} |",
        "",
        f"Batched is {single_s / batch_s:.1f}x faster (the two batched runs: {first_s:.2f} s and {second_s:.2f} s). "
        "The rest of a batched reward call is the MI of each passing sample, twice (as written and without "
        "comments), in the calling process.",
        "",
    ]
    publish(OUT, lines)


if __name__ == "__main__":
    main()
