"""GRPO rewards (``shared_utils.rewards``) on constructed completions, through the real sandbox:
correct, partly wrong, crashing and looping code, docstring padding, determinism, bounds, garbage."""

from __future__ import annotations

import math

import pytest

from shared_utils import sandbox
from shared_utils.maintainability import mi_score, without_comments
from shared_utils.rewards import CodeReward, RewardSettings, summary

TESTS = ["assert add_one(1) == 2", "assert add_one(2) == 3", "assert add_one(-1) == 0"]
PASSING = "def add_one(x):\n    return x + 1"
DOCUMENTED = 'def add_one(x):\n    """Return x\n    plus one."""\n    return x + 1  # the answer'
PARTLY_WRONG = "def add_one(x):\n    return abs(x) + 1"  # fails only add_one(-1)
CRASHING = "def add_one(x):\n    raise RuntimeError('no')"
LOOPING = "def add_one(x):\n    while True:\n        pass"


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\nDone."


def chat(code: str) -> list[dict]:
    return [{"role": "assistant", "content": fenced(code)}]


def score(reward: CodeReward, *codes: str, tests=TESTS):
    return reward.score([chat(code) for code in codes], [tests] * len(codes), [""] * len(codes))


@pytest.fixture(scope="module")
def reward():
    return CodeReward(RewardSettings(timeout=1.0))


def test_passing_code_earns_correctness_and_scaled_mi(reward):
    (scored,) = score(reward, PASSING)
    assert scored.passed and scored.correctness == 1.0
    assert scored.maintainability == pytest.approx(mi_score(without_comments(PASSING)) / 100)
    assert scored.reward == pytest.approx((1.0 + 0.5 * scored.maintainability) / 1.5)


def test_failing_code_earns_its_fraction_of_asserts_and_no_maintainability(reward):
    (scored,) = score(reward, PARTLY_WRONG)
    assert not scored.passed and scored.correctness == pytest.approx(2 / 3)
    assert scored.maintainability == 0.0 and math.isnan(scored.mi)
    assert scored.reward == pytest.approx((2 / 3) / 1.5)
    (strict,) = score(CodeReward(RewardSettings(correctness="all", timeout=1.0)), PARTLY_WRONG)
    assert strict.correctness == 0.0 and strict.reward == 0.0


def test_crashing_and_looping_code_earn_nothing():
    reward = CodeReward(RewardSettings(timeout=0.5))
    crashed, looped, broken = score(reward, CRASHING, LOOPING, "def add_one(x) return")
    assert (crashed.status, looped.status, broken.status) == ("error", "timeout", "error")
    assert crashed.reward == looped.reward == broken.reward == 0.0


@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, 0.5), (1.0, 10.0), (0.0, 1.0)])
def test_any_passing_answer_outranks_any_failing_one(weights):
    reward = CodeReward(RewardSettings(correctness_weight=weights[0], maintainability_weight=weights[1], timeout=1.0))
    passing, wrong = score(reward, PASSING + "\n" + "\n".join(f"z{i} = {i} * {i} + {i}" for i in range(40)),
                           PARTLY_WRONG)
    assert passing.reward > wrong.reward


def test_docstrings_and_comments_do_not_raise_the_reward_by_default():
    plain, documented = score(CodeReward(RewardSettings(timeout=1.0)), PASSING, DOCUMENTED)
    assert documented.mi > plain.mi  # radon itself rewards the comment lines ...
    assert documented.maintainability == plain.maintainability  # ... the guarded reward does not
    assert documented.reward == plain.reward
    assert documented.components["comment_lines"] > plain.components["comment_lines"]
    unguarded_plain, unguarded_documented = score(CodeReward(RewardSettings(strip_comments=False, timeout=1.0)),
                                                  PASSING, DOCUMENTED)
    assert unguarded_documented.maintainability > unguarded_plain.maintainability


def test_without_comments_keeps_the_code_and_drops_every_bare_string():
    code = ('def f(x):\n    """doc"""\n    if x:\n        "note"\n    else:\n        "other"\n    # c\n    return x\n'
            'class A:\n    """only a docstring"""\n')
    stripped = without_comments(code)
    assert '"' not in stripped and "#" not in stripped
    namespace = {}
    exec(compile(stripped, "<stripped>", "exec"), namespace)  # still valid Python, same behaviour
    assert namespace["f"](3) == 3
    assert without_comments("def broken(") == "def broken("


def test_rewards_are_deterministic_and_one_sandbox_batch_per_call():
    calls = []

    def counting(jobs, **options):
        calls.append(len(jobs))
        return sandbox.check_many(jobs, **options)

    reward = CodeReward(RewardSettings(timeout=1.0), check_many=counting)
    completions = [chat(code) for code in (PASSING, DOCUMENTED, PARTLY_WRONG, CRASHING)]
    first = reward(completions, test_list=[TESTS] * 4, test_setup_code=[""] * 4)
    second = reward(completions, test_list=[TESTS] * 4, test_setup_code=[""] * 4)
    assert first == second and calls == [4, 4]


def test_garbage_never_raises_and_stays_within_bounds(reward):
    completions = [None, 17, {"content": None}, [{"role": "assistant", "content": ["odd"]}], "\x00\x00",
                   "```python\nimport os\nos._exit(3)\n```", "```python\n" + "(" * 5000 + "\n```", "", "é" * 3000,
                   fenced("def add_one(x):\n    return x + 1")]
    tests = [TESTS, None, "assert True", [1, 2], TESTS, TESTS, TESTS, [], ["assert ("], TESTS]
    setups = [None, "", 3, "", "import sys", "", "", "", "", ""]
    rewards = reward(completions, test_list=tests, test_setup_code=setups)
    assert len(rewards) == len(completions)
    assert all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in rewards)
    assert rewards[-1] > 0.6 and max(rewards[:-1]) == 0.0


def test_component_means_and_mi_parts_reach_the_trainer_metrics(reward):
    logged, extra = {}, {}
    reward([chat(PASSING), chat(DOCUMENTED), chat(CRASHING)], test_list=[TESTS] * 3,
           test_setup_code=[""] * 3, log_metric=logged.__setitem__, log_extra=extra.__setitem__)
    assert logged["code/pass_rate"] == pytest.approx(2 / 3)
    assert logged["code/correctness"] == pytest.approx(2 / 3)
    assert logged["code/crash_or_timeout"] == pytest.approx(1 / 3)
    assert logged["mi/comment_gain"] > 0 and logged["mi/written"] > logged["mi/scored"]
    assert {"mi/halstead_volume", "mi/cyclomatic_complexity", "mi/sloc", "mi/comment_lines"} <= set(logged)
    assert extra["correctness"] == [1.0, 1.0, 0.0]
    assert summary([]) == {}


def test_settings_are_checked():
    for bad in (dict(correctness="some"), dict(extract="regex"), dict(correctness_weight=-1.0),
                dict(correctness_weight=0.0, maintainability_weight=0.0), dict(timeout=0)):
        with pytest.raises(ValueError):
            RewardSettings(**bad)
