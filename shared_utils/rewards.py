"""Rewards for online refinement with GRPO (beyond the paper), chosen by name.

``REWARDS`` holds every reward a recipe may choose, as open-r1's ``get_reward_funcs`` does: the
recipe's ``grpo.reward.functions`` maps names to weights (``{correctness: 1.0, maintainability:
0.5}``), ``Judge.reward_functions`` makes one TRL reward function of each, and their weights,
normalised to sum 1, become ``GRPOConfig.reward_weights``, so each reward and their weighted sum
lie in [0, 1]. **Adding a reward** is one function here, registered with ``@reward("name")``
(it takes a ``Sample`` and the ``RewardSettings`` and returns a float, clipped to [0, 1]), and
one line under ``functions`` in a recipe.

**One gate for every reward.** ``Judge`` turns a step's completions into ``Sample``s once, for
all the reward functions TRL calls in turn. It takes the code out of each answer exactly as the
evaluation the recipe trains for does (``reward.scoring``, a ``scoring.SCORINGS`` name: its
extraction, its globals, its set-up code; by default ``corrected``, the evaluation's own), then
rejects, in this order:

- ``truncated``: generation reached ``max_completion_length`` without an end-of-sequence token,
  or the answer opens a code fence it never closes (``reward.reject_truncated``, on by default:
  the evaluation would score the cut code, so the policy must learn that running out costs);
- ``format``: the extracted code is empty or does not compile (with the paper's extraction,
  prose before or after the code, or a second block, makes the evaluation fail it too);
- ``obfuscated``: the code builds or reaches code or names through strings or reflection
  (``obfuscation.dynamic_code``: ``exec``, ``eval``, ``compile``, ``__import__``, ``getattr`` by a
  literal name ...), which radon cannot measure and no MBPP reference needs.

A rejected sample earns 0 from every reward, registered now or later, and never reaches the
sandbox. The others run in one ``sandbox.check_many`` for the whole batch, so every step's
samples run in parallel in the sandbox's warm workers, and their verdicts are what the rewards
read. Rewards depend only on the completion and its problem, never raise on whatever text a
model writes, and are the same for the same completion. A sandbox that cannot build its walls
still raises ``SandboxUnavailable``: training on zeros would hide it.

**Per step** (TRL's ``log_metric``, next to its own ``rewards/<name>/mean``): the share of all
completions rejected for each reason (``rejected/truncated``, ``rejected/format``,
``rejected/obfuscated``), ``code/correctness``, ``code/maintainability``, ``code/pass_rate``,
``code/crash_or_timeout``, and over the passing samples ``mi/written`` (radon's MI as written),
``mi/scored`` (what ``maintainability`` rewards), ``mi/guard_gain`` (their difference: rising
over training says the policy learns to game MI rather than to simplify) and radon's MI
components. The completions table (``log_extra``) gets each sample's rejection.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Sequence

from shared_utils.extraction import extract_code
from shared_utils.maintainability import ONE_OPERATION_VOLUME, score
from shared_utils.obfuscation import dynamic_code, normal_form
from shared_utils.prompts import answer_text
from shared_utils.protocol import resolve
from shared_utils.scoring import SCORINGS

CORRECTNESS_MODES = ("fraction", "all")
REJECTIONS = ("truncated", "format", "obfuscated")
MI_COMPONENTS = ("halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines")
REWARDS: dict[str, Callable] = {}


def reward(name: str):
    """Register a reward function ``(sample, settings) -> float`` under ``name`` (module docstring)."""

    def register(function: Callable) -> Callable:
        REWARDS[name] = function
        return function

    return register


@dataclasses.dataclass(frozen=True)
class RewardSettings:
    """How samples are judged and rewarded; a recipe's ``grpo.reward`` section holds these keys."""

    functions: dict = dataclasses.field(default_factory=lambda: {"correctness": 1.0, "maintainability": 0.5})
    correctness: str = "fraction"  # fraction of asserts passed | all: 1 only when every assert passes
    scoring: str = "corrected"  # the evaluation trained for (scoring.SCORINGS): extraction, globals, set-up code
    mi_guard: bool = True  # MI of obfuscation.normal_form with a one-operation volume floor; False: radon's as written
    reject_truncated: bool = True  # truncated answers earn nothing
    timeout: float = 5.0  # seconds per assert, as the paper's checks
    isolation: str | None = None  # the sandbox's isolation; None: sandbox.isolation_mode()

    def __post_init__(self):
        if not isinstance(self.functions, dict) or not self.functions:
            raise ValueError(f"reward.functions must map reward names to weights, got {self.functions!r}")
        unknown = [name for name in self.functions if name not in REWARDS]
        if unknown:
            raise ValueError(f"reward.functions: unknown reward(s) {unknown}; registered: {', '.join(REWARDS)}")
        weights = list(self.functions.values())
        if not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"reward.functions: weights must be numbers >= 0 with a positive sum, got {self.functions}")
        if self.correctness not in CORRECTNESS_MODES:
            raise ValueError(f"reward.correctness must be one of {CORRECTNESS_MODES}, got {self.correctness!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"reward.scoring must be one of {tuple(SCORINGS)}, got {self.scoring!r}")
        if not self.timeout > 0:
            raise ValueError(f"reward.timeout must be positive, got {self.timeout}")

    def weights(self) -> list[float]:
        """``functions``' weights in order, normalised to sum 1 (``GRPOConfig.reward_weights``)."""
        total = sum(self.functions.values())
        return [weight / total for weight in self.functions.values()]

    def total(self, sample: "Sample") -> float:
        """The reward GRPO optimises for ``sample``: TRL's weighted sum of the chosen rewards."""
        return sum(weight * value(name, sample, self) for name, weight in zip(self.functions, self.weights()))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One completion as every reward sees it: the code, the gate's verdict, the sandbox's, the MI."""

    code: str  # taken out of the answer as the evaluation does
    tests: tuple = ()
    rejected: str = ""  # one of REJECTIONS: every reward is 0
    reason: str = ""  # what the gate found
    status: str = "rejected"  # the sandbox's status for the samples it ran
    asserts_passed: int = 0
    passed: bool = False  # every assert passed
    mi: float = math.nan  # radon's MI as written (passing code only)
    mi_scored: float = math.nan  # the MI ``maintainability`` rewards (passing code only)
    components: dict = dataclasses.field(default_factory=dict)  # radon's MI components as written


def value(name: str, sample: Sample, settings: RewardSettings) -> float:
    """Reward ``name`` of ``sample``: 0 when the gate rejected it, whatever the reward; else in [0, 1]."""
    if sample.rejected:
        return 0.0
    return min(max(float(REWARDS[name](sample, settings)), 0.0), 1.0)


@reward("correctness")
def correctness(sample: Sample, settings: RewardSettings) -> float:
    """The share of the problem's asserts the code passes in the sandbox (``correctness: all``: 1 only when
    all pass). A crash, a syntax error or a timeout passes none; a problem without asserts earns nothing.

    Cannot be bought by what the sandbox's verdicts withstand (its threat model in the README: an
    always-equal object, exiting early, patching the checker, reading expected values) nor by
    hiding the code in strings (the gate)."""
    if settings.correctness == "all" or not sample.tests:
        return float(sample.passed)
    return sample.asserts_passed / len(sample.tests)


@reward("maintainability")
def maintainability(sample: Sample, settings: RewardSettings) -> float:
    """MI / 100 of code that passes every assert (wrong but tidy code earns nothing).

    With ``mi_guard`` (the default) MI is radon's formula on ``obfuscation.normal_form``, charged at
    least one binary operation's Halstead volume. Cannot be bought by comments, docstrings or bare
    strings (removed; radon gives up to 50 points for them), by cramming statements onto one line
    (laid out one per line), by writing operators as calls (``operator.add``, ``a.__add__(b)``,
    ``np.multiply``, ``sum((a, b))``: measured as the operators), by removing the last operator
    (radon's jump to 100 at volume 0: the floor), nor by ``exec``/``eval`` strings (the gate). So
    obfuscating a working answer never scores above the honest answer. What it still rewards is
    radon's MI: fewer logical lines, less Halstead volume, fewer branches."""
    return sample.mi_scored / 100.0 if sample.passed and math.isfinite(sample.mi_scored) else 0.0


@reward("format")
def answer_format(sample: Sample, settings: RewardSettings) -> float:
    """1 for an answer the evaluation can read: complete, code that compiles, nothing built from strings.

    Everything it checks is the gate's, so it is 1 for every sample the gate lets through (and 0,
    as every reward, for the others). Useful for a model that must first learn the answer format:
    ``functions: {format: 0.2, ...}``; with weight 0 TRL still logs it (``rewards/format/mean``)."""
    return 1.0


class RewardFunction:
    """One registered reward as TRL calls it; ``__name__`` names its metrics (``rewards/<name>/mean``)."""

    def __init__(self, name: str, judge: "Judge"):
        self.__name__ = name
        self.judge = judge

    def __call__(self, completions: Sequence, test_list: Sequence, test_setup_code: Sequence | None = None,
                 completion_ids: Sequence | None = None, log_metric: Callable | None = None,
                 log_extra: Callable | None = None, **_) -> list[float]:
        samples = self.judge.samples(completions, test_list, test_setup_code, completion_ids, log_metric=log_metric,
                                     log_extra=log_extra)
        return [value(self.__name__, sample, self.judge.settings) for sample in samples]


class Judge:
    """Turns a batch of completions into ``Sample``s once: the gate, one sandbox batch, the MI of passing code.

    ``max_completion_length`` and ``eos_token_ids`` tell a truncated completion from its token ids
    (TRL's ``completion_ids``: cut after the first end-of-sequence token); the GRPO trainer sets
    them from its own config and its ``eos_token_ids``.
    """

    def __init__(self, settings: RewardSettings | None = None, *, max_completion_length: int | None = None,
                 eos_token_ids: Sequence[int] = (), check_many: Callable | None = None):
        from shared_utils import sandbox

        self.settings = settings or RewardSettings()
        self.max_completion_length = max_completion_length
        self.eos_token_ids = tuple(eos_token_ids)
        self._check_many = check_many or sandbox.check_many
        self._scoring = SCORINGS[self.settings.scoring]
        self._protocol = resolve(self._scoring.protocol)
        self._last: tuple = (None, [])

    def reward_functions(self) -> list[RewardFunction]:
        """The recipe's rewards as TRL reward functions, in ``functions`` order, sharing this judge."""
        return [RewardFunction(name, self) for name in self.settings.functions]

    def samples(self, completions: Sequence, test_list: Sequence, test_setup_code: Sequence | None = None,
                completion_ids: Sequence | None = None, *, log_metric: Callable | None = None,
                log_extra: Callable | None = None) -> list[Sample]:
        """Every completion's ``Sample``, in order. TRL hands each reward function the same ``completions``
        list of a step, so the batch is judged (and its metrics logged) on the first call only."""
        if completions is self._last[0]:
            return self._last[1]
        ids = completion_ids if completion_ids is not None else [None] * len(completions)
        setups = test_setup_code if test_setup_code is not None else [""] * len(completions)
        gated = [self._gate(answer_text(completion), token_ids, _strings(tests))
                 for completion, token_ids, tests in zip(completions, ids, test_list, strict=True)]
        runnable = [(index, sample, setup if isinstance(setup, str) and self._protocol.run_setup else "")
                    for index, (sample, setup) in enumerate(zip(gated, setups, strict=True)) if not sample.rejected]
        outcomes = self._check_many([(sample.code, list(sample.tests), setup) for _, sample, setup in runnable],
                                    timeout=self.settings.timeout, progress=False, isolation=self.settings.isolation,
                                    namespace=self._protocol.namespace) if runnable else []
        samples = list(gated)
        for (index, sample, _), outcome in zip(runnable, outcomes, strict=True):
            samples[index] = self._judged(sample, outcome)
        self._last = (completions, samples)
        if log_metric is not None:
            for name, number in summary(samples, self.settings).items():
                log_metric(name, number)
        if log_extra is not None:
            log_extra("rejected", [f"{s.rejected}: {s.reason}" if s.rejected else "" for s in samples])
        return samples

    def _gate(self, text: str, token_ids, tests: tuple) -> Sample:
        """The sample before the sandbox: its code, and why it is rejected, if it is."""
        code = extract_code(text, self._scoring.extract)
        if self.settings.reject_truncated:
            if self._ran_out(token_ids):
                return Sample(code, tests, "truncated", f"{len(token_ids)} tokens without an end-of-sequence token")
            if text.count("```") % 2:
                return Sample(code, tests, "truncated", "a code fence is opened and never closed")
        problem = _compile_error(code)
        if problem:
            return Sample(code, tests, "format", problem)
        found = dynamic_code(code)
        if found:
            return Sample(code, tests, "obfuscated", found)
        return Sample(code, tests, status="")

    def _ran_out(self, token_ids) -> bool:
        if token_ids is None or not self.max_completion_length or len(token_ids) < self.max_completion_length:
            return False
        return not self.eos_token_ids or token_ids[-1] not in self.eos_token_ids

    def _judged(self, sample: Sample, outcome) -> Sample:
        passed = bool(sample.tests) and outcome.passed
        fields = dict(status=outcome.status, passed=passed,
                      asserts_passed=sum(result.status == "passed" for result in outcome.results))
        if passed:
            written = score(sample.code)
            scored = score(normal_form(sample.code), volume_floor=ONE_OPERATION_VOLUME) if self.settings.mi_guard \
                else written
            fields.update(mi=written.mi, mi_scored=scored.mi,
                          components={name: float(getattr(written, name)) for name in MI_COMPONENTS})
        return dataclasses.replace(sample, **fields)


def summary(samples: list[Sample], settings: RewardSettings) -> dict[str, float]:
    """The step's metrics (module docstring): rejection shares and component means over all samples, MI and its
    parts over the passing ones."""
    if not samples:
        return {}
    metrics = {f"rejected/{reason}": _mean(float(s.rejected == reason) for s in samples) for reason in REJECTIONS}
    metrics.update({
        "code/correctness": _mean(value("correctness", s, settings) for s in samples),
        "code/maintainability": _mean(value("maintainability", s, settings) for s in samples),
        "code/pass_rate": _mean(float(s.passed) for s in samples),
        "code/crash_or_timeout": _mean(float(s.status in ("error", "timeout", "crashed")) for s in samples),
    })
    passing = [s for s in samples if s.passed and math.isfinite(s.mi) and math.isfinite(s.mi_scored)]
    if passing:
        metrics["mi/written"] = _mean(s.mi for s in passing)
        metrics["mi/scored"] = _mean(s.mi_scored for s in passing)
        metrics["mi/guard_gain"] = metrics["mi/written"] - metrics["mi/scored"]
        for name in MI_COMPONENTS:
            metrics[f"mi/{name}"] = _mean(s.components[name] for s in passing)
    return metrics


def _compile_error(code: str) -> str:
    """Why ``code`` is not a Python module the evaluation could run, or ``""``; nothing is executed."""
    if not code.strip():
        return "no code"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, "<answer>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return f"does not compile: {type(exc).__name__}"
    return ""


def _strings(tests) -> tuple:
    """A problem's asserts as strings; anything else is no asserts (and earns nothing)."""
    if isinstance(tests, (list, tuple)) and all(isinstance(test, str) for test in tests):
        return tuple(tests)
    return ()


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
