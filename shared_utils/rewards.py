"""Rewards for online refinement with GRPO (beyond the paper): run every sample's code, reward
correct and maintainable code.

``CodeReward`` is a reward function with the signature TRL's ``GRPOTrainer`` calls:
``completions`` plus the dataset's own columns (``test_list``, ``test_setup_code``) as keyword
lists, one entry per completion, and TRL's ``log_metric`` / ``log_extra`` hooks. One call scores
the whole generation batch through a single ``sandbox.check_many``, so every step's
``num_generations`` samples per prompt run in parallel in the sandbox's warm workers.

Per completion (code extracted from the answer, ``fenced`` by default):

- **correctness** in [0, 1]: the fraction of the problem's asserts that pass (``"fraction"``), or
  1 only when all pass (``"all"``); a crash, a syntax error or a timeout passes no assert;
- **maintainability** in [0, 1]: radon's MI / 100, *only for code that passes every assert*
  (wrong but tidy code earns nothing), and by default scored on the code with its comments and
  docstrings removed (``maintainability.without_comments``), so padding an answer with comments
  cannot raise it;
- **reward** = (w_c * correctness + w_m * maintainability) / (w_c + w_m), in [0, 1]. Whatever
  the weights, a passing answer outranks every failing one: a failing answer has
  maintainability 0 and correctness below 1.

Rewards depend only on the completion and its problem (the sandbox's verdict, radon's MI), never
raise on whatever text a model writes, and their means, with the MI components of the passing
samples, go to the trainer's metrics each step. A sandbox that cannot build its walls still
raises ``SandboxUnavailable``: training on zeros would hide it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

from shared_utils.extraction import MODES, extract_code
from shared_utils.maintainability import score, without_comments

CORRECTNESS_MODES = ("fraction", "all")
MI_COMPONENTS = ("halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines")


@dataclasses.dataclass(frozen=True)
class RewardSettings:
    """How samples are scored; a recipe's ``grpo.reward`` section holds these keys."""

    correctness: str = "fraction"  # fraction of asserts passed | all: 1 only when every assert passes
    correctness_weight: float = 1.0
    maintainability_weight: float = 0.5
    strip_comments: bool = True  # score MI without comments and docstrings (the anti-gaming guard)
    extract: str = "fenced"  # how code is taken from an answer (extraction.MODES)
    timeout: float = 5.0  # seconds per assert, as the paper's checks
    isolation: str | None = None  # the sandbox's isolation; None: sandbox.isolation_mode()

    def __post_init__(self):
        if self.correctness not in CORRECTNESS_MODES:
            raise ValueError(f"reward.correctness must be one of {CORRECTNESS_MODES}, got {self.correctness!r}")
        if self.extract not in MODES:
            raise ValueError(f"reward.extract must be one of {MODES}, got {self.extract!r}")
        weights = (self.correctness_weight, self.maintainability_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"reward weights must be >= 0 with a positive sum, got {weights}")
        if not self.timeout > 0:
            raise ValueError(f"reward.timeout must be positive, got {self.timeout}")


@dataclasses.dataclass(frozen=True)
class Scored:
    """One completion's reward and what it is made of (MI fields NaN unless the code passed)."""

    reward: float
    correctness: float
    maintainability: float
    passed: bool
    status: str
    mi: float = math.nan  # radon's MI of the code as written
    mi_scored: float = math.nan  # the MI the reward used (without comments when strip_comments)
    components: dict = dataclasses.field(default_factory=dict)


class CodeReward:
    """A TRL reward function: sandbox verdicts and MI of every completion, batched (module docstring)."""

    __name__ = "code"  # TRL names the reward's own metrics after it: rewards/code/mean

    def __init__(self, settings: RewardSettings | None = None, *, check_many: Callable | None = None):
        from shared_utils import sandbox

        self.settings = settings or RewardSettings()
        self._check_many = check_many or sandbox.check_many

    def __call__(self, completions: Sequence, test_list: Sequence, test_setup_code: Sequence | None = None,
                 log_metric: Callable | None = None, log_extra: Callable | None = None, **_) -> list[float]:
        scored = self.score(completions, test_list, test_setup_code)
        if log_metric is not None:
            for name, value in summary(scored).items():
                log_metric(name, value)
        if log_extra is not None:
            log_extra("correctness", [s.correctness for s in scored])
            log_extra("maintainability", [s.maintainability for s in scored])
        return [s.reward for s in scored]

    def score(self, completions: Sequence, test_list: Sequence, test_setup_code: Sequence | None = None) -> list[Scored]:
        """Every completion's reward and components, in order; one sandbox batch for all of them."""
        setups = test_setup_code if test_setup_code is not None else [""] * len(completions)
        codes = [extract_code(answer_text(completion), self.settings.extract) for completion in completions]
        tests = [_strings(problem_tests) for problem_tests in test_list]
        jobs = [(code, problem_tests, setup if isinstance(setup, str) else "")
                for code, problem_tests, setup in zip(codes, tests, setups, strict=True)]
        outcomes = self._check_many(jobs, timeout=self.settings.timeout, progress=False,
                                    isolation=self.settings.isolation)
        return [self._scored(code, problem_tests, outcome) for code, problem_tests, outcome in zip(codes, tests, outcomes)]

    def _scored(self, code: str, tests: list[str], outcome) -> Scored:
        settings = self.settings
        passed = bool(tests) and outcome.passed
        if settings.correctness == "all" or not tests:
            correctness = float(passed)
        else:
            correctness = sum(result.status == "passed" for result in outcome.results) / len(tests)
        fields = {}
        maintainability = 0.0
        if passed:
            written = score(code)
            scored = score(without_comments(code)) if settings.strip_comments else written
            if scored.scorable and math.isfinite(scored.mi):
                maintainability = min(max(scored.mi / 100.0, 0.0), 1.0)
            fields = dict(mi=written.mi, mi_scored=scored.mi,
                          components={name: float(getattr(written, name)) for name in MI_COMPONENTS})
        weights = settings.correctness_weight + settings.maintainability_weight
        reward = (settings.correctness_weight * correctness + settings.maintainability_weight * maintainability) / weights
        return Scored(reward=reward, correctness=correctness, maintainability=maintainability, passed=passed,
                      status=outcome.status, **fields)


def summary(scored: list[Scored]) -> dict[str, float]:
    """The step's metrics: component means over all samples; MI and its parts over the passing ones.

    ``mi/comment_gain`` (MI as written minus MI the reward used) rising over training says the
    policy is learning to comment rather than to simplify.
    """
    if not scored:
        return {}
    metrics = {
        "code/correctness": _mean(s.correctness for s in scored),
        "code/maintainability": _mean(s.maintainability for s in scored),
        "code/pass_rate": _mean(float(s.passed) for s in scored),
        "code/crash_or_timeout": _mean(float(s.status in ("error", "timeout", "crashed")) for s in scored),
    }
    passing = [s for s in scored if s.passed and math.isfinite(s.mi) and math.isfinite(s.mi_scored)]
    if passing:
        metrics["mi/written"] = _mean(s.mi for s in passing)
        metrics["mi/scored"] = _mean(s.mi_scored for s in passing)
        metrics["mi/comment_gain"] = metrics["mi/written"] - metrics["mi/scored"]
        for name in MI_COMPONENTS:
            metrics[f"mi/{name}"] = _mean(s.components[name] for s in passing)
    return metrics


def answer_text(completion) -> str:
    """The answer's text: TRL passes a string (standard prompts) or a list of messages (chat prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)):
        return "".join(answer_text(message) for message in completion)
    if isinstance(completion, dict):
        content = completion.get("content", "")
        return content if isinstance(content, str) else answer_text(content)
    return ""


def _strings(tests) -> list[str]:
    """A problem's asserts as a list of strings; anything else is no asserts (and earns nothing)."""
    if isinstance(tests, (list, tuple)) and all(isinstance(test, str) for test in tests):
        return list(tests)
    return []


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
