"""GRPO rewards (``shared_utils.rewards``) on constructed completions, through the real sandbox: correct, partly
wrong, crashing and looping code, the gate (truncation, format, the evaluation's extraction), docstring padding,
rewards by name and weight, determinism, bounds, garbage, and the advantages each reward scaling gives."""

from __future__ import annotations

import math
import statistics

import pytest

from shared_utils import recipes, sandbox
from shared_utils.maintainability import ONE_OPERATION_VOLUME, mi_score, score
from shared_utils.obfuscation import normal_form
from shared_utils.rewards import REWARDS, Judge, RewardSettings, Sample, reward, summary, value

TESTS = ["assert add_one(1) == 2", "assert add_one(2) == 3", "assert add_one(-1) == 0"]
PASSING = "def add_one(x):\n    return x + 1"
DOCUMENTED = 'def add_one(x):\n    """Return x\n    plus one."""\n    return x + 1  # the answer'
PARTLY_WRONG = "def add_one(x):\n    return abs(x) + 1"  # fails only add_one(-1)
CRASHING = "def add_one(x):\n    raise RuntimeError('no')"
LOOPING = "def add_one(x):\n    while True:\n        pass"


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def judge_all(settings: RewardSettings, *answers: str, tests=TESTS) -> list[Sample]:
    return Judge(settings).samples([chat(a) for a in answers], [tests] * len(answers), [""] * len(answers))


def judged(settings: RewardSettings, *codes: str, tests=TESTS) -> list[Sample]:
    return judge_all(settings, *(fenced(code) for code in codes), tests=tests)


SETTINGS = RewardSettings(timeout=1.0)


def test_passing_code_earns_correctness_and_guarded_mi():
    (sample,) = judged(SETTINGS, PASSING)
    assert sample.passed and not sample.rejected and value("correctness", sample, SETTINGS) == 1.0
    expected = score(normal_form(PASSING), volume_floor=ONE_OPERATION_VOLUME).mi / 100
    assert value("maintainability", sample, SETTINGS) == pytest.approx(expected)
    assert SETTINGS.total(sample) == pytest.approx((1.0 + 0.5 * expected) / 1.5)


def test_failing_code_earns_its_fraction_of_asserts_and_no_maintainability():
    (sample,) = judged(SETTINGS, PARTLY_WRONG)
    assert not sample.passed and value("correctness", sample, SETTINGS) == pytest.approx(2 / 3)
    assert value("maintainability", sample, SETTINGS) == 0.0 and math.isnan(sample.mi)
    assert SETTINGS.total(sample) == pytest.approx((2 / 3) / 1.5)
    strict = RewardSettings(correctness="all", timeout=1.0)
    assert value("correctness", sample, strict) == 0.0 and strict.total(sample) == 0.0


def test_crashing_looping_and_broken_code_earn_nothing():
    settings = RewardSettings(timeout=0.5)
    crashed, looped, broken = judged(settings, CRASHING, LOOPING, "def add_one(x) return")
    assert (crashed.status, looped.status, broken.rejected) == ("error", "timeout", "format")
    assert settings.total(crashed) == settings.total(looped) == settings.total(broken) == 0.0


def test_the_reward_extracts_code_as_the_evaluation_it_trains_for():
    """Prose after the code: the paper's extraction (the evaluation's default scoring) fails it, so the
    reward rejects it for its format; a recipe training for the fenced scoring accepts it."""
    answer = f"Here it is:\n{fenced(PASSING)}\nIt adds one."
    second_block = f"{fenced(PASSING)}\nUsage:\n{fenced('print(add_one(1))')}"
    evaluation, fenced_scoring = RewardSettings(timeout=1.0), RewardSettings(scoring="fenced", timeout=1.0)
    prose, two_blocks = judge_all(evaluation, answer, second_block)
    assert prose.rejected == two_blocks.rejected == "format" and evaluation.total(prose) == 0.0
    (accepted,) = judge_all(fenced_scoring, answer)
    assert accepted.passed and fenced_scoring.total(accepted) > 0.6
    (bare,) = judge_all(evaluation, PASSING)  # code without fences is what both extractions read
    assert bare.passed


def test_truncated_answers_earn_nothing_from_any_reward():
    settings = RewardSettings(functions={"correctness": 1.0, "maintainability": 0.5, "format": 0.5}, timeout=1.0)
    judge = Judge(settings, max_completion_length=4, eos_token_ids=[0])
    answers = [chat(fenced(PASSING))] * 3 + [chat("```python\n" + PASSING)]
    ids = [[5, 6, 7, 8], [5, 6, 7, 0], [5, 0], [5, 0]]  # cut at the limit | EOS at the limit | short | unclosed fence
    cut, ended, short, unclosed = judge.samples(answers, [TESTS] * 4, [""] * 4, ids)
    assert cut.rejected == unclosed.rejected == "truncated" and not ended.rejected and not short.rejected
    assert all(value(name, s, settings) == 0.0 for name in REWARDS for s in (cut, unclosed))
    assert settings.total(ended) == settings.total(short) > 0.6
    lenient = Judge(RewardSettings(reject_truncated=False, timeout=1.0), max_completion_length=4, eos_token_ids=[0])
    assert lenient.samples(answers[:1], [TESTS], [""], ids[:1])[0].passed


def test_docstrings_and_comments_do_not_raise_the_reward():
    plain, documented = judged(SETTINGS, PASSING, DOCUMENTED)
    assert documented.mi > plain.mi  # radon itself rewards the comment lines ...
    assert documented.mi_scored == plain.mi_scored and SETTINGS.total(documented) == SETTINGS.total(plain)
    assert documented.components["comment_lines"] > plain.components["comment_lines"]
    unguarded = RewardSettings(mi_guard=False, timeout=1.0)  # ... and so does the reward without its guard
    plain, documented = judged(unguarded, PASSING, DOCUMENTED)
    assert value("maintainability", documented, unguarded) > value("maintainability", plain, unguarded)


@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, 0.5), (1.0, 10.0)])
def test_any_passing_answer_outranks_any_failing_one(weights):
    settings = RewardSettings(functions=dict(zip(("correctness", "maintainability"), weights)), timeout=1.0)
    long_passing = PASSING + "\n" + "\n".join(f"z{i} = {i} * {i} + {i}" for i in range(40))
    passing, wrong = judged(settings, long_passing, PARTLY_WRONG)
    assert settings.total(passing) > settings.total(wrong)


def test_rewards_by_name_become_trl_reward_functions_with_normalised_weights():
    settings = RewardSettings(functions={"correctness": 2.0, "format": 1.0, "maintainability": 1.0}, timeout=1.0)
    assert settings.weights() == [0.5, 0.25, 0.25]
    functions = Judge(settings).reward_functions()
    assert [f.__name__ for f in functions] == ["correctness", "format", "maintainability"]
    completions = [chat(fenced(code)) for code in (PASSING, PARTLY_WRONG, "def add_one(x) return")]
    columns = [f(completions, test_list=[TESTS] * 3, test_setup_code=[""] * 3) for f in functions]
    assert columns[0][:2] == [1.0, pytest.approx(2 / 3)] and columns[1] == [1.0, 1.0, 0.0]
    assert columns[2][0] > 0.5 and columns[2][1:] == [0.0, 0.0]


def test_a_reward_added_by_name_is_gated_like_the_others():
    @reward("always_one")
    def always_one(sample, settings):
        return 7.0  # out of range on purpose: every reward is clipped to [0, 1]

    try:
        settings = RewardSettings(functions={"always_one": 1.0}, timeout=1.0)
        kept, obfuscated = judged(settings, PASSING, 'exec("def add_one(x):\\n    return x + 1")')
        assert value("always_one", kept, settings) == 1.0
        assert obfuscated.rejected == "obfuscated" and value("always_one", obfuscated, settings) == 0.0
    finally:
        del REWARDS["always_one"]


def test_one_sandbox_batch_per_step_for_all_reward_functions():
    calls = []

    def counting(jobs, **options):
        calls.append(len(jobs))
        return sandbox.check_many(jobs, **options)

    settings = RewardSettings(functions={"correctness": 1.0, "maintainability": 0.5, "format": 0.1}, timeout=1.0)
    functions = Judge(settings, check_many=counting).reward_functions()
    step = [chat(fenced(code)) for code in (PASSING, DOCUMENTED, PARTLY_WRONG, CRASHING, "def add_one(x) return")]
    first = [f(step, test_list=[TESTS] * 5, test_setup_code=[""] * 5) for f in functions]
    next_step = list(step)  # the same answers again: judged again (and logged), with the same rewards
    again = [f(next_step, test_list=[TESTS] * 5, test_setup_code=[""] * 5) for f in functions]
    assert first == again and calls == [4, 4]  # one batch a step; the rejected answer never runs


def test_garbage_never_raises_and_stays_within_bounds():
    completions = [None, 17, {"content": None}, [{"role": "assistant", "content": ["odd"]}], "\x00\x00",
                   "```python\nimport os\nos._exit(3)\n```", "```python\n" + "(" * 5000 + "\n```", "", "é" * 3000,
                   "```python\n" + "x = 1\n" * 3 + "```" * 3, fenced(PASSING)]
    tests = [TESTS, None, "assert True", [1, 2], TESTS, TESTS, TESTS, [], ["assert ("], TESTS, TESTS]
    setups = [None, "", 3, "", "import sys", "", "", "", "", "", ""]
    (function,) = Judge(RewardSettings(functions={"correctness": 1.0}, timeout=1.0)).reward_functions()
    rewards = function(completions, test_list=tests, test_setup_code=setups)
    assert len(rewards) == len(completions)
    assert all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in rewards)
    assert rewards[-1] == 1.0 and max(rewards[:-1]) == 0.0


def test_rejections_components_and_mi_parts_reach_the_trainer_metrics_each_step():
    logged, extra = {}, {}
    answers = [fenced(PASSING), fenced(DOCUMENTED), fenced(CRASHING), "Sure:\n" + fenced(PASSING) + "\nDone.",
               fenced('add_one = eval("lambda x: x + 1")'), "```python\ndef add_one(x):\n    return x +"]
    Judge(SETTINGS, max_completion_length=64).samples([chat(a) for a in answers], [TESTS] * 6, [""] * 6,
                                                      log_metric=logged.__setitem__, log_extra=extra.__setitem__)
    assert logged["rejected/format"] == logged["rejected/obfuscated"] == logged["rejected/truncated"] == 1 / 6
    assert logged["code/pass_rate"] == pytest.approx(2 / 6) and logged["code/crash_or_timeout"] == pytest.approx(1 / 6)
    assert logged["mi/guard_gain"] > 0 and logged["mi/written"] > logged["mi/scored"]
    assert {"mi/halstead_volume", "mi/cyclomatic_complexity", "mi/sloc", "mi/comment_lines"} <= set(logged)
    assert [row.split(":")[0] for row in extra["rejected"]] == ["", "", "", "format", "obfuscated", "truncated"]
    assert summary([], SETTINGS) == {}


def test_settings_are_checked():
    for bad in (dict(correctness="some"), dict(scoring="regex"), dict(functions={"correctness": -1.0}),
                dict(functions={"correctness": 0.0}), dict(functions={"elegance": 1.0}), dict(functions=[]),
                dict(timeout=0)):
        with pytest.raises(ValueError):
            RewardSettings(**bad)


def _advantages(rewards: list[float], group_size: int, scale: str) -> list[float]:
    """TRL 1.16's advantages (``GRPOTrainer._generate_and_score_completions``, ``sum_then_normalize``): reward
    minus its group's mean, divided by the group's (``group``) or the batch's (``batch``) unbiased std + 1e-4."""
    groups = [rewards[i:i + group_size] for i in range(0, len(rewards), group_size)]
    advantages = []
    for group in groups:
        std = {"group": statistics.stdev(group), "batch": statistics.stdev(rewards), "none": None}[scale]
        advantages += [(r - statistics.mean(group)) / (std + 1e-4 if std is not None else 1.0) for r in group]
    return advantages


def test_the_chosen_reward_scaling_keeps_a_small_mi_difference_small():
    """A group whose answers all pass and differ by 0.01 in MI / 100, next to a group where half fail."""
    settings = RewardSettings()
    passing = [Sample("", tuple(TESTS), status="passed", asserts_passed=3, passed=True, mi=mi, mi_scored=mi)
               for mi in (80.0, 81.0, 80.0, 81.0)]
    failing = Sample("", tuple(TESTS), status="failed", asserts_passed=0)
    rewards = [settings.total(s) for s in passing + passing[:2] + [failing, failing]]
    spread = {scale: [abs(a) for a in _advantages(rewards, 4, scale)] for scale in ("group", "batch", "none")}
    same_mi_group, half_failing = slice(0, 4), slice(4, 8)
    assert max(spread["group"][same_mi_group]) > 0.9 * max(spread["group"][half_failing])  # TRL's default
    for scale in ("batch", "none"):
        assert max(spread[scale][same_mi_group]) < 0.02 * max(spread[scale][half_failing])
    chosen = recipes.load("gemma3-12b").section("grpo")["training"]["scale_rewards"]
    assert chosen == "none" and max(spread[chosen][same_mi_group]) == pytest.approx(0.5 * 0.01 / 1.5 / 2, rel=0.01)


def test_the_volume_floor_removes_radons_jump_at_zero_volume():
    no_operator, one_operator = "def f(x):\n    return abs(x)", "def f(x):\n    return x + 1"
    assert mi_score(no_operator) == 100.0 > mi_score(one_operator)
    floored = [score(code, volume_floor=ONE_OPERATION_VOLUME).mi for code in (no_operator, one_operator)]
    assert floored[0] == pytest.approx(floored[1]) and floored[1] == pytest.approx(mi_score(one_operator))
