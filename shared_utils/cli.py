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


VERBS = [_verb_prepare, _verb_mi, _verb_generate]


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
