"""``python -m shared_utils VERB``: the same functions the notebooks call, headless.

Each verb is registered by a small ``_verb_*`` function that declares its arguments and
imports its implementation lazily, so ``--help`` and light verbs stay fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from shared_utils.generation import COMPLETION_BACKENDS, PAIR_BACKENDS
from shared_utils.inputs import GROUPS
from shared_utils.models import DEFAULT_MODEL
from shared_utils.protocol import NAMES as PROTOCOL_NAMES
from shared_utils.recipes import TRAINING_STAGES
from shared_utils.runner import STAGES
from shared_utils.scoring import SCORINGS
from shared_utils.training.config import GRPO_STARTS


def _protocol_arguments(parser) -> None:
    """``--protocol`` and ``--switch``: the same two options on every verb the protocol changes."""
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default=None,
                        help="paper: the authors' code byte for byte; corrected: this repository's (the default, "
                             "or the recipe's)")
    parser.add_argument("--switch", action="append", metavar="NAME=VALUE",
                        help="one protocol difference on its own, e.g. training_format=as_published (repeatable)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--n -3`` would write an empty file, ``--limit -2``
    would slice from the end)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def writable(text: str) -> Path:
    """An argparse type: an output path that can be written, checked before any work starts.

    The path itself may not exist yet; its nearest existing ancestor must be a folder this user can write to.
    """
    path = Path(text)
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if existing != path and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: cannot be created, {existing} is a file, not a folder")
    folder = existing if existing.is_dir() else existing.parent
    if not os.access(existing, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: {existing} is not writable by this user")
    return path


def model_name(text: str) -> str:
    """An argparse type: a registered model, a folder or an ``owner/name`` hub id (typos get a suggestion)."""
    from shared_utils.recipes import check_name

    try:
        check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _protocol(args):
    """The protocol the flags ask for, or None when they ask nothing (the recipe's or the input's applies)."""
    from shared_utils.protocol import parse_overrides, resolve

    switches = parse_overrides(args.switch)
    return resolve(args.protocol, **switches) if args.protocol or switches else None


def _protocol_overlay(args) -> dict:
    """The flags as a recipe overlay (the recipe's protocol section is laid over, key by key)."""
    from shared_utils.protocol import parse_overrides

    section = {"name": args.protocol} if args.protocol else {}
    if args.switch:
        section["switches"] = parse_overrides(args.switch)
    return {"protocol": section} if section else {}


def _verb_prepare(sub) -> None:
    parser = sub.add_parser("prepare", help="preprocess MBPP as the paper (train: class filter + signature)")
    parser.add_argument("--source", default="mbpp",
                        help="folder of <split>.jsonl files, or a hub dataset id (default: mbpp, read from the local "
                             "data folder's mbpp/ when it holds the splits, else from the hub)")
    parser.add_argument("--out", type=writable, required=True, help="folder for the two saved datasets")
    _protocol_arguments(parser)

    def run(args) -> int:
        from shared_utils import data

        for split, path in data.prepare(args.source, args.out, _protocol(args)).items():
            print(f"{split}: {path}")
        return 0

    parser.set_defaults(run=run)


def _verb_mi(sub) -> None:
    parser = sub.add_parser("mi", help="Maintainability Index and its components for Python files")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON object per file")

    def run(args) -> int:
        from shared_utils.maintainability import score

        status = 0
        for file in args.files:
            try:
                code = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                print(f"{file}: not UTF-8 text", file=sys.stderr)
                status = 2
                continue
            result = score(code)
            if args.json:
                print(json.dumps({"file": str(file), **_json_safe(result.as_dict())}, allow_nan=False))
            elif result.scorable:
                print(f"{file}: MI {result.mi:.2f}  halstead_volume {result.halstead_volume:.1f}  "
                      f"cyclomatic {result.cyclomatic_complexity:.0f}  sloc {result.sloc}  comments {result.comment_lines}")
            else:
                print(f"{file}: {result.error}")
        return status

    parser.set_defaults(run=run)


def _json_safe(record: dict) -> dict:
    """NaN (what cannot be scored) as JSON's null: ``NaN`` is not JSON, and strict parsers refuse it."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in record.items()}


def _verb_global_pairs(sub) -> None:
    parser = sub.add_parser("global-pairs", help="Stage 1a+b: two implementations per problem; keep those where both pass")
    parser.add_argument("--backend", choices=PAIR_BACKENDS, default="replay")
    parser.add_argument("--responses", type=Path, help="replay: JSON lines of {task_id, code_output_1, code_output_2} "
                                                       "(default: the authors' Gemini answers in the local data folder)")
    parser.add_argument("--problems", type=Path, required=True, help="the output folder of `prepare`")
    parser.add_argument("--out", type=writable, required=True)
    parser.add_argument("--generator", default="gemini-2.5-pro",
                        help="gemini/openai: the model asked; local: a registry model or folder")
    parser.add_argument("--recipe", help="local: the registry model whose recipe sizes the sampling "
                                         "(default: --generator when registered, else the paper's settings)")
    parser.add_argument("--limit", type=positive_int, help="only the first N training problems")
    _protocol_arguments(parser)

    def run(args) -> int:
        from shared_utils import recipes, stages
        from shared_utils.layout import GlobalLayout

        if args.backend == "local":  # a model to load, not a remote model's name
            recipes.check_name(args.generator)
        recipe = recipes.load(args.recipe or (args.generator if recipes.model_spec(args.generator, required=False)
                                              else None),
                              {"global": {"limit": args.limit}} if args.limit else {}, _protocol_overlay(args))
        pairs = stages.global_pairs(GlobalLayout(args.out), recipe, backend=args.backend, generator=args.generator,
                                    responses=args.responses, problems=GlobalLayout(args.problems).train_problems)
        print(json.dumps(pairs.counts.__dict__))
        print(f"{len(pairs.rows)} pairs -> {pairs.saved}")
        return 0

    parser.set_defaults(run=run)


def _verb_label(sub) -> None:
    parser = sub.add_parser("label", help="Stage 1c: higher MI is chosen; writes the DPO-ready dataset")
    parser.add_argument("--pairs", type=Path, required=True, help="the global pairs dataset, or the folder holding it")
    parser.add_argument("--out", type=writable, required=True)
    _protocol_arguments(parser)

    def run(args) -> int:
        from shared_utils import preferences, stages
        from shared_utils.layout import GlobalLayout

        in_folder = GlobalLayout(args.pairs).pairs
        rows, saved = stages.label(in_folder if in_folder.is_dir() else args.pairs, GlobalLayout(args.out),
                                   _protocol(args))
        print(preferences.summary_frame(rows).round(2).to_string())
        print(f"{len(rows)} labelled pairs -> {saved}")
        return 0

    parser.set_defaults(run=run)


def _verb_evaluate(sub) -> None:
    parser = sub.add_parser("evaluate", help="score a completions file (the paper's JSON format)")
    parser.add_argument("--completions", type=Path, required=True)
    parser.add_argument("--problems", type=Path, required=True, help="JSONL, JSON list or saved dataset folder")
    parser.add_argument("--scoring", default=None, help="comma-separated, of " + ",".join(SCORINGS)
                        + " (default: all, side by side; 5 s per assert)")
    parser.add_argument("--protocol", choices=PROTOCOL_NAMES, default=None,
                        help="only the scorings of one protocol (paper: exactly the published numbers)")
    parser.add_argument("--k", default="1,5,10", help="comma-separated k for pass@k")
    parser.add_argument("--json", action="store_true", help="print one JSON object: {scoring: summary}")
    parser.add_argument("--out", type=writable, help="also save the per-sample Parquet and summary JSON here")
    parser.add_argument("--baseline", type=Path, help="a completions file of the same problems to compare against: "
                                                      "paired differences with 95%% intervals and Holm verdicts")

    def run(args) -> int:
        from shared_utils.scoring import evaluate_file

        ks = [int(k) for k in args.k.split(",") if k.strip()]
        chosen = args.scoring or ([name for name, how in SCORINGS.items() if how.protocol == args.protocol]
                                  if args.protocol else None)
        summaries = evaluate_file(args.completions, args.problems, scoring=chosen, ks=ks, out=args.out,
                                  baseline=args.baseline, progress=not args.json)
        if args.json:
            print(json.dumps(summaries))
            return 0
        rows = ["tasks", "candidates", "passed_candidates", "solved_tasks", "avg_mi"]
        print(f"{'':18s}" + "".join(f"{name:>12s}" for name in summaries))
        for key in rows:
            print(f"{key:18s}" + "".join(f"{summary[key]:>12.4g}" for summary in summaries.values()))
        for k in next(iter(summaries.values()))["pass_at_k"]:
            print(f"{'pass@' + str(k):18s}" + "".join(f"{s['pass_at_k'][k]:>12.4f}" for s in summaries.values()))
        print("95% intervals (tasks resampled):")
        for metric in next(iter(summaries.values()))["intervals"]:
            print(f"{'  ' + metric:18s}" + "".join(f"{'[%.3g, %.3g]' % tuple(s['intervals'][metric]):>18s}"
                                                  for s in summaries.values()))
        for name, summary in summaries.items():
            for metric, row in summary.get("versus_baseline", {}).items():
                print(f"{name} vs baseline, {metric}: {row['diff']:+.4g} [{row['low']:+.4g}, {row['high']:+.4g}] "
                      f"{row['verdict']} (Holm over this scoring's {len(summary['versus_baseline'])} metrics)"
                      + (f"; {row['note']}" if row["note"] else ""))
        return 0

    parser.set_defaults(run=run)


def _verb_paper_outputs(sub) -> None:
    parser = sub.add_parser("paper-outputs", help="re-score the authors' 50 published completion files under paper and "
                                                  "corrected: their table, paired comparisons, protocol differences")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of the published files (default: published/ in the local data folder)")
    parser.add_argument("--out", type=writable, default=None, help="results folder (default: results/paper-outputs)")
    parser.add_argument("--no-reuse", action="store_true",
                        help="run every candidate (default: each distinct program once per task and protocol, its "
                             "verdict reused for its copies)")
    parser.add_argument("--workers", type=positive_int, default=None, help="sandbox workers (default: 4 per core)")
    parser.add_argument("--update-readme", action="store_true",
                        help="rewrite the README's section on the paper's outputs from the results")

    def run(args) -> int:
        from shared_utils import paper_outputs

        results = paper_outputs.run(args.data, args.out or paper_outputs.RESULTS_DIR, reuse=not args.no_reuse,
                                    workers=args.workers)
        print(paper_outputs.summary_text(results))
        if args.update_readme:
            print(f"updated {paper_outputs.update_readme(args.out or paper_outputs.RESULTS_DIR)}")
        return 1 if len(paper_outputs.mismatches(results)) else 0

    parser.set_defaults(run=run)


def _verb_download_data(sub) -> None:
    parser = sub.add_parser("download-data", help="fetch the authors' files (Gemini answers, published outputs) into "
                                                  "the data folder and check their sizes and sha256")
    parser.add_argument("--what", default=",".join(GROUPS), help="comma-separated, of " + ",".join(GROUPS))
    parser.add_argument("--to", type=writable, default=None, help="default: the local data folder that is read "
                                                                     "($SHARED_DATA_DIR, ../shared/data), else .cache/data")
    parser.add_argument("--url", default=None, help="the address the files are under (default: inputs.AUTHORS_BASE_URL)")
    parser.add_argument("--check", action="store_true", help="fetch nothing; check the local copies")

    def run(args) -> int:
        from shared_utils import inputs

        groups = [name.strip() for name in args.what.split(",") if name.strip()]
        unknown = [name for name in groups if name not in GROUPS]
        if unknown or not groups:
            raise ValueError(f"--what {args.what!r}: expected some of {', '.join(GROUPS)}")
        if not args.check:
            inputs.download(groups, args.to, base_url=args.url)
        problems = {path: problem for path, problem in inputs.status(groups, args.to).items() if problem}
        for path, problem in problems.items():
            print(f"{path}: {problem}")
        print(f"{len(problems)} of {len(inputs.status(groups, args.to))} file(s) missing or different")
        return 1 if problems else 0

    parser.set_defaults(run=run)


def _verb_render_notebooks(sub) -> None:
    parser = sub.add_parser("render-notebooks", help="render every notebook from its template")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any notebook is stale")

    def run(args) -> int:
        from shared_utils.notebooks import render_all

        stale = render_all(check=args.check)
        for path in stale:
            print(("stale: " if args.check else "wrote: ") + str(path))
        return 1 if args.check and stale else 0

    parser.set_defaults(run=run)


def _verb_run(sub) -> None:
    parser = sub.add_parser("run", help="execute a model's notebooks headless, stage by stage")
    parser.add_argument("--model", type=model_name, default=DEFAULT_MODEL)
    parser.add_argument("--stages", default="all", help="comma-separated: " + ",".join(STAGES)
                        + " (all: every stage but grpo, which goes beyond the paper)")
    parser.add_argument("--smoke", action="store_true", help="a handful of problems and one training step")
    parser.add_argument("--model-path", help="load these weights instead (e.g. a tiny look-alike)")
    parser.add_argument("--mbpp-source", default="mbpp", help="hub id or folder of MBPP JSONL splits")
    parser.add_argument("--responses", help="global pairs by replay of saved generator responses (JSON lines)")
    parser.add_argument("--runs-dir", type=writable, help="where executed notebooks go (default: runs/<model>/<time>)")
    _protocol_arguments(parser)

    def run(args) -> int:
        from shared_utils.protocol import parse_overrides
        from shared_utils.runner import RunOptions, run_pipeline

        _protocol(args)  # an unknown switch or value is refused here, not in the first notebook that reads it
        options = RunOptions(model=args.model, stages=args.stages, smoke=args.smoke, model_path=args.model_path,
                             mbpp_source=args.mbpp_source, responses=args.responses, runs_dir=args.runs_dir,
                             protocol=args.protocol, switches=parse_overrides(args.switch))
        options.stage_list()  # an unknown or renamed stage is refused before the first notebook
        return run_pipeline(options)

    parser.set_defaults(run=run)


def _verb_study(sub) -> None:
    parser = sub.add_parser("study", help="the CPU study of the whole method on smollm2-135m (resources/recipes/"
                                          "study.yaml): every stage, the ablation, GRPO, one evaluation; resumable")
    parser.add_argument("--smoke", action="store_true", help="a handful of problems and one training step per stage")
    parser.add_argument("--work", type=writable, help="artifacts and executed notebooks (default: runs/cpu-study, "
                                                      "runs/cpu-study-smoke with --smoke)")
    parser.add_argument("--out", type=writable, help="the record and the report (default: results/cpu-study; "
                                                     "with --smoke: <work>/results)")
    parser.add_argument("--compare", type=Path, metavar="RERUN", help="run nothing: compare a second run's results "
                        "folder with --out's, writing reproduction.md and .csv into --out")

    def run(args) -> int:
        from shared_utils.study import RESULTS_DIR, run_study

        if args.compare:
            from shared_utils.study_report import write_reproduction

            written = write_reproduction(Path(args.out or RESULTS_DIR), args.compare)
            print(written.read_text(), end="")
            return 0
        return run_study(smoke=args.smoke, work=args.work, out=args.out)

    parser.set_defaults(run=run)


def _model_arguments(parser) -> None:
    """What locates a model's recipe and artifacts: the same for every per-model verb."""
    parser.add_argument("--model", type=model_name, required=True,
                        help="registry name (its recipe and folders are used), or a hub "
                                                       "id / folder (the paper's settings; give the paths)")
    parser.add_argument("--recipe", help="recipe file (default: 2_Fine_Tuning_Process/<model>/recipe.yaml)")
    parser.add_argument("--model-path", help="load these weights instead (e.g. a tiny look-alike)")
    parser.add_argument("--global-dir", type=Path, help="Stage 1's folder (default: the problem set's)")
    parser.add_argument("--model-dir", type=writable, help="adapters and local datasets (default: the model's folder)")


def _dpo_stage_arguments(parser) -> None:
    """What the DPO-side verbs (``train``, ``self-generate``) add: the iteration and the protocol."""
    parser.add_argument("--iteration", type=positive_int, default=1, help="self-tuning iteration (Stage 2a/2c)")
    _protocol_arguments(parser)


def _verb_train(sub) -> None:
    parser = sub.add_parser(
        "train", help="DPO + LoRA fine-tune: Stage 1, or Stage 2c with --stage stage2c; every TRL DPOConfig field is "
                      "a flag (e.g. --beta 0.05); multi-GPU: accelerate launch -m shared_utils train ...",
        epilog="Any other --flag is a TRL DPOConfig field laid over the recipe's training section.")
    _model_arguments(parser)
    _dpo_stage_arguments(parser)
    parser.add_argument("--stage", choices=TRAINING_STAGES, default="stage1")
    parser.add_argument("--dataset", type=Path, help="preference dataset (with --out: paths given by hand; default: "
                                                     "what the model's manifest records for the stage)")
    parser.add_argument("--out", type=writable, help="adapter folder (with --dataset: paths given by hand; default: "
                                                     "the layout's for the stage)")
    parser.add_argument("--init-adapter", type=Path, help="Stage 2c by hand: the adapter to continue")
    parser.add_argument("--overwrite", action="store_true", help="train again even if an adapter made with other "
                                                                 "settings is there")
    parser.add_argument("--lora", action="append", metavar="FIELD=VALUE",
                        help="a PEFT LoraConfig field over the recipe's, value in YAML (repeatable): --lora r=32 "
                             "--lora 'target_modules=[q_proj, v_proj]'")

    def run(args, trl_flags: list[str]) -> int:
        from shared_utils import recipes, stages
        from shared_utils.training import train_dpo

        registered = recipes.model_spec(args.model, required=False) is not None
        stage = {"training": dpo_flags(trl_flags), "lora": lora_flags(args.lora)}
        recipe = recipes.load(args.model if registered else None, {args.stage: stage}, _protocol_overlay(args),
                              recipe=args.recipe)
        stage1 = args.stage == "stage1"
        by_hand = args.dataset is not None or args.out is not None or args.init_adapter is not None
        if registered and not by_hand:  # the stage's own inputs and output, as its notebook finds them
            layout = recipe.layout(global_dir=args.global_dir, model_dir=args.model_dir)
            result = (stages.train_stage1(recipe, layout, model=args.model_path, overwrite=args.overwrite) if stage1
                      else stages.train_stage2(recipe, layout, args.iteration, model=args.model_path,
                                               overwrite=args.overwrite))
            if result is None:
                raise FileNotFoundError(f"{layout.manifest.file}: no local pairs recorded for iteration "
                                        f"{args.iteration}; run self-generate first")
        elif args.dataset is None or args.out is None or (not stage1 and args.init_adapter is None):
            raise ValueError("paths given by hand need --dataset and --out" + ("" if stage1 else " and --init-adapter")
                             + ("" if registered else f" ({args.model} is not a registry model, so it has no folders)"))
        else:
            result = train_dpo(args.model_path or recipe.model or args.model, args.dataset, args.out,
                               settings=recipe.training(args.stage), init_adapter=args.init_adapter,
                               overwrite=args.overwrite)
        print(f"adapter: {result.adapter_dir}")
        print(json.dumps(result.metrics, indent=1, default=str))
        return 0

    parser.set_defaults(run=run, takes_unknown=True)


def dpo_flags(argv: list[str]) -> dict:
    """The DPOConfig fields given on the command line (``--beta 0.05``), parsed by TRL's own parser."""
    from trl import DPOConfig

    return trl_flags_of(DPOConfig, argv)


def trl_flags_of(config_class, argv: list[str]) -> dict:
    """The fields of a TRL config class given on the command line, parsed by TRL's own parser."""
    import argparse

    from trl import TrlParser

    parser = TrlParser(config_class)
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # only what was given, not every default
        action.required = False
    given, unknown = parser.parse_known_args(argv)
    if unknown:
        raise ValueError(f"unknown option(s) {' '.join(unknown)}: neither this verb's nor a TRL "
                         f"{config_class.__name__} field")
    return vars(given)


def lora_flags(items: list[str] | None) -> dict:
    """``--lora FIELD=VALUE`` flags as a mapping, each value read as YAML; ``LoraConfig`` checks them
    with the rest of the recipe (a misspelt field fails there, naming the recipe layers)."""
    import yaml

    fields = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--lora {item!r}: expected FIELD=VALUE, e.g. --lora r=32")
        fields[name.strip()] = yaml.safe_load(value)
    return fields


def _verb_grpo(sub) -> None:
    parser = sub.add_parser(
        "grpo", help="beyond the paper: refine an adapter online with GRPO, rewarded by the sandbox and MI; every TRL "
                     "GRPOConfig field is a flag (e.g. --num_generations 4)",
        epilog="Any other --flag is a TRL GRPOConfig field laid over the recipe's grpo.training section.")
    _model_arguments(parser)
    parser.add_argument("--start", choices=GRPO_STARTS, help="the adapter refined (default: the recipe's grpo.start)")
    parser.add_argument("--overwrite", action="store_true", help="retrain even if the adapter is complete")

    def run(args, trl_flags: list[str]) -> int:
        from trl import GRPOConfig

        from shared_utils import recipes, stages

        overlay = {"training": trl_flags_of(GRPOConfig, trl_flags), **({"start": args.start} if args.start else {})}
        recipe = recipes.load(args.model, {"grpo": overlay}, recipe=args.recipe)
        layout = recipe.layout(global_dir=args.global_dir, model_dir=args.model_dir)
        result = stages.train_grpo(recipe, layout, model=args.model_path, overwrite=args.overwrite)
        print(f"adapter: {result.adapter_dir}")
        print(json.dumps(result.metrics, indent=1, default=str))
        return 0

    parser.set_defaults(run=run, takes_unknown=True)


def _verb_self_generate(sub) -> None:
    parser = sub.add_parser("self-generate", help="Stage 2a: the iteration's starting adapter builds its own pairs")
    _model_arguments(parser)
    _dpo_stage_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="make the local pairs again even if a dataset made "
                                                                 "with other settings is there")

    def run(args) -> int:
        from shared_utils import recipes, stages

        recipe = recipes.load(args.model, _protocol_overlay(args), recipe=args.recipe)
        layout = recipe.layout(global_dir=args.global_dir, model_dir=args.model_dir)
        local = stages.self_generate(recipe, layout, args.iteration, model=args.model_path, overwrite=args.overwrite)
        print(local.rounds.to_string(index=False))
        print(f"{len(local.rows)} local pairs from {len(local.problems)} prompts -> {local.dataset or 'nothing saved'}")
        return 0

    parser.set_defaults(run=run)


def _verb_inspect(sub) -> None:
    parser = sub.add_parser("inspect", help="a trained adapter's card, size and per-layer LoRA update norms")
    parser.add_argument("adapter", type=Path)

    def run(args) -> int:
        from shared_utils import adapters

        print(adapters.summary(adapters.inspect(args.adapter)))
        return 0

    parser.set_defaults(run=run)


def _verb_generate(sub) -> None:
    parser = sub.add_parser("generate", help="sample completions for problems (resumable) into the paper's output format")
    parser.add_argument("--model", required=True, help="registry name, hub id or folder (openai: served model name)")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder")
    parser.add_argument("--backend", default="auto", choices=COMPLETION_BACKENDS,
                        help="Gemini's pair batch jobs: the global-pairs verb")
    parser.add_argument("--problems", type=Path, required=True,
                        help="saved dataset folder, .jsonl or .json; each problem needs task_id and text")
    parser.add_argument("--n", type=positive_int, default=10)
    parser.add_argument("--out", type=writable, required=True, help="paper-format JSON")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None,
                        help="default: the evaluation's in the model's recipe (the paper's 1024 for other models)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the evaluation's in the recipe")
    parser.add_argument("--top-p", type=float, default=None, help="default: the evaluation's in the recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N problems")
    parser.add_argument("--paper-protocol", action="store_true", help="no code-end stop (evaluation protocol)")
    parser.add_argument("--checkpoint", type=writable, default=None, help="default: <out>.ckpt.jsonl")
    parser.add_argument("--source", type=Path, default=None, help="replay: earlier output (.json or .jsonl)")
    parser.add_argument("--base-url", default=None, help="openai: server base URL (else from the environment)")
    parser.add_argument("--served-model", default=None,
                        help="openai: the name the server knows the model or adapter by (vLLM --lora-modules)")
    parser.add_argument("--per-sample", action="store_true",
                        help="openai: one request per sample (chosen by itself when a server ignores n)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="default: the evaluation's in the recipe; the paper's is the model's generation_config "
                             "(local, vllm) or the server's (openai)")

    def run(args) -> int:
        from shared_utils import data, prompts, recipes
        from shared_utils.generation import Request, SamplingConfig, generate, write_paper_format

        if args.backend in ("auto", "local", "vllm"):
            recipes.check_name(args.model)
        checkpoint = args.checkpoint or args.out.with_name(args.out.name + ".ckpt.jsonl")
        args.interrupted = lambda: f"{_saved_samples(checkpoint)} samples saved in {checkpoint}"
        problems = data.load_problems(args.problems, data.PROMPT_FIELDS)[: args.limit]
        registered = recipes.model_spec(args.model, required=False) is not None
        recipe = recipes.load(args.model if registered else None)
        flags = {"samples": args.n, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                 "top_p": args.top_p, "top_k": args.top_k}
        section = {**recipe.section("evaluation"), **{key: value for key, value in flags.items() if value is not None}}
        sampling = SamplingConfig.from_recipe(section, seed=args.seed, stop_at_code_end=not args.paper_protocol,
                                              batch_size=args.batch_size)
        requests = [Request(p["task_id"], prompts.messages(p["text"])) for p in problems]
        options = {}
        if args.backend == "replay":
            options["source"] = args.source or args.model
        if args.backend == "openai":
            options.update(base_url=args.base_url, served_model=args.served_model, per_sample=args.per_sample)
        completions = generate(requests, backend=args.backend, model=args.model, adapter=args.adapter, sampling=sampling,
                               checkpoint=checkpoint, **options)
        write_paper_format(completions, args.out, metadata={
            "model": args.model, "adapter": args.adapter, "backend": args.backend, "sampling": sampling.as_dict(),
            "problems": str(args.problems), "checkpoint": str(checkpoint)})
        print(f"{args.out}: {len(requests)} problems x {args.n} samples")
        return 0

    parser.set_defaults(run=run)


def _saved_samples(checkpoint: Path) -> int:
    from shared_utils.generation import read_checkpoint

    return len(read_checkpoint(checkpoint)) if checkpoint.is_file() else 0


VERBS = [_verb_prepare, _verb_mi, _verb_global_pairs, _verb_label, _verb_evaluate, _verb_paper_outputs,
         _verb_download_data, _verb_render_notebooks, _verb_run, _verb_study, _verb_train, _verb_grpo,
         _verb_self_generate, _verb_inspect, _verb_generate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for register in VERBS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown and not getattr(args, "takes_unknown", False):
        build_parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.run(args, unknown) if getattr(args, "takes_unknown", False) else args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = getattr(args, "interrupted", None)
        print(f"interrupted: {saved() if saved else 'finished steps are kept (generation and trainer checkpoints)'}; "
              f"rerun the same command to resume", file=sys.stderr)
        return 130
