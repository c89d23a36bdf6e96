"""Where every artifact lives: one object per model that every stage, the evaluation and the runner ask.

The paper's names, defined here and nowhere else:

- Stage 1 (``GlobalLayout``, shared by the models of one problem set): the preprocessed splits,
  the global pairs and their labelled, DPO-ready form;
- Stage 1 adapter: ``<prefix>-dpo-<E>-epochs``;
- self-tuning iteration k (Stage 2a + 2c): the local dataset
  ``further_dpo_dataset_<slug>_<E>_epochs`` and the adapter
  ``<prefix>-dpo-<E>-epochs-further-<E2>-epochs``, both with an ``-iteration-<k>`` suffix
  (``_iteration_<k>`` for the dataset) from the second iteration on. Iteration 1 starts from the
  Stage-1 adapter, iteration k > 1 from iteration k-1's;
- GRPO (beyond the paper): the adapter ``<prefix>-grpo``, refined online from the adapter its
  recipe's ``grpo.start`` names (its card records which);
- evaluation: one variant per adapter (``base``, ``dpo``, ``dpo-further``,
  ``dpo-further-iteration-<k>``, ``grpo``), raw completions and scores per run and benchmark, one
  comparison file per benchmark.

Those names say where a stage *writes*. What a stage *reads* comes from the record of what was
written (``manifest.Manifest``, ``manifest.json`` in the global, the model's and the evaluation's
folders): the latest artifact of each role, whatever settings named its folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared_utils import paths
from shared_utils.manifest import Manifest
from shared_utils.models import ModelSpec

GLOBAL_PAIRS_NAME = "mbpp_custom_dataset_with_correct_gemini_pairs"
GLOBAL_DPO_NAME = "mbpp_custom_dataset_with_correct_gemini_pairs_dpo_ready_with_messages"
TRAIN_NAME = "mbpp_preprocessed_dataset"
TEST_NAME = "mbpp_test_with_signatures"
BASE, STAGE1, FURTHER, GRPO = "base", "dpo", "dpo-further", "grpo"
LOCAL_PAIRS, EVALUATION_RUN = "local-pairs", "evaluation-run"  # the manifest's roles besides the adapters'
# The global folder's roles: the preprocessed splits, the global pairs and their labelled, DPO-ready form.
TRAIN_PROBLEMS, TEST_PROBLEMS, GLOBAL_PAIRS, LABELLED_PAIRS = ("train-problems", "test-problems", "global-pairs",
                                                               "labelled-pairs")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the pipeline under its one name (the runner's ``--stages``, the recipe's section of the DPO
    stages): the templates of its notebooks and the role of what it writes in the manifest."""

    name: str
    templates: tuple[str, ...]
    writes: str | None = None  # None: the global datasets, shared by the models of a problem set
    paper: bool = True  # part of the paper's pipeline (``--stages all``)


STAGES = {stage.name: stage for stage in (
    Stage("global", ("global_1_dataset_preprocessing", "global_2_generate_global_pairs",
                     "global_3_automated_global_dataset_labelling")),
    Stage("stage1", ("model_1_dpo",), STAGE1),
    Stage("stage2a", ("model_2_dpo_local_dataset_self_generation",), LOCAL_PAIRS),
    Stage("stage2c", ("model_3_dpo_further",), FURTHER),
    Stage("grpo", ("model_4_grpo",), GRPO, paper=False),
    Stage("evaluation", ("evaluate",), EVALUATION_RUN),
)}
RENAMED = {"global_pairs": "global", "eval": "evaluation"}  # earlier names of stages and recipe sections, refused
DPO_STAGES = tuple(name for name, stage in STAGES.items() if stage.writes in (STAGE1, FURTHER))  # trained with DPO
BENCHMARKS = ("mbpp", "humaneval")


@dataclasses.dataclass(frozen=True)
class GlobalLayout:
    """Stage 1's folder for one problem set: what the three global notebooks read and write."""

    folder: Path

    @classmethod
    def for_problem_set(cls, problem_set: str, folder: str | Path | None = None) -> "GlobalLayout":
        return cls(Path(folder) if folder else paths.global_dir(problem_set))

    @property
    def train_problems(self) -> Path:
        return self.folder / TRAIN_NAME

    @property
    def test_problems(self) -> Path:
        return self.folder / TEST_NAME

    @property
    def pairs(self) -> Path:
        return self.folder / GLOBAL_PAIRS_NAME

    @property
    def pair_counts(self) -> Path:
        return self.folder / "global_pairs_counts.json"

    @property
    def dataset(self) -> Path:
        """The labelled, DPO-ready global pairs Stage 1 trains on."""
        return self.folder / GLOBAL_DPO_NAME

    @property
    def pair_requests(self) -> Path:
        """State of the remote pair requests (batch job name, answers), so a restart resumes them."""
        return self.folder / "pair_requests"

    @property
    def generation_checkpoint(self) -> Path:
        """Samples of the ``local`` pair generator, so a restart resumes them."""
        return self.folder / "global_generation.ckpt.jsonl"

    @property
    def labelled(self) -> Path:
        """The labelled pairs Stage 1 trains on, as the global folder's record names them."""
        return self.recorded(LABELLED_PAIRS)

    @property
    def manifest(self) -> Manifest:
        """The record of the splits and pairs written into the global folder."""
        return Manifest(self.folder)

    def recorded(self, role: str) -> Path:
        """The latest artifact of a role the global folder's manifest records (``LABELLED_PAIRS``, ...)."""
        return recorded(self.manifest, role)


@dataclasses.dataclass(frozen=True)
class ArtifactLayout:
    """Every path of one model: its Stage-1 data, its adapters and datasets per iteration, its evaluation."""

    spec: ModelSpec
    global_: GlobalLayout
    model_dir: Path
    evaluation_dir: Path
    epochs: int
    further_epochs: int
    seed: int = 0  # the training seed's index (recipe key training_seeds): 0 writes the paper's names, k > 0 "-seed-k"

    @classmethod
    def for_model(cls, spec: ModelSpec, *, problem_set: str, epochs: int, further_epochs: int | None = None,
                  global_dir: str | Path | None = None, model_dir: str | Path | None = None,
                  evaluation_dir: str | Path | None = None) -> "ArtifactLayout":
        """The repository's folders unless overridden (headless runs put artifacts elsewhere).

        ``recipes.Recipe.layout`` fills in the problem set and the epochs from a model's recipe.
        """
        return cls(spec=spec, global_=GlobalLayout.for_problem_set(problem_set, global_dir),
                   model_dir=Path(model_dir or paths.model_dir(spec.name)),
                   evaluation_dir=Path(evaluation_dir or paths.evaluation_dir(spec.name)),
                   epochs=int(epochs), further_epochs=int(further_epochs or epochs))

    @property
    def manifest(self) -> Manifest:
        """The record of the adapters and local datasets written into the model's folder."""
        return Manifest(self.model_dir)

    @property
    def evaluation_manifest(self) -> Manifest:
        return Manifest(self.evaluation_dir)

    def with_seed(self, seed: int) -> "ArtifactLayout":
        """The same layout for training seed ``seed``: its own adapters and local datasets, its own evaluation runs."""
        if seed < 0:
            raise ValueError(f"a training seed's index is 0 or more, got {seed}")
        return dataclasses.replace(self, seed=int(seed))

    def recorded(self, role: str, iteration: int | None = None) -> Path:
        """The latest artifact of a role the manifest records for the layout's training seed (``STAGE1``,
        ``FURTHER`` with its iteration, ...)."""
        return recorded(self.manifest, role, iteration, self.seed)

    def has(self, role: str, iteration: int | None = None) -> bool:
        return self.manifest.latest(role, iteration, self.seed) is not None

    # ---------------------------------------------------------------- where each stage writes
    @property
    def stage1_adapter(self) -> Path:
        return self.model_dir / f"{self.spec.adapter_prefix}-dpo-{self.epochs}-epochs{self._seed('-')}"

    def _seed(self, separator: str) -> str:
        return f"{separator}seed{separator}{self.seed}" if self.seed else ""

    def further_adapter(self, iteration: int = 1) -> Path:
        _check_iteration(iteration)
        return self.stage1_adapter.with_name(
            f"{self.stage1_adapter.name}-further-{self.further_epochs}-epochs{_suffix(iteration, '-')}")

    def local_dataset(self, iteration: int = 1) -> Path:
        _check_iteration(iteration)
        return self.model_dir / (f"further_dpo_dataset_{self.spec.slug}_{self.epochs}_epochs{_suffix(iteration, '_')}"
                                 f"{self._seed('_')}")

    def generation_checkpoint(self, iteration: int = 1) -> Path:
        """Stage 2a's samples of iteration k, so an interrupted run resumes."""
        dataset = self.local_dataset(iteration)
        return dataset.with_name(dataset.name + ".generation.jsonl")

    @property
    def grpo_adapter(self) -> Path:
        return self.model_dir / f"{self.spec.adapter_prefix}-grpo{self._seed('-')}"

    # ---------------------------------------------------------------- what each stage reads (the record)
    def start_adapter(self, iteration: int = 1) -> Path:
        """The adapter iteration k continues: the recorded Stage-1 adapter for k = 1, else iteration k-1's."""
        _check_iteration(iteration)
        return self.recorded(STAGE1) if iteration == 1 else self.recorded(FURTHER, iteration - 1)

    def iterations(self) -> list[int]:
        """The self-tuning iterations whose adapter is recorded, in order (1, 2, ...)."""
        found, iteration = [], 1
        while self.has(FURTHER, iteration):
            found.append(iteration)
            iteration += 1
        return found

    def grpo_start(self, start: str) -> Path | None:
        """The adapter GRPO refines: the latest self-tuning iteration's (``dpo-further``), Stage 1's
        (``dpo``), or None (``base``: a fresh LoRA)."""
        if start == BASE:
            return None
        if start == STAGE1:
            return self.recorded(STAGE1)
        if start == FURTHER:
            return self.recorded(FURTHER, max(self.iterations(), default=1))
        raise ValueError(f"unknown GRPO start {start!r}; expected {FURTHER}, {STAGE1} or {BASE}")

    # ---------------------------------------------------------------- evaluation
    def variants(self) -> list[str]:
        """The variants that can be evaluated now: the base always, each adapter once it is recorded."""
        found = [BASE] + ([STAGE1] if self.has(STAGE1) else [])
        found += [further_variant(iteration) for iteration in self.iterations()]
        return found + ([GRPO] if self.has(GRPO) else [])

    def adapter(self, variant: str) -> Path | None:
        """The recorded adapter a variant loads (None for the base weights)."""
        if variant == BASE:
            return None
        if variant in (STAGE1, GRPO):
            return self.recorded(variant)
        return self.recorded(FURTHER, _variant_iteration(variant))

    def run_stem(self, variant: str, run: int, benchmark: str = "mbpp") -> Path:
        """``<slug>_<variant>_model_output_run_<i>`` (HumanEval's prefixed; a training seed k > 0's adapter
        ``<variant>_seed_<k>``): completions, scores, summaries."""
        _check_benchmark(benchmark)
        prefix = "" if benchmark == "mbpp" else f"{benchmark}_"
        seed = self._seed("_") if variant != BASE else ""
        return self.evaluation_dir / f"{prefix}{self.spec.slug}_{variant}{seed}_model_output_run_{run}"

    def comparison(self, benchmark: str = "mbpp") -> Path:
        _check_benchmark(benchmark)
        prefix = "" if benchmark == "mbpp" else f"{benchmark}_"
        return self.evaluation_dir / f"{prefix}{self.spec.slug}_comparison.json"


def recorded(manifest: Manifest, role: str, iteration: int | None = None, seed: int = 0) -> Path:
    """The latest current artifact of a role in a folder's record; none stops the run, naming the stage to run."""
    entry = manifest.latest(role, iteration, seed)
    if entry is None:
        what = role + (f" (iteration {iteration})" if iteration else "") + (f" (training seed {seed})" if seed else "")
        raise FileNotFoundError(f"{manifest.file}: no {what} recorded, or only one made from what was since "
                                "replaced; run the stage that makes it first")
    return entry.path


def further_variant(iteration: int) -> str:
    """The evaluation variant of a self-tuning iteration's adapter."""
    return FURTHER + _suffix(iteration, "-")


def _variant_iteration(variant: str) -> int:
    if variant == FURTHER:
        return 1
    prefix = FURTHER + "-iteration-"
    if variant.startswith(prefix) and variant[len(prefix):].isdigit() and int(variant[len(prefix):]) > 1:
        return int(variant[len(prefix):])
    raise ValueError(f"unknown variant {variant!r}; expected {BASE}, {STAGE1}, {FURTHER}, {prefix}<k> (k > 1) "
                     f"or {GRPO}")


def _suffix(iteration: int, separator: str) -> str:
    return "" if iteration == 1 else f"{separator}iteration{separator}{iteration}"


def _check_iteration(iteration: int) -> None:
    if iteration < 1:
        raise ValueError(f"iteration must be 1 or more, got {iteration}")


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
