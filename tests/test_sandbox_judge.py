"""The sandbox's judge: how verdicts are decided from what a candidate's process reports.

Three promises, each tried with the candidates that broke them:
* judging never raises and never loses the batch, whatever a result line holds;
* nothing the candidate runs decides what is expected (literals stay here, the rest comes
  from a reference run without the candidate), and and/or/not are split here;
* tests that are more than one assert (MBPP-style statements, HumanEval's loops) work.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from shared_utils.sandbox import api, check, check_many, plain
from shared_utils.sandbox.asserts import compile_job

FAST = {"timeout": 2.0}
FACT = "def fact(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result\n"
COLLIDING = "[i * (2 ** 61 - 1) + 5 for i in range(1, 25001)]"  # all hash to 5: a set of them is quadratic


def _run(code: str, tests: list[str], setup: str = ""):
    return check(code, tests, setup=setup, **FAST)


def _forge(line: str) -> str:
    """A candidate that writes ``line`` as its first test's result, then leaves."""
    return f"import os\ndef f(x):\n    os.write(3, {line!r}.encode() + b'\\n')\n    os._exit(0)\n"


@pytest.fixture(scope="module")
def mbpp(mbpp_dir) -> dict[int, dict]:
    rows = [json.loads(line) for split in ("train", "test", "validation", "prompt")
            for line in (mbpp_dir / f"{split}.jsonl").open()]
    return {row["task_id"]: row for row in rows}


# --- plain data: bounded decoding, a repr that cannot raise ------------------------------

def test_short_repr_of_an_honest_huge_integer_is_bounded_and_does_not_raise():
    namespace = {}
    exec(FACT, namespace)
    value = namespace["fact"](2000) + 1
    with pytest.raises(ValueError, match="4300"):
        repr(value)
    text = plain.short_repr(value)
    assert text == "<int of about 5736 digits>"
    assert len(plain.short_repr([value] * 1000 + ["x" * 10 ** 6])) <= 300
    assert plain.short_repr({(1, "a"): [1.5, None]}) == "{(1, 'a'): [1.5, None]}"
    assert plain.short_repr(plain.Opaque("\ud800")).encode("utf-8") == b"<opaque \\ud800>"


def test_an_exception_message_with_a_lone_surrogate_still_prints():
    outcome = _run("def f():\n    raise ValueError(chr(0xD800) + ' raised')", ["assert f() == 1"])
    assert (outcome.status, outcome.message) == ("error", "\\ud800 raised")
    outcome.error.encode("utf-8")


def test_decoding_refuses_colliding_hashes_in_linear_time():
    payload = {"s": [plain.encode(value) for value in eval(COLLIDING)]}
    started = time.monotonic()
    with pytest.raises(plain.Unreadable, match="same hash"):
        plain.decode(payload)
    assert time.monotonic() - started < 0.5
    assert plain.decode(plain.encode({-1, -2, (1, 2)})) == {-1, -2, (1, 2)}  # a few honest collisions are fine


def test_decoding_is_bounded_in_depth():
    deep = [1]
    for _ in range(plain.MAX_DEPTH + 5):
        deep = [deep]
    assert plain.encode(deep) == {"o": "too deep"}
    with pytest.raises(plain.Unreadable, match="deeply"):
        plain.decode(json.loads(json.dumps(deep)))
    with pytest.raises(plain.Unreadable):
        plain.loads("[" * 200_000 + "]" * 200_000)  # the C parser's RecursionError


# --- the judge never raises, never loses the batch ---------------------------------------

MALFORMED_LINES = [
    "[" * 200_000 + "]" * 200_000,                       # RecursionError in json.loads
    '{"c":[[0,[{"v":' + "[" * 150 + "]" * 150 + "}]]]}",  # decodes too deep
    '{"c":[[0,[{"v":{"s":[' + ",".join(f'{{"I":"{(i * (2 ** 61 - 1) + 5):x}"}}' for i in range(1, 25001)) + "]}}]]]}",
    '{"c":[[0,[{"v":{"zz":1}}]]]}',                      # unknown tag
    '{"c":[[0,[{"v":1},{"v":2}]]]}',                      # too many values
    '{"c":[[7,[{"v":1}]]]}',                              # no such assert
    '{"c":[[0,[{"e":[{"a":1},[1]]}]]]}',                   # malformed exception
    '{"c":[],"e":["' + "x" * 100_000 + '",' + "[" * 50 + "]" * 50 + "]}",
    '{"c":[]}',                                           # an assert was never reported
    '{"values":[true]}',                                  # the old protocol
    "\udcff\x00 not json",
    '{"c":[[0,[{"v":1}]],[0,[{"v":1}]]]}',                 # the same top-level assert twice
    '{"c":[[0,[{"v":[' + "[]," * (4 << 20) + "[]]}]]]}",     # millions of values: 1 GiB once decoded
]


@pytest.mark.parametrize("line", MALFORMED_LINES, ids=range(len(MALFORMED_LINES)))
def test_any_result_line_is_judged_quickly_and_never_passes(line):
    plan = compile_job(("assert f(1) == 1",), "", "def f(x):\n    return x")
    started = time.monotonic()
    outcome = api._outcome(plan, {"lines": ['{"ready":1}', line], "exit": 0}, None)
    assert time.monotonic() - started < 1.0
    assert outcome.status == "crashed" and outcome.exc_type == "ProtocolViolation", outcome
    assert len(outcome.message) <= api.MESSAGE_CHARS


def test_a_flood_of_reports_is_refused():
    plan = compile_job(("for i in range(3):\n    assert f(i) == i",), "", "def f(x):\n    return x")
    line = '{"c":[' + ",".join(['[0,[{"v":0},{"v":0}]]'] * (api.MAX_REPORTS + 1)) + "]}"
    outcome = api._outcome(plan, {"lines": ['{"ready":1}', line], "exit": 0}, None)
    assert (outcome.status, outcome.message) == ("crashed", "more than 100,000 asserts reported")
    fine = '{"c":[' + ",".join(f'[0,[{{"v":{i}}},{{"v":{i}}}]]' for i in range(3)) + "]}"
    assert api._outcome(plan, {"lines": ['{"ready":1}', fine], "exit": 0}, None).passed


def test_garbage_replies_are_crashes_not_exceptions():
    plan = compile_job(("assert f(1) == 1",), "", "def f(x):\n    return x")
    for reply in ({"lines": None, "exit": -40}, {"lines": ["{}"], "exit": "x"}, {"lines": [7, 8]}, {}):
        assert api._outcome(plan, reply, None).status == "crashed"
    killed = api._outcome(plan, {"lines": ['{"ready":1}'], "exit": -40}, None)  # a real-time signal: no enum name
    assert (killed.status, killed.exc_type, killed.message) == ("crashed", "signal 40", "killed by signal 40")


def test_one_hostile_candidate_per_hazard_leaves_the_rest_of_the_batch_alone():
    good = ("def f(x):\n    return x * 2", ["assert f(2) == 4", "assert f(3) == 6"])
    hostile = [
        (_forge("[" * 200_000 + "]" * 200_000), ["assert f(1) == 1"]),
        (_forge(MALFORMED_LINES[2]), ["assert f(1) == 1"]),
        (FACT + "def f(n):\n    return fact(n) + 1", ["assert f(2000) == 1"]),  # honest, wrong, unprintable
        (f"def f(x):\n    return set({COLLIDING[:-1].replace('25001', '3001')}])", ["assert f(1) == {1}"]),
        (_forge('{"c":[],"e":["' + "x" * 100_000 + '",' + "[" * 50 + "]" * 50 + "]}"), ["assert f(1) == 1"]),
    ]
    jobs = [good] + [job for pair in zip(hostile, [good] * len(hostile)) for job in pair]
    started = time.monotonic()
    outcomes = check_many(jobs, workers=2, progress=False, **FAST)
    assert time.monotonic() - started < 20
    statuses = [o.status for o in outcomes]
    assert statuses[0::2] == ["passed"] * (len(hostile) + 1)
    assert statuses[1::2] == ["crashed", "crashed", "failed", "crashed", "crashed"], outcomes
    assert outcomes[5].message == "got <int of about 5736 digits>"


def test_a_long_candidate_after_a_long_reply_does_not_block_the_worker():
    """Sending a 500 kB candidate while the worker writes a 400 kB reply: neither may wait on the other."""
    long_reply = (_forge("[" * 200_000 + "]" * 200_000), ["assert f(1) == 1"])
    long_code = ("def f(x):\n    return x\n" + "# padding\n" * 50_000, ["assert f(1) == 1"])
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.extend(
        check_many([long_reply, long_code, long_reply, long_code], workers=1, progress=False, **FAST)), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert [o.status for o in outcomes] == ["crashed", "passed", "crashed", "passed"]


# --- nothing the candidate runs decides what is expected ---------------------------------

ALWAYS_EQUAL = ("class Always:\n    def __eq__(self, other):\n        return True\n"
                "    def __ne__(self, other):\n        return False\n    def __bool__(self):\n        return True\n"
                "def f(x):\n    return Always()\n")


def test_boolean_operators_are_split_on_the_trusted_side():
    assert not _run(ALWAYS_EQUAL, ["assert f(1) == 2 and f(2) == 4"]).passed
    assert not _run(ALWAYS_EQUAL, ["assert not (f(1) != 2 or f(2) != 4)"]).passed
    assert _run("def f(x):\n    return 2 * x", ["assert f(1) == 2 and f(2) == 4"]).passed
    assert not _run("def f(x):\n    return 2 * x", ["assert f(1) == 2 and f(2) == 5"]).passed


def test_arithmetic_with_an_expected_value_is_done_on_the_trusted_side():
    # HumanEval's float asserts: the candidate's own __sub__ must not decide the difference.
    zero = ("class Zero(float):\n    def __sub__(self, other):\n        return 0.0\n"
            "def truncate_number(x):\n    return Zero(7)")
    tests = ["assert abs(truncate_number(1.33) - 0.33) < 1e-06"]
    assert _run(zero, tests).status == "failed"
    assert _run("def truncate_number(x):\n    return x % 1.0", tests).passed
    liar = "class Liar:\n    __class__ = list\ndef f(x):\n    return Liar()"  # isinstance() believes __class__
    assert not _run(liar, ["assert isinstance(f(1), list)"]).passed
    assert _run("def f(x):\n    return [x]", ["assert isinstance(f(1), list)"]).passed
    started = time.monotonic()
    huge = _run("def f(x):\n    return 10 ** 9", ["assert 2 ** f(3) == 8"])  # computed here, it would take minutes
    assert (huge.status, huge.exc_type) == ("error", "OverflowError") and time.monotonic() - started < 5


def test_short_circuit_reaches_a_raising_hole_only_when_python_would():
    code = "def f(x):\n    if x == 2:\n        raise KeyError('two')\n    return x"
    assert _run(code, ["assert f(1) == 1 or f(2) == 2"]).passed                   # never reaches f(2)
    assert _run(code, ["assert f(1) == 5 and f(2) == 2"]).status == "failed"      # stops before f(2)
    raised = _run(code, ["assert f(1) == 5 or f(2) == 2"])                       # reaches it
    assert (raised.status, raised.exc_type, raised.message) == ("error", "KeyError", "'two'")


def test_a_rebound_builtin_does_not_change_the_expected_side():
    code = "sorted = lambda x: []\nlen = lambda x: 0\ndef f(x):\n    return []\ndef g(x):\n    return 0"
    assert not _run(code, ["assert f([3, 1, 2]) == sorted([3, 1, 2])"]).passed
    assert not _run(code, ["assert g('abc') == len('abc')"]).passed
    assert not _run("import builtins\nbuiltins.sorted = lambda x: []\ndef f(x):\n    return []",
                    ["assert f([3, 1, 2]) == sorted([3, 1, 2])"]).passed


def test_sys_getsizeof_patched_by_the_candidate_is_not_the_expected_value(mbpp):
    row = mbpp[596]
    assert "sys.getsizeof" in row["test_list"][0]
    assert _run(row["code"], row["test_list"]).passed
    missing = _run(row["code"], ["assert tuple_size(()) == sys.no_such_function(())"])  # raises in the reference run
    assert (missing.status, missing.exc_type) == ("error", "AttributeError")
    for cheat in ("import sys\nsys.getsizeof = lambda x: 0\ndef tuple_size(t):\n    return 0",
                  "import os as sys\nos = sys\nsys.getsizeof = lambda x: 0\ndef tuple_size(t):\n    return 0",
                  "class sys:\n    getsizeof = staticmethod(lambda x: 0)\ndef tuple_size(t):\n    return 0"):
        assert not _run(cheat, row["test_list"]).passed, cheat


def test_a_name_bound_by_the_setup_is_computed_without_the_candidate():
    setup = "expected = [1, 2, 3]\nlimit = len(expected)"
    tests = ["assert f() == expected", "assert g() == limit"]
    assert _run("def f():\n    return [1, 2, 3]\ndef g():\n    return 3", tests, setup).passed
    cheats = ["def f():\n    expected.clear()\n    return []\ndef g():\n    return 0",
              "def f():\n    global expected\n    expected = None\n    return None\ndef g():\n    return 3",
              "import sys\ndef f():\n    sys._getframe(1).f_globals['expected'] = 'x'\n    return 'x'\n"
              "def g():\n    return 3"]
    for cheat in cheats:
        assert not _run(cheat, tests, setup).passed, cheat


def test_frame_walking_finds_no_expected_value():
    # The expected side is a comprehension: its code never reaches the candidate's process.
    walker = ("import sys, types\ndef f(x):\n    frame = sys._getframe(1)\n    while frame:\n"
              "        for const in frame.f_code.co_consts:\n"
              "            if (isinstance(const, types.CodeType) and const.co_name == '<listcomp>'\n"
              "                    and not const.co_freevars):\n"
              "                return types.FunctionType(const, frame.f_globals)(iter(range(x)))\n"
              "        frame = frame.f_back\n    return [] if x == 0 else None")
    tests = ["assert f(4) == [i * i for i in range(4)] and f(0) == []"]
    outcome = _run(walker, tests)
    assert outcome.status == "failed", outcome
    assert _run("def f(x):\n    return [i * i for i in range(x)]", tests).passed


def test_a_tested_function_named_like_a_builtin(mbpp):
    row = mbpp[126]  # def sum(a, b): the only MBPP task whose tested name shadows a builtin
    assert _run(row["code"], row["test_list"]).passed
    assert not _run("def sum(a, b):\n    return 6", row["test_list"]).passed
    assert not _run("def total(a, b):\n    return 6", row["test_list"]).passed  # the builtin sum(10, 15) raises


def test_names_only_the_candidate_provides_are_its_own_however_it_binds_them():
    assert _run("exec('def f(x):\\n    return 2 * x')", ["assert f(2) == 4"]).passed
    assert _run("globals()['f'] = lambda x: x", ["assert f(2) == 4"]).status == "failed"
    assert _run("def g(x):\n    return x", ["assert f(2) == 4"]).exc_type == "NameError"


def test_a_reference_run_only_where_needed_and_once_per_problem(mbpp, monkeypatch):
    tests = ("assert f([3, 1]) == sorted([3, 1])", "assert math.isclose(f(2), 3.0)")
    literal = compile_job(tests, "", "def f(x):\n    return x")
    assert literal.reference is None
    row = mbpp[596]
    runs, original = [], api._reference_values
    monkeypatch.setattr(api, "_reference_values", lambda plan, reply: runs.append(reply) or original(plan, reply))
    wrong = "import sys\ndef tuple_size(t):\n    return 1"
    jobs = [(row["code"], row["test_list"], "")] * 6 + [(wrong, row["test_list"], "")]
    outcomes = check_many(jobs, workers=2, progress=False, **FAST)
    assert [o.passed for o in outcomes] == [True] * 6 + [False]
    assert len(runs) == 1


# --- tests that are more than one assert ---------------------------------------------------

def test_statements_before_an_assert_work_and_stay_the_candidates():
    tests = ["r = f(1)\nassert r == 2", "values = [f(i) for i in range(3)]\nassert values == [0, 2, 4]"]
    assert _run("def f(x):\n    return 2 * x", tests).passed
    assert _run("def f(x):\n    return x", tests).status == "failed"
    assert _run(ALWAYS_EQUAL, tests).exc_type == "UncheckableValue"
    raised = _run("def f(x):\n    raise ValueError('no')", tests)
    assert (raised.status, raised.exc_type) == ("error", "ValueError")


def test_asserts_inside_loops_report_every_time():
    tests = ["for i in range(5):\n    assert f(i) == 2 * i"]
    assert _run("def f(x):\n    return 2 * x", tests).passed
    wrong = _run("def f(x):\n    return 2 * x if x < 3 else 0", tests)
    assert (wrong.status, wrong.message) == ("failed", "got 0, 3")  # f(3) and i as reported; 2 * i is computed here
    assert not _run(ALWAYS_EQUAL, tests).passed
    # HumanEval 44's loop: str(x) is computed here, so rebinding the builtin does not help.
    loop = ["def check_rest(candidate):\n    for x in range(2, 8):\n        assert candidate(x, x + 1) == str(x)\n"
            "check_rest(change_base)"]
    assert _run("def change_base(x, base):\n    return str(x)", loop).passed
    patched = "str = lambda x: 'z'\ndef change_base(x, base):\n    return 'z'"
    assert _run(patched, loop).status == "failed"


def test_asserts_in_a_check_function_of_the_setup_are_split_like_tests():
    setup = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    assert _run("def square(x):\n    return x * x", ["check(square)"], setup).passed
    wrong = _run("def square(x):\n    return x + x", ["check(square)"], setup)
    assert (wrong.status, wrong.message) == ("failed", "got 6")
    assert _run(ALWAYS_EQUAL.replace("def f(", "def square("), ["check(square)"], setup).exc_type == "UncheckableValue"
    plan = compile_job(("check(square)",), setup, "def square(x):\n    return x * x")
    assert "assert" not in plan.setup and "9" not in plan.setup  # the expected values stay here


SILENCER = ("def silence():\n    import sys\n    frame = sys._getframe(1)\n    while frame:\n"
            "        if '__sandbox_report__' in frame.f_globals:\n"
            "            frame.f_globals['__sandbox_report__'] = lambda *args: None\n"
            "        frame = frame.f_back\n")


def test_a_check_function_or_loop_that_reports_nothing_does_not_pass():
    setup = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    quiet = SILENCER + "def square(x):\n    silence()\n    return 0"
    assert not _run(quiet, ["square(0)", "check(square)"], setup).passed
    loop = ["def check_rest(candidate):\n    for x in range(5):\n        assert candidate(x) == x * x\n"
            "check_rest(square)"]
    once = SILENCER + "calls = []\ndef square(x):\n    calls.append(x)\n    if len(calls) > 1:\n        silence()\n"
    outcome = _run(once + "    return x * x if len(calls) < 3 else 0", loop)  # right twice, then silent
    assert (outcome.status, outcome.message) == ("failed", "got 0, 2, 2")  # the report function came back
    assert _run("def square(x):\n    return x * x", loop).passed


def test_every_mbpp_reference_solution_passes(mbpp):
    rows = list(mbpp.values())
    assert len(rows) == 974
    outcomes = check_many([(r["code"], r["test_list"], r["test_setup_code"]) for r in rows], timeout=10.0,
                          progress=False)
    assert [(r["task_id"], o.status, o.message) for r, o in zip(rows, outcomes) if not o.passed] == []
