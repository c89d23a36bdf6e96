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


VERBS = [_verb_prepare, _verb_mi]


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
