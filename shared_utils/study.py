"""The CPU study of the whole method on the embedded model (``make study``, ``python -m shared_utils study``).

One pre-registered design (``resources/recipes/study.yaml``) is laid over the model's recipe, and every stage
runs through the runner's notebooks (``runner.run_pipeline``), as ``make demo`` does: the global pairs (the
authors' Gemini answers, replayed), Stage 1, Stage 1 again under the ablation's switches (its own folder, the same
global pairs), Stage 2a, Stage 2c, GRPO, then one evaluation of every variant. Rerunning continues: each stage
reuses what its manifest records with the same identity, generation resumes from its checkpoints and training
from its trainer checkpoints. ``results/cpu-study/record.json`` records the command, commit, library versions,
the resolved recipe, and wall time and load average per stage and attempt; the report (``study_report``) goes
beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import signal
import sys
import time
import uuid
from pathlib import Path

from shared_utils import files, paths, recipes
from shared_utils.layout import BASE, LOCAL_PAIRS, STAGE1
from shared_utils.runner import RunOptions, artifact_layout, run_pipeline, run_recipe
from shared_utils.study_report import duration as _duration

STUDY = recipes.RECIPES / "study.yaml"
WORK_DIR = paths.RUNS_DIR / "cpu-study"  # adapters, datasets, evaluation runs, executed notebooks (git-ignored)
RESULTS_DIR = paths.REPO_ROOT / "results" / "cpu-study"  # what is committed
RECORD = "record.json"  # the runs of the study; the report writes study.json
RUN_MARKER = "study-run.json"  # in the working folder: which record its attempts belong to
# Seconds per unit before this machine has measured any (quiet, 2026-12-05: the full study's Stage 1, 32 s a DPO step
# in bf16 with its probe; a sample of the study's engine timed; a GRPO step of 16 answers taken as half the 225 s timed
# for 32); each kind is replaced by its own measurement as soon as a stage of that kind has run.
FIRST_GUESS = {"replayed pair": 0.1, "DPO step": 32.0, "sample": 0.6, "GRPO step": 115.0}
STOPPING = (signal.SIGTERM, signal.SIGHUP)  # handled as Ctrl-C is


@dataclasses.dataclass(frozen=True)
class Design:
    model: str
    overlay: dict  # laid over the model's recipe, as the runner lays smoke.yaml
    ablation: str  # the ablation's evaluation variant
    switches: dict  # the ablation's protocol switches
    headline: str
    smoke: bool


def design(smoke: bool = False) -> Design:
    """The study's design: ``study.yaml`` without its ``study`` section (the verb's), checked as a recipe overlay.

    ``smoke``: ``smoke.yaml`` laid over it, then the study's own ``smoke`` section (what a handful of problems needs).
    """
    layer = recipes.read_yaml(STUDY)
    study = layer.pop("study")
    if smoke:
        layer = recipes.merge(recipes.merge(layer, recipes.read_yaml(recipes.SMOKE)), study.get("smoke") or {})
    recipes.load(study["model"], layer)  # every key one the recipe takes
    return Design(model=study["model"], overlay=layer, ablation=study["ablation"]["variant"],
                  switches=dict(study["ablation"]["switches"]), headline=study["headline"], smoke=smoke)


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    stage: str  # the runner's stage
    unit: str  # what its time is counted in
    ablation: bool = False


STEPS = (Step("global", "global", "replayed pair"), Step("stage1", "stage1", "DPO step"),
         Step("stage1-ablation", "stage1", "DPO step", ablation=True), Step("stage2a", "stage2a", "sample"),
         Step("stage2c", "stage2c", "DPO step"), Step("grpo", "grpo", "GRPO step"),
         Step("evaluation", "evaluation", "sample"))


class Study:
    """The runs of one design in one working folder, its record in ``out``."""

    def __init__(self, plan: Design, work: Path, out: Path):
        from shared_utils import inputs

        self.design, self.work, self.out = plan, Path(work), Path(out)
        self.responses = str(inputs.gemini_pairs())
        self.rates = dict(FIRST_GUESS)

    def options(self, step: Step, overrides: dict | None = None) -> RunOptions:
        common = dict(model=self.design.model, stages=step.stage, responses=self.responses, stream=True,
                      cell_timeout=6 * 3600, overrides=recipes.merge(self.design.overlay, overrides or {}))
        if step.ablation:
            return RunOptions(**common, artifacts=self.work / "ablation", global_dir=self.work / "artifacts" / "global",
                              switches=self.design.switches, runs_dir=self.work / "notebooks" / "ablation")
        return RunOptions(**common, artifacts=self.work / "artifacts", runs_dir=self.work / "notebooks")

    def layout(self, ablation: bool = False):
        step = next(s for s in STEPS if s.ablation == ablation)
        options = self.options(step)
        return artifact_layout(options, options.runs_dir)

    @property
    def recipe(self):
        return run_recipe(self.options(STEPS[0]))

    def ablation_adapter(self) -> Path | None:
        layout = self.layout(ablation=True)
        return layout.recorded(STAGE1) if layout.has(STAGE1) else None

    def evaluation_overrides(self) -> dict:
        adapter = self.ablation_adapter()
        return {"evaluation": {"adapters": {self.design.ablation: str(adapter)}}} if adapter else {}

    # ---------------------------------------------------------------- what each step is made of (the design's counts)
    def units(self, step: Step) -> int:
        """How many units a step does: replayed pairs, DPO optimizer steps, generated samples, GRPO steps."""
        recipe = self.recipe
        if step.stage == "global":
            return _limited(238, recipe.section("global")["limit"])
        if step.stage in ("stage1", "stage2c"):
            return _dpo_steps(recipe.section(step.stage), self._pairs(step.stage))
        if step.stage == "stage2a":
            section = recipe.section("stage2a")
            return _limited(372, section["limit"]) * section["samples"] * section["rounds"]
        if step.stage == "grpo":
            return recipe.section("grpo")["training"]["max_steps"]
        section = recipe.section("evaluation")
        variants = 5  # base, dpo, the ablation, dpo-further, grpo
        return variants * _limited(500, section["limit"]) * section["runs"] * section["samples"]

    def _pairs(self, stage: str) -> int:
        if stage == "stage1":
            return 238
        layout = self.layout()
        if not layout.has(LOCAL_PAIRS):
            return self.recipe.section("stage2a")["limit"] or 372  # at most one pair per problem
        from shared_utils import preferences

        return len(preferences.load_rows(layout.recorded(LOCAL_PAIRS)))

    def estimate(self, step: Step) -> float:
        return self.units(step) * self.rates[step.unit]

    # ---------------------------------------------------------------- the run
    def run(self, command: str) -> int:
        """Every step in order, each in a child process; 0 when all finished, 130 when Ctrl-C stopped a step, else
        the failed step's status."""
        record = self._start_record(command)
        attempt = record["attempts"][-1]
        finished = self.learn_rates(record["attempts"][:-1])
        started = time.monotonic()
        for index, step in enumerate(STEPS):
            left = sum(self.estimate(later) for later in STEPS[index:] if later.name not in finished)
            units = self.units(step)
            print(f"[study] {step.name}: {units} {step.unit}s, estimated {_duration(self.estimate(step))}; "
                  f"the study has about {_duration(left)} left", flush=True)
            overrides = self.evaluation_overrides() if step.stage == "evaluation" else None
            load_before, step_started, status = os.getloadavg(), time.monotonic(), None
            try:
                with _termination_as_ctrl_c():
                    status = _in_child(self.options(step, overrides))
            except KeyboardInterrupt:
                print(f"[study] {step.name}: stopped (Ctrl-C or a termination signal); finished stages and the "
                      "checkpoints are kept: rerun the same command to continue", flush=True)
                return 130
            finally:  # an interrupted step's time is recorded too: the wall time of the study is every attempt's
                seconds = time.monotonic() - step_started
                attempt["stages"][step.name] = {
                    "seconds": round(seconds, 1), "units": units, "unit": step.unit, "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                    "status": {0: "done", None: "stopped"}.get(status, "failed")}
                files.write_json(self.out / RECORD, record)
            if status != 0:
                print(f"[study] {step.name} failed{_why(status)}; fix it and rerun the same command: finished "
                      "stages are reused", flush=True)
                return status
            if units and step.name not in finished:  # a stage finished before is reused: its time is no rate
                self.rates[step.unit] = seconds / units
            print(f"[study] {step.name} done in {_duration(seconds)}", flush=True)
        attempt["seconds"] = round(time.monotonic() - started, 1)
        record["recipe"] = self.recipe.settings
        files.write_json(self.out / RECORD, record)
        print(f"[study] all stages done in {_duration(attempt['seconds'])}; record: {self.out / RECORD}", flush=True)
        summary = self.report(record)
        print(f"[study] report ({summary['headline']} scoring first): {self.out}", flush=True)
        return 0

    def learn_rates(self, attempts: list[dict]) -> set[str]:
        """The stages earlier attempts finished (this attempt reuses them), each unit's rate taken from where a
        stage of that kind first ran: a stage's later, reusing attempts take seconds and say nothing of its rate."""
        finished: set[str] = set()
        for attempt in attempts:
            for name, stage in attempt["stages"].items():
                if stage["status"] == "done" and name not in finished:
                    finished.add(name)
                    if stage["units"]:
                        self.rates[stage["unit"]] = stage["seconds"] / stage["units"]
        return finished

    def report(self, record: dict) -> dict:
        """``study_report`` of the evaluation into ``out``: the table, samples, figures and training curves; the
        README's results section too when ``out`` is the committed folder."""
        from shared_utils import study_report

        layout = self.layout()
        adapters = {variant: layout.adapter(variant) for variant in layout.variants() if variant != BASE}
        ablation = self.ablation_adapter()
        if ablation is not None:
            adapters[self.design.ablation] = ablation
        summary = study_report.build(layout.evaluation_dir, self.out, recipe=self.recipe.settings,
                                     headline=self.design.headline, timings=self.timings(record), adapters=adapters)
        if self.out.resolve() == RESULTS_DIR.resolve():
            study_report.update_readme(paths.REPO_ROOT / "README.md", self.out)
        return summary

    def _start_record(self, command: str) -> dict:
        """The study's record: the design and, per attempt (a rerun after an interruption is one), its stages."""
        self.out.mkdir(parents=True, exist_ok=True)
        previous, run = self.out / RECORD, self.run_id()
        attempts = []
        if previous.is_file():
            earlier = json.loads(previous.read_text())
            if earlier.get("run") == run:
                attempts = earlier.get("attempts", [])
            else:  # the committed results, or a run whose working folder is gone: its times are not this run's
                print(f"[study] {previous} records another run (working folder {earlier.get('work')}); this run, "
                      f"in {self.work}, starts a record of its own", flush=True)
        recipe = self.recipe
        record = files.provenance(kind="cpu-study", command=command, smoke=self.design.smoke,
                                  design=str(STUDY.relative_to(paths.REPO_ROOT)), layers=list(recipe.layers),
                                  headline=self.design.headline, ablation={self.design.ablation: self.design.switches},
                                  run=run, work=str(self.work), cpus=os.cpu_count(), recipe=recipe.settings)
        record["attempts"] = attempts + [{"started": files.now(), "load_average": os.getloadavg(), "stages": {}}]
        files.write_json(previous, record)
        return record

    def run_id(self) -> str:
        """The identity of the run in ``work``, made with the folder: the record continues only its own run, so a
        fresh clone's study does not count the committed run's attempts (or learn its rates) as its own."""
        marker = self.work / RUN_MARKER
        if not marker.is_file():
            files.write_json(marker, {"run": uuid.uuid4().hex, "started": files.now()})
        return json.loads(marker.read_text())["run"]

    @staticmethod
    def timings(record: dict) -> dict:
        """Wall seconds per stage, summed over the attempts (a stage interrupted and resumed counts both parts)."""
        totals: dict = {}
        for attempt in record["attempts"]:
            for name, stage in attempt["stages"].items():
                totals[name] = round(totals.get(name, 0.0) + stage["seconds"], 1)
        return totals


def run_study(*, smoke: bool = False, work: Path | None = None, out: Path | None = None,
              command: str | None = None) -> int:
    """Run (or continue) the study; 0 when every stage finished."""
    suffix = "-smoke" if smoke else ""
    work = Path(work or paths.RUNS_DIR / f"cpu-study{suffix}")
    out = Path(out or (work / "results" if smoke else RESULTS_DIR))
    study = Study(design(smoke), work, out)
    return study.run(command or " ".join(shlex.quote(arg) for arg in ["python", "-m", "shared_utils", *sys.argv[1:]]))


def _in_child(options: RunOptions) -> int:
    """``run_pipeline(options)`` in a child process; its exit status (0: every notebook ran).

    Ctrl-C is this process's to handle: papermill's kernel runs in a session of its own, and nbclient
    turns SIGINT into a graceful kernel shutdown that a busy training cell could outlast, or that comes
    too early when the signal arrives while the kernel starts (the notebook then ran to its end). Here
    a KeyboardInterrupt stops the child and every process under it (the kernel included), then propagates.
    """
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_run_and_exit, args=(options,))
    child.start()
    try:
        child.join()
    except KeyboardInterrupt:
        _stop_tree(child.pid)
        child.join()
        raise
    return 128 - child.exitcode if child.exitcode < 0 else child.exitcode  # killed by signal N: 128 + N, as a shell


def _why(status: int) -> str:
    """What a step's exit status says beyond failure: a signal killed it (SIGKILL: most often out of memory)."""
    if status <= 128:
        return ""
    try:
        name = signal.Signals(status - 128).name
    except ValueError:
        return ""
    return f" (killed by {name}{': out of memory?' if name == 'SIGKILL' else ''})"


@contextlib.contextmanager
def _termination_as_ctrl_c():
    """SIGTERM and SIGHUP (a ``kill``, a closed terminal) raise KeyboardInterrupt while a step runs, so that they
    too stop the step's child and kernel and mark the step stopped, instead of leaving both running. A signal the
    study was started ignoring (``nohup`` ignores SIGHUP) stays ignored, as Python leaves an ignored SIGINT."""
    previous = {number: signal.getsignal(number) for number in STOPPING}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, signal.default_int_handler)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run_and_exit(options: RunOptions) -> None:
    # A signal to the whole group (Ctrl-C, a closed terminal) reaches this process too: it ignores them, so that
    # it cannot die before its kernel (which would leave the kernel orphaned); the parent stops both. A handler that
    # does nothing, not SIG_IGN: an ignored signal would stay ignored in the kernel and everything it starts.
    for number in (signal.SIGINT, *STOPPING):
        signal.signal(number, _ignore)
    sys.exit(run_pipeline(options))


def _ignore(number, frame) -> None:
    """A signal the parent handles for this process."""


def _stop_tree(pid: int, grace: float = 10.0) -> None:
    """Stop a step's child and all its descendants. Each is first suspended (SIGSTOP), the child before its
    descendants and the tree walked again until nothing new appears, so that nothing starts a process the walk
    missed and the child does not print its kernel's death as an error; then SIGTERM (and SIGCONT, so that it is
    handled) to the descendants, SIGKILL to those still there after ``grace`` seconds, and SIGKILL to the child (it
    ignores the termination signals)."""
    import psutil

    try:
        root = psutil.Process(pid)
        root.suspend()
    except psutil.NoSuchProcess:
        return
    descendants: list = []
    while fresh := [process for process in _children(root) if process not in descendants]:
        for process in fresh:
            _signal(process, "suspend")
        descendants += fresh
    for process in descendants:
        _signal(process, "terminate")
        _signal(process, "resume")
    deadline = time.monotonic() + grace  # not psutil.wait_procs: a zombie its stopped parent cannot reap counts there
    while (alive := [process for process in descendants if _running(process)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for process in alive + [root]:
        _signal(process, "kill")


def _children(process) -> list:
    import psutil

    try:
        return process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(process, action: str) -> None:
    import psutil

    try:
        getattr(process, action)()
    except psutil.NoSuchProcess:
        pass


def _limited(total: int, limit: int | None) -> int:
    return min(total, limit) if limit else total


def _dpo_steps(section: dict, pairs: int) -> int:
    training = section["training"]
    if training.get("max_steps", -1) > 0:
        return training["max_steps"]
    pairs = _limited(pairs, section["max_pairs"])
    batch = training["per_device_train_batch_size"] * training["gradient_accumulation_steps"]
    return math.ceil(pairs / batch) * training["num_train_epochs"]
