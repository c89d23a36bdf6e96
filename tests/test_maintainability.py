"""Maintainability Index (``shared_utils.maintainability``): exactly radon's ``mi_visit(code, multi=True)``
on real MBPP and Gemini code, its components, unparsable code, and the ``mi`` verb."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from radon.metrics import mi_compute, mi_parameters, mi_visit
from radon.raw import analyze

from shared_utils.maintainability import MIResult, mi_score, score
from shared_utils.paths import REPO_ROOT

# Real MBPP reference solutions: one-liners, tabs and CRLF, several defs, a class, imports.
MBPP_TASKS = (602, 603, 630, 645, 601, 927, 974, 11, 12, 17, 100, 510)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mbpp_codes(mbpp_dir) -> dict[int, str]:
    rows = read_jsonl(mbpp_dir / "train.jsonl") + read_jsonl(mbpp_dir / "test.jsonl")
    by_id = {row["task_id"]: row["code"] for row in rows}
    return {task_id: by_id[task_id] for task_id in MBPP_TASKS}


@pytest.fixture(scope="module")
def gemini_codes(gemini_pairs) -> list[str]:
    rows = read_jsonl(gemini_pairs)[:20]
    assert len(rows) == 20
    return [row[name] for row in rows for name in ("code_output_1", "code_output_2")]


def assert_matches_radon(code: str) -> None:
    result = score(code)
    assert result.scorable and result.error == ""
    assert result.mi == mi_visit(code, multi=True)
    assert mi_score(code) == mi_visit(code, multi=True)
    # The components are the ones radon's formula uses: recomputing MI from them gives MI back.
    volume, complexity, lloc, percent = mi_parameters(code, count_multi=True)
    assert result.halstead_volume == pytest.approx(volume)
    assert result.cyclomatic_complexity == complexity
    raw = analyze(code)
    assert result.sloc == raw.sloc
    assert result.comment_lines == raw.comments + raw.multi
    assert mi_compute(result.halstead_volume, result.cyclomatic_complexity, lloc, percent) == pytest.approx(result.mi)


def test_mbpp_reference_solutions_match_radon(mbpp_codes):
    for code in mbpp_codes.values():
        assert_matches_radon(code)


def test_mbpp_values_are_spread_and_in_range(mbpp_codes):
    values = [mi_score(code) for code in mbpp_codes.values()]
    assert all(0.0 <= value <= 100.0 for value in values)
    assert len({round(value, 6) for value in values}) > len(values) // 2


def test_gemini_answers_match_radon(gemini_codes):
    for code in gemini_codes:
        assert_matches_radon(code)


def test_multi_true_counts_docstrings(gemini_codes):
    # The paper's multi=True: docstrings count as comments; Gemini writes many, so the two settings differ.
    differing = [code for code in gemini_codes if mi_visit(code, multi=True) != mi_visit(code, multi=False)]
    assert differing
    for code in differing:
        assert mi_score(code) == mi_visit(code, multi=True)


def test_complexity_of_several_functions_is_radons_total():
    # Two functions with one loop each: radon's MI uses 1 + (2-1) + (2-1) = 3, not 2 + 2.
    code = (
        "def product(values):\n    out = 1\n    for v in values:\n        out *= v\n    return out\n\n"
        "def total(values):\n    out = 0\n    for v in values:\n        out += v\n    return out\n"
    )
    assert score(code).cyclomatic_complexity == 3
    assert_matches_radon(code)


# --------------------------------------------------------------------------------------------
# Unparsable code


@pytest.mark.parametrize("code", [
    "def f(:\n    pass",
    "def f(x):\n    return (x +",  # cut by max tokens
    'x = """never closed',
    "def f():\n\treturn 1\n        return 2",  # tabs and spaces
    "if True:\n  x = 1\n y = 2",
    "print 'python 2'",
    "Here is the code:\ndef f(x):\n    return x",  # prose the paper's extraction keeps
    "\x00",
])
def test_unparsable_code_is_not_scorable_and_never_raises(code):
    result = score(code)
    assert isinstance(result, MIResult)
    assert result.scorable is False
    assert math.isnan(result.mi) and math.isnan(mi_score(code))
    assert math.isnan(result.halstead_volume) and math.isnan(result.cyclomatic_complexity)
    assert result.error.startswith("not scorable")
    assert "Error" in result.error  # names what went wrong


def test_not_scorable_result_serialises():
    record = score("def f(:").as_dict()
    assert record["scorable"] is False and record["error"].startswith("not scorable")
    assert set(record) == {"mi", "halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines", "scorable", "error"}


def test_trivial_code_is_scorable():
    assert score("").mi == 100.0
    assert score("x = 1").scorable and score("x = 1").mi == 100.0


# --------------------------------------------------------------------------------------------
# Comments


PLAIN = "def add(a, b):\n    total = a + b\n    return total\n"
COMMENTED = '''def add(a, b):
    """Add two numbers.

    Returns their sum.
    """
    # plain addition
    total = a + b  # inline
    return total
'''


def test_comments_raise_mi_and_are_counted():
    plain, commented = score(PLAIN), score(COMMENTED)
    assert commented.mi > plain.mi
    # Same code: the gain comes only from comments.
    assert commented.halstead_volume == plain.halstead_volume
    assert commented.cyclomatic_complexity == plain.cyclomatic_complexity
    assert commented.sloc == plain.sloc == 3
    assert plain.comment_lines == 0
    assert commented.comment_lines == 5  # two "#" comments + three docstring lines (radon's count)


def test_comments_raise_mi_on_a_real_solution(mbpp_codes):
    code = mbpp_codes[602].replace("\r\n", "\n")
    documented = (
        code.replace("def first_repeated_char(str1):",
                     'def first_repeated_char(str1):\n  """Return the first character seen twice, else "None"."""\n'
                     "  # walk the prefixes of the string")
    )
    assert score(documented).comment_lines > score(code).comment_lines
    assert mi_score(documented) > mi_score(code)


# --------------------------------------------------------------------------------------------
# The mi verb


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "shared_utils", "mi", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_mi_json_one_object_per_file(tmp_path, mbpp_codes):
    a = tmp_path / "a.py"
    b = tmp_path / "b.py"
    broken = tmp_path / "broken.py"
    a.write_text(PLAIN, encoding="utf-8")
    b.write_text(mbpp_codes[630], encoding="utf-8", newline="")
    broken.write_text("def f(:\n", encoding="utf-8")
    result = run_cli(str(a), str(b), str(broken), "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert [record["file"] for record in records] == [str(a), str(b), str(broken)]
    for record, code in zip(records[:2], (PLAIN, mbpp_codes[630])):
        expected = score(code)
        assert record["mi"] == pytest.approx(expected.mi)
        assert record["mi"] == pytest.approx(mi_visit(code, multi=True))
        assert record["sloc"] == expected.sloc and record["comment_lines"] == expected.comment_lines
        assert record["scorable"] is True
    assert records[2]["scorable"] is False and records[2]["error"].startswith("not scorable")


def test_cli_mi_plain_text(tmp_path):
    a = tmp_path / "a.py"
    a.write_text(COMMENTED, encoding="utf-8")
    result = run_cli(str(a))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{a}: MI {score(COMMENTED).mi:.2f}")


def test_cli_mi_non_utf8_file_exits_2_naming_it(tmp_path):
    good = tmp_path / "good.py"
    good.write_text(PLAIN, encoding="utf-8")
    latin = tmp_path / "latin1.py"
    latin.write_bytes("def caf\u00e9():\n    return '\u00e9t\u00e9'\n".encode("latin-1"))
    result = run_cli(str(good), str(latin), "--json")
    assert result.returncode == 2
    assert str(latin) in result.stderr and "UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
    # The readable file is still reported.
    assert json.loads(result.stdout.strip().splitlines()[0])["file"] == str(good)
