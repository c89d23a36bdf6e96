"""``python -m shared_utils VERB``: the same functions the notebooks call, headless.

Each verb is registered by a small ``_verb_*`` function that declares its arguments and
imports its implementation lazily, so ``--help`` and light verbs stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _verb_prepare(sub) -> None:
    parser = sub.add_parser("prepare", help="preprocess MBPP as the paper (train: class filter + signature)")
    parser.add_argument("--source", required=True, help="folder of <split>.jsonl files, or a hub dataset id")
    parser.add_argument("--out", type=Path, required=True, help="folder for the two saved datasets")

    def run(args) -> int:
        from shared_utils import data

        for split, path in data.prepare(args.source, args.out).items():
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
                print(json.dumps({"file": str(file), **result.as_dict()}))
            elif result.scorable:
                print(f"{file}: MI {result.mi:.2f}  halstead_volume {result.halstead_volume:.1f}  "
                      f"cyclomatic {result.cyclomatic_complexity:.0f}  sloc {result.sloc}  comments {result.comment_lines}")
            else:
                print(f"{file}: {result.error}")
        return status

    parser.set_defaults(run=run)


def _verb_global_pairs(sub) -> None:
    parser = sub.add_parser("global-pairs", help="Stage 1b: keep the tasks whose two implementations both pass")
    parser.add_argument("--backend", choices=["replay", "gemini", "openai"], default="replay")
    parser.add_argument("--responses", type=Path, help="replay: JSON lines of {task_id, code_output_1, code_output_2}")
    parser.add_argument("--problems", type=Path, required=True, help="the output folder of `prepare`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--generator", default="gemini-2.5-pro", help="recorded in the dataset's provenance")

    def run(args) -> int:
        from shared_utils import data, generation, preferences
        from shared_utils.layout import GlobalLayout

        problems = data.load_problems(GlobalLayout(args.problems).train_problems)
        out = GlobalLayout(args.out)
        if args.backend == "replay":
            if args.responses is None:
                raise ValueError("--backend replay needs --responses FILE")
            answers = generation.replay_pairs(args.responses)
        else:
            answers = generation.request_pairs(problems, backend=args.backend, model=args.generator,
                                               state_dir=out.pair_requests)
        rows, counts = preferences.check_pair_responses(problems, answers, generator=args.generator)
        saved = preferences.save_pairs(rows, out.pairs, generator=args.generator, backend=args.backend,
                                       counts=counts.__dict__)
        preferences.write_counts(counts, out.pair_counts)
        print(json.dumps(counts.__dict__))
        print(f"{len(rows)} pairs -> {saved}")
        return 0

    parser.set_defaults(run=run)


def _verb_label(sub) -> None:
    parser = sub.add_parser("label", help="Stage 1c: higher MI is chosen; writes the DPO-ready dataset")
    parser.add_argument("--pairs", type=Path, required=True, help="folder holding the global pairs dataset")
    parser.add_argument("--out", type=Path, required=True)

    def run(args) -> int:
        from shared_utils import preferences
        from shared_utils.layout import GlobalLayout

        source = GlobalLayout(args.pairs).pairs
        if not source.is_dir():
            source = args.pairs
        rows = preferences.label_global(preferences.load_rows(source))
        saved = preferences.save_pairs(rows, GlobalLayout(args.out).dataset, source=str(source),
                                       key="radon mi_visit(code, multi=True)")
        print(preferences.summary_frame(rows).round(2).to_string())
        print(f"{len(rows)} labelled pairs -> {saved}")
        return 0

    parser.set_defaults(run=run)


def _verb_evaluate(sub) -> None:
    parser = sub.add_parser("evaluate", help="score a completions file (the paper's JSON format)")
    parser.add_argument("--completions", type=Path, required=True)
    parser.add_argument("--problems", type=Path, required=True, help="JSONL, JSON list or saved dataset folder")
    parser.add_argument("--protocol", choices=["paper"], default="paper", help="5 s per assert, as published")
    parser.add_argument("--extract", choices=["paper", "fenced"], default="paper")
    parser.add_argument("--k", default="1,5,10", help="comma-separated k for pass@k")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also save the per-sample Parquet and summary JSON here")

    def run(args) -> int:
        from shared_utils.evaluation import evaluate_file

        ks = [int(k) for k in args.k.split(",") if k.strip()]
        summary = evaluate_file(args.completions, args.problems, extract=args.extract, ks=ks, out=args.out,
                                progress=not args.json)
        if args.json:
            print(json.dumps(summary))
        else:
            for key in ("tasks", "candidates", "passed_candidates", "solved_tasks", "avg_mi"):
                print(f"{key:18s} {summary[key]}")
            for k, value in summary["pass_at_k"].items():
                print(f"pass@{k:<13} {value:.4f}")
        return 0

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
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--stages", default="all", help="comma-separated: " + ",".join(("global", "stage1", "stage2a", "stage2c", "eval")))
    parser.add_argument("--smoke", action="store_true", help="a handful of problems and one training step")
    parser.add_argument("--model-path", help="load these weights instead (e.g. a tiny look-alike)")
    parser.add_argument("--mbpp-source", default="mbpp", help="hub id or folder of MBPP JSONL splits")
    parser.add_argument("--responses", help="global pairs by replay of saved generator responses (JSON lines)")
    parser.add_argument("--runs-dir", type=Path, help="where executed notebooks go (default: runs/<model>/<time>)")

    def run(args) -> int:
        from shared_utils.runner import RunOptions, run_pipeline

        options = RunOptions(model=args.model, stages=args.stages, smoke=args.smoke, model_path=args.model_path,
                             mbpp_source=args.mbpp_source, responses=args.responses, runs_dir=args.runs_dir)
        return run_pipeline(options)

    parser.set_defaults(run=run)


def _verb_train(sub) -> None:
    parser = sub.add_parser("train", help="DPO + LoRA fine-tune (Stage 1, or Stage 2c with --init-adapter); "
                                          "multi-GPU: accelerate launch -m shared_utils train ...")
    parser.add_argument("--model", required=True, help="registry name, hub id or local folder")
    parser.add_argument("--dataset", type=Path, required=True, help="saved preference dataset (prompt/chosen/rejected)")
    parser.add_argument("--out", type=Path, required=True, help="the adapter folder to write")
    parser.add_argument("--init-adapter", type=Path, help="continue this (Stage-1) adapter")
    parser.add_argument("--reference", choices=("base", "stage1"), default="base")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--beta", type=float)
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument("--max-pairs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--precompute-ref-log-probs", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="retrain even if --out is complete")

    def run(args) -> int:
        from shared_utils.models import find_spec
        from shared_utils.training import DPOArgs, train_dpo

        overrides = {name: getattr(args, name) for name in (
            "epochs", "max_steps", "learning_rate", "beta", "max_length", "batch_size", "grad_accum", "max_pairs",
            "seed", "reference")}
        overrides["precompute_ref_log_probs"] = args.precompute_ref_log_probs or None
        dpo = DPOArgs.for_model(find_spec(args.model), **overrides)
        result = train_dpo(args.model, args.dataset, args.out, init_adapter=args.init_adapter, args=dpo,
                           overwrite=args.overwrite)
        print(f"adapter: {result.adapter_dir}")
        print(json.dumps(result.metrics, indent=1, default=str))
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
    parser.add_argument("--backend", default="auto", choices=["auto", "local", "vllm", "openai", "gemini", "replay"])
    parser.add_argument("--problems", type=Path, required=True, help="saved dataset folder, .jsonl or .json")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True, help="paper-format JSON (gemini: DPOPair JSON lines)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's registry value, else 1024")
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument("--paper-protocol", action="store_true", help="no code-end stop (evaluation protocol)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: <out>.ckpt.jsonl")
    parser.add_argument("--source", type=Path, default=None, help="replay: earlier output (.json or .jsonl)")
    parser.add_argument("--base-url", default=None, help="openai/gemini: server base URL (else from the environment)")

    def run(args) -> int:
        from shared_utils import data, models, prompts
        from shared_utils.generation import Request, SamplingConfig, generate, request_pairs, write_paper_format

        problems = data.load_problems(args.problems)[: args.limit]
        if args.backend == "gemini":
            pairs = request_pairs(problems, backend="gemini", model=args.model, state_dir=args.out.parent / f"{args.out.stem}.state",
                                  **({"base_url": args.base_url} if args.base_url else {}))
            from shared_utils import io

            io.write_text(args.out, "".join(json.dumps({"task_id": p.task_id, "code_output_1": p.code_output_1,
                                                         "code_output_2": p.code_output_2}) + "\n"
                                             for p in pairs.values() if p.ok))
            print(f"{args.out}: {sum(p.ok for p in pairs.values())} valid pairs, {sum(not p.ok for p in pairs.values())} failed")
            return 0
        spec = models.find_spec(args.model)
        max_new = args.max_new_tokens or (spec.max_new_tokens if spec else 1024)
        sampling = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p, max_new_tokens=max_new,
                                  seed=args.seed, stop_at_code_end=not args.paper_protocol, batch_size=args.batch_size)
        quirks = spec.quirks if spec else None
        requests = [Request(p["task_id"], prompts.messages(p["text"], quirks=quirks)) for p in problems]
        options = {}
        if args.backend == "replay":
            options["source"] = args.source or args.model
        if args.base_url:
            options["base_url"] = args.base_url
        checkpoint = args.checkpoint or args.out.with_name(args.out.name + ".ckpt.jsonl")
        completions = generate(requests, backend=args.backend, model=args.model, adapter=args.adapter, sampling=sampling,
                               checkpoint=checkpoint, **options)
        write_paper_format(completions, args.out, metadata={
            "model": args.model, "adapter": args.adapter, "backend": args.backend, "sampling": sampling.as_dict(),
            "problems": str(args.problems), "checkpoint": str(checkpoint)})
        print(f"{args.out}: {len(requests)} problems x {args.n} samples")
        return 0

    parser.set_defaults(run=run)


VERBS = [_verb_prepare, _verb_mi, _verb_global_pairs, _verb_label, _verb_evaluate, _verb_render_notebooks, _verb_run,
         _verb_train, _verb_inspect, _verb_generate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared_utils", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for register in VERBS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
