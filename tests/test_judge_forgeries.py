"""Adversarial completions against the judge: forged passes, values Python compares exactly, bounds.

A policy trained on the sandbox's verdicts is rewarded for any way to a pass, so each probe
here is a completion that would pass without solving its task if the judge let it.  The
probes were run against the judge before these fixes: comparisons nested in ``all``/``any``/
``sum``/``bool``, displays, subscripts, comprehensions and lambdas passed always-equal objects
and patched builtins; compound statements and check functions passed a profile hook that
rebinds the report function; names the test or set-up binds were read through ``globals()``,
frames and ``gc``; patched ``all``/``len``/``sorted`` and an ``__format__`` decided holes;
numpy scalars, ``Fraction``, ``Decimal``, dates, ``Counter`` and ``deque`` failed correct
answers and a reordered ``OrderedDict`` passed; ``'%*d' % f(0)`` took 5 s and 1 GB of the
judge's memory, ``round(12, f(0))`` did not return, a quadratic ``sum(..., [])`` took 8 s.
The other probes guard neighbouring shapes that already held.  Each test keeps the honest
answer beside the cheat, so it cannot pass by failing everything.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import time
import tracemalloc
from collections import OrderedDict

import pytest

from shared_utils.sandbox import api, asserts, check_many, plain

FAST = {"timeout": 3.0}
ALWAYS = ("class Always(int):\n    def __eq__(self, other):\n        return True\n"
          "    def __ne__(self, other):\n        return False\n    def __bool__(self):\n        return True\n"
          "    __hash__ = int.__hash__\n")
SQUARE = "def f(x):\n    if x == -1:\n        raise ValueError(x)\n    return x * x\n"


def _verdicts(jobs: list[tuple]) -> list:
    return check_many([(code, tests, setup) for code, tests, setup in jobs], workers=2, progress=False, **FAST)


def _assert_cheats_fail(honest: str, cheats: dict[str, str], tests: list[str], setup: str = "") -> None:
    """The honest answer passes; every cheat does not (one batch: the machine is shared)."""
    jobs = [(honest, tests, setup)] + [(code, tests, setup) for code in cheats.values()]
    first, *rest = _verdicts(jobs)
    assert first.passed, (tests, first)
    forged = {name: o.status for name, o in zip(cheats, rest) if o.passed}
    assert forged == {}, tests


# --- forged passes: comparisons nested in calls, displays, comprehensions, lambdas ------------

NESTED = [
    "assert all(f(i) == i * i for i in range(3))",
    "assert any(f(i) == 4 for i in range(3)) and not any(f(i) == 5 for i in range(3))",
    "assert bool(f(3) == 9)",
    "assert sum(f(i) == i * i for i in range(4)) == 4",
    "assert [f(2) == 4][0]",
    "assert (f(2) == 4,)[-1] and {'k': f(3) == 9}['k']",
    "assert (lambda: f(2) == 4)()",
    "assert all(map(lambda p: f(p[0]) == p[1], [(1, 1), (2, 4), (3, 9)]))",
    "assert [f(i) for i in range(3)] == [0, 1, 4]",
    "assert all([f(x) == y for x, y in {2: 4, 3: 9}.items()])",
    "assert min(f(2), 100) == 4 and max([f(3), 0]) == 9",
    "assert sorted([f(3), f(2)]) == [4, 9]",
    "assert len([x for x in range(5) if f(x) == x * x]) == 5",
    "assert f(3) in [9] and f(2) not in (5, 6)",
]


@pytest.mark.parametrize("test", NESTED)
def test_a_comparison_nested_in_an_expression_is_decided_here(test):
    cheats = {
        "always-equal": ALWAYS + "def f(x):\n    return Always(0)\n",
        "patched builtins": "import builtins\nfor name in ('all', 'any', 'bool', 'sum', 'len', 'min', 'max', 'sorted', 'map'):\n"
                            "    setattr(builtins, name, lambda *a, **k: True)\ndef f(x):\n    return 0\n",
        "list subclass": "class L(list):\n    def __eq__(self, other):\n        return True\n"
                         "def f(x):\n    return L()\n",
    }
    _assert_cheats_fail(SQUARE, cheats, [test])


PATCH = "import builtins\nbuiltins.{name} = lambda *a, **k: {value}\n"
DUNDERS = [  # (cheat, test, honest): the candidate's own methods or patched builtins would decide
    (PATCH.format(name="all", value=True) + "def f(x):\n    return [False]", "assert all(f(1))",
     "def f(x):\n    return [True]"),
    (PATCH.format(name="len", value=3) + "def f(x):\n    return []", "assert len(f(1)) == 3",
     "def f(x):\n    return [1, 2, 3]"),
    (PATCH.format(name="sorted", value=[1, 2]) + "def f(x):\n    return [2, 2]", "assert sorted(f(1)) == [1, 2]",
     "def f(x):\n    return [2, 1]"),
    (PATCH.format(name="isinstance", value=True) + "def f(x):\n    return 0", "assert isinstance(f(1), list)",
     "def f(x):\n    return []"),
    (PATCH.format(name="abs", value=0) + "def f(x):\n    return 5", "assert abs(f(1) - 2) < 1e-6",
     "def f(x):\n    return 2"),
    ("import math\nmath.sqrt = lambda x: 2.0\ndef f(x):\n    return 5", "assert math.sqrt(f(4)) == 2",
     "def f(x):\n    return x"),
    ("class I(int):\n    def __format__(self, spec):\n        return '9'\ndef f(x):\n    return I(0)",
     "assert f'{f(1)}' == '9'", "def f(x):\n    return 9"),
    ("class I(int):\n    def __format__(self, spec):\n        return '9'\ndef f(x):\n    return I(0)",
     "assert '{}'.format(f(1)) == '9'", "def f(x):\n    return 9"),
    ("class I(int):\n    def __add__(self, other):\n        return 3\ndef f(x):\n    return I(0)",
     "assert f(1) + f(2) == 3", "def f(x):\n    return x"),
    ("class S(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n"
     "def f(x):\n    return S('no')", "assert f(1) == 'yes'", "def f(x):\n    return 'yes'"),
    ("class L:\n    __class__ = list\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return L()",
     "assert f(1) == [1]", "def f(x):\n    return [x]"),
]


@pytest.mark.parametrize(("cheat", "test", "honest"), DUNDERS, ids=[test for _, test, _ in DUNDERS])
def test_the_candidates_own_methods_and_patched_builtins_decide_nothing(cheat, test, honest):
    _assert_cheats_fail(honest, {"cheat": cheat}, [test], "import math")


# A plain type's method, a builtin or a literal index applied to the candidate's value: its
# subclass's own ``count``, ``keys``, ``__len__``, ``__iter__`` or ``__getitem__`` used to
# decide in its process.
ON_VALUES = [
    ("class L(list):\n    def count(self, v):\n        return 2\ndef f(x):\n    return L([x])",
     "assert f(1).count(1) == 2", "def f(x):\n    return [x, x]"),
    ("class D(dict):\n    def keys(self):\n        return {'a'}\ndef f(x):\n    return D()",
     "assert f(1).keys() == {'a'}", "def f(x):\n    return {'a': x}"),
    ("class S(str):\n    def upper(self):\n        return 'HELLO'\ndef f(x):\n    return S('nope')",
     "assert f('hello').upper() == 'HELLO'", "def f(x):\n    return x"),
    ("class S(str):\n    def startswith(self, *a):\n        return True\ndef f(x):\n    return S('no')",
     "assert f(1).startswith('ab')", "def f(x):\n    return 'abc'"),
    ("class L(list):\n    def __len__(self):\n        return 3\ndef f(x):\n    return L()",
     "assert len(f(1)) == 3", "def f(x):\n    return [1, 2, 3]"),
    ("class L(list):\n    def __iter__(self):\n        return iter([1, 2])\ndef f(x):\n    return L([5])",
     "assert sorted(f(1)) == [1, 2]", "def f(x):\n    return [2, 1]"),
    (ALWAYS.replace("(int)", "") + "def f(x):\n    return Always()", "assert f(1).__eq__(5)", "def f(x):\n    return 5"),
    ("class L(list):\n    def __getitem__(self, i):\n        return 3\ndef f(x):\n    return L([0])",
     "assert f(1)[0] == 3", "def f(x):\n    return [3, 0]"),
    ("class L(list):\n    def __getitem__(self, i):\n        return [3, 4]\ndef f(x):\n    return L([0])",
     "assert f(1)[1:] == [3, 4]", "def f(x):\n    return [0, 3, 4]"),
    ("class D(dict):\n    def __getitem__(self, k):\n        return 5\ndef f(x):\n    return D()",
     "assert f(1)['k'] == 5", "def f(x):\n    return {'k': 5}"),
]


@pytest.mark.parametrize(("cheat", "test", "honest"), ON_VALUES, ids=[test for _, test, _ in ON_VALUES])
def test_methods_called_on_the_candidates_value_are_computed_here(cheat, test, honest):
    _assert_cheats_fail(honest, {"cheat": cheat}, [test])


def test_the_candidates_own_class_still_answers_its_own_methods():
    """A value that is no plain data (the candidate's own class) keeps its methods: a stack's
    ``count`` or ``__len__`` is what the task asks for."""
    code = ("class Stack:\n    def __init__(self):\n        self.items = []\n"
            "    def push(self, x):\n        self.items.append(x)\n        return self\n"
            "    def count(self, x):\n        return self.items.count(x)\n"
            "    def __len__(self):\n        return len(self.items)\n"
            "def f(x):\n    return Stack().push(x).push(x)\n")
    first, wrong = _verdicts([(code, ["assert f(1).count(1) == 2", "assert len(f(3)) == 2"], ""),
                              (code, ["assert f(1).count(1) == 3"], "")])
    assert first.passed, first
    assert not wrong.passed


# --- forged passes: compound statements and check functions that report nothing ---------------

QUIET = ("import sys\ndef _quiet(frame=None, *hook):\n    frame = frame or sys._getframe(1)\n    while frame:\n"
         "        for name in list(frame.f_globals):\n"
         "            if name.startswith('__sandbox'):\n"
         "                frame.f_globals[name] = lambda *a, **k: None\n"
         "        frame = frame.f_back\n")
SKIP = ("import sys\ndef _skip(frame, event, arg):\n    if event == 'line' and frame.f_code.co_filename == '<test>':\n"
        "        try:\n            frame.f_lineno = frame.f_code.co_firstlineno + 999\n"
        "        except ValueError:\n            pass\n    return _skip\n"
        "def _hook():\n    caller = sys._getframe(1)\n    while caller:\n"
        "        caller.f_trace = _skip\n        caller = caller.f_back\n    sys.settrace(_skip)\n")
ONCE = "calls = []\ndef f(x):\n    calls.append(x)\n    if len(calls) == 1:\n        return x * x\n"
SILENCERS = {  # right on the first call, then silent; or silent from the start and wrong
    "report rebound": QUIET + ONCE + "    _quiet()\n    return 0\n",
    "report rebound by a profile hook": QUIET + "sys.setprofile(_quiet)\ndef f(x):\n    return 0\n",
    "lines skipped": SKIP + ONCE + "    _hook()\n    return 0\n",
    "lines skipped from the start": SKIP + "_hook()\ndef f(x):\n    return 0\n",
}
EXITS = {
    "os._exit": "import os\ndef f(x):\n    os._exit(0)\n",
    "sys.exit": "import sys\ndef f(x):\n    sys.exit(0)\n",
    "SystemExit": "def f(x):\n    raise SystemExit\n",
    "KeyboardInterrupt": "def f(x):\n    raise KeyboardInterrupt\n",
    "GeneratorExit": "def f(x):\n    raise GeneratorExit\n",
}
COMPOUND = [
    "for x in [1, 2, 3]:\n    assert f(x) == x * x",
    "for x in range(1, 4):\n    assert f(x) == x * x",
    "if True:\n    assert f(2) == 4\n    assert f(3) == 9",
    "i = 0\nwhile i < 3:\n    assert f(i) == i * i\n    i += 1",
    "try:\n    assert f(2) == 4\n    assert f(3) == 9\nexcept ZeroDivisionError:\n    pass",
    "with open('/dev/null') as handle:\n    assert f(2) == 4\n    assert f(3) == 9",
    "def check(candidate):\n    for x in [1, 2]:\n        assert candidate(x) == x * x\ncheck(f)",
    "assert f(1) == 1\nfor x in (2, 3):\n    assert f(x) == x * x",
    "try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    assert False, 'no ValueError'\nassert f(2) == 4",
    "xs = [1, 2, 3]\nfor x in xs[:]:\n    r = f(x)\n    assert r == x * x",
]


@pytest.mark.parametrize("test", COMPOUND)
def test_a_compound_statement_whose_asserts_are_silenced_fails(test):
    _assert_cheats_fail(SQUARE, {**SILENCERS, **EXITS}, [test])


# A loop's own names live in the candidate's globals: set to the one case it answers, every
# turn checks that case, and a ``while`` on them ends after one turn.
REBINDER = ("def f(x):\n    for name in ('x', 'i', 'n'):\n        globals()[name] = 2\n    return 4\n")
FOLLOWED_LOOPS = [
    "for x in [1, 2, 3]:\n    assert f(x) == x * x",
    "for x in range(1, 4):\n    assert f(x) == x * x",
    "for x, y in [(1, 1), (2, 4), (3, 9)]:\n    assert f(x) == y",
    "n = 4\nfor x in range(1, n):\n    assert f(x) == x * x",
    "i = 0\nwhile i < 3:\n    assert f(i) == i * i\n    i += 1",
    "i = 0\nn = 3\nwhile i < n:\n    i = i + 1\n    assert f(i) == i * i",
    "i = 3\nwhile i:\n    assert f(i) == i * i\n    i -= 1\n    assert f(i + 1) == (i + 1) * (i + 1)",
]


@pytest.mark.parametrize("test", FOLLOWED_LOOPS)
def test_a_loop_whose_names_the_candidate_rebinds_fails(test):
    """This side follows a test's loop over literals (``for``) or driven by literal steps
    (``while``): each turn's names are known here and the loop must report every turn."""
    _assert_cheats_fail(SQUARE, {"loop names rebound": REBINDER, **SILENCERS}, [test])


def test_a_check_function_in_the_setup_that_is_silenced_fails():
    setup = ("def check(candidate):\n    for x in [1, 2]:\n        assert candidate(x) == x * x\n"
             "    try:\n        candidate('a')\n    except TypeError:\n        pass\n    else:\n"
             "        assert False, 'no TypeError'\n")
    _assert_cheats_fail(SQUARE, {**SILENCERS, **EXITS},
                        ["check(f)"], setup)


# --- forged passes: names the test or the set-up binds ---------------------------------------

READERS = {
    "globals": "def f(x):\n    return globals()['expected']\n",
    "caller frame": "import sys\ndef f(x):\n    frame = sys._getframe(1)\n    while frame:\n"
                    "        if 'expected' in frame.f_globals:\n            return frame.f_globals['expected']\n"
                    "        if 'expected' in frame.f_locals:\n            return frame.f_locals['expected']\n"
                    "        frame = frame.f_back\n    return None\n",
    "gc": "import gc\ndef f(x):\n    for o in gc.get_objects():\n"
          "        if isinstance(o, dict) and 'expected' in o and o.get('expected') is not None:\n"
          "            return o['expected']\n    return None\n",
}


@pytest.mark.parametrize(("tests", "setup"), [
    (["expected = 9\nassert f(3) == expected"], ""),
    (["expected = sum([4, 5])\nassert f(3) == expected, 'message'"], ""),
    (["assert f(3) == expected"], "expected = 9"),
    (["assert f(3) == expected - 0"], "import math\nexpected = math.factorial(3) + 3"),
])
def test_a_name_bound_without_the_candidate_is_not_in_its_process(tests, setup):
    _assert_cheats_fail(SQUARE, READERS, tests, setup)


def test_humaneval_151s_shape_a_variable_computed_by_the_test():
    tests = ["lst = list(range(-9, 10, 2))\nodd_sum = sum([i ** 2 for i in lst if i % 2 != 0 and i > 0])\n"
             "assert f(lst) == odd_sum"]
    honest = "def f(lst):\n    return sum(i * i for i in lst if i > 0 and i % 2)\n"
    readers = {name: code.replace("'expected'", "'odd_sum'") for name, code in READERS.items()}
    _assert_cheats_fail(honest, readers, tests)


# --- values compared as Python compares them ----------------------------------------------

TYPED = [
    ("import numpy as np\ndef f():\n    return np.int64(7)", "assert f() == 7", True),
    ("import numpy as np\ndef f():\n    return np.float64(0.5)", "assert f() == 0.5", True),
    ("import numpy as np\ndef f():\n    return np.bool_(True)", "assert f() == True", True),
    ("import numpy as np\ndef f():\n    return np.bool_(True)", "assert f() is True", False),
    ("import numpy as np\ndef f():\n    return [np.int32(1), np.uint8(255)]", "assert f() == [1, 255]", True),
    ("import numpy as np\ndef f():\n    return np.int64(7)", "assert isinstance(f(), int)", False),
    ("import numpy as np\ndef f():\n    return np.float32(0.1)", "assert f() == 0.1", True),
    ("from fractions import Fraction\ndef f():\n    return Fraction(1, 3)", "assert f() == Fraction(2, 6)", True),
    ("from fractions import Fraction\ndef f():\n    return Fraction(1, 3)", "assert f() == 1 / 3", False),
    ("from fractions import Fraction\ndef f():\n    return {Fraction(1, 2): [Fraction(3)]}", "assert f() == {0.5: [3]}", True),
    ("from decimal import Decimal\ndef f():\n    return Decimal('0.10')", "assert f() == Decimal('0.1')", True),
    ("from decimal import Decimal\ndef f():\n    return Decimal('0.1')", "assert f() == 0.1", False),
    ("from decimal import Decimal\ndef f():\n    return (Decimal('2.50'),)", "assert f() == (2.5,)", True),
    ("import datetime\ndef f():\n    return datetime.date(2024, 2, 29)", "assert f() == datetime.date(2024, 2, 29)", True),
    ("import datetime\ndef f():\n    return datetime.date(2024, 2, 28)", "assert f() == datetime.date(2024, 2, 29)", False),
    ("import datetime\ndef f():\n    return datetime.datetime(2024, 1, 1, 12, 30, tzinfo=datetime.timezone.utc)",
     "assert f() == datetime.datetime(2024, 1, 1, 13, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))", True),
    ("import datetime\ndef f():\n    return [datetime.timedelta(days=1)]", "assert f() == [datetime.timedelta(hours=24)]", True),
    ("from collections import OrderedDict\ndef f():\n    return OrderedDict([(1, 'a'), (2, 'b')])",
     "assert f() == OrderedDict([(1, 'a'), (2, 'b')])", True),
    ("from collections import OrderedDict\ndef f():\n    return OrderedDict([(2, 'b'), (1, 'a')])",
     "assert f() == OrderedDict([(1, 'a'), (2, 'b')])", False),
    ("from collections import OrderedDict\ndef f():\n    return OrderedDict([(2, 'b'), (1, 'a')])",
     "assert f() == {1: 'a', 2: 'b'}", True),
    ("from collections import Counter\ndef f():\n    return Counter('abca')", "assert f() == Counter(a=2, b=1, c=1, d=0)", True),
    ("from collections import deque\ndef f():\n    return deque([1, 2])", "assert f() == deque([1, 2])", True),
    ("from collections import deque\ndef f():\n    return deque([1, 2])", "assert f() == [1, 2]", False),
]


def test_values_of_library_types_compare_as_in_plain_python():
    imports = "import datetime\nfrom fractions import Fraction\nfrom decimal import Decimal\n" \
              "from collections import OrderedDict, Counter, deque"
    for code, test, want in TYPED:  # the expectation is plain Python's own verdict
        namespace = {}
        exec(code + "\n" + imports, namespace)
        try:
            exec(test, namespace)
        except AssertionError:
            assert not want, test
        else:
            assert want, test
    outcomes = _verdicts([(code, [test], imports) for code, test, _ in TYPED])
    got = [(test, o.passed) for (_, test, _), o in zip(TYPED, outcomes)]
    assert got == [(test, want) for _, test, want in TYPED]
    assert all(o.status in ("passed", "failed") for o in outcomes), [o.error for o in outcomes if not o.passed]


def test_a_value_the_judge_cannot_carry_is_named_not_called_wrong():
    code = "class Point:\n    def __init__(self, x):\n        self.x = x\n    def __eq__(self, other):\n" \
           "        return self.x == other.x\ndef f():\n    return Point(1)\n"
    outcome = api.check(code, ["assert f() == f()"], **FAST)
    assert (outcome.status, outcome.exc_type) == ("error", "UncheckableValue"), outcome
    assert "Point" in outcome.message


def test_plain_decoding_round_trips_the_library_types():
    values = [fractions.Fraction(-7, 3), decimal.Decimal("-0.000"), decimal.Decimal("NaN"),
              datetime.date(1, 1, 1), datetime.datetime(2024, 5, 6, 7, 8, 9, 10, fold=1),
              datetime.time(23, 59, tzinfo=datetime.timezone(datetime.timedelta(hours=-3), "X")),
              datetime.timedelta(days=-1, microseconds=5), OrderedDict([("b", 1), ("a", 2)])]
    for value in values:
        back = plain.decode(plain.loads(plain.dumps(plain.encode(value)).decode()))
        assert type(back) is type(value) and repr(back) == repr(value)


# --- the trusted side is bounded for any operation on a candidate's values ----------------------

IF = " if f(0) else 1"  # a test decision around the value: the call is then computed here, not in the candidate
WORST = [  # (assert, the value f(0) reports): each would cost the trusted side seconds or gigabytes
    ("assert '%*d' % f(0) == ' 1'", (999_999_999, 1)),
    ("assert 3 ** f(0) == 3", 10 ** 8),
    (f"assert pow(3, f(0){IF}) == 3", 10 ** 8),
    (f"assert pow(f(0){IF}, 3 ** 5000, 7 ** 5000) == 1", 3),
    ("assert 'ab' * f(0) == ''", 10 ** 9),
    ("assert [0] * f(0) == []", 10 ** 9),
    ("assert f(0) // 3 ** 300_000 == 1", 1 << 1_000_000),
    (f"assert divmod(f(0){IF}, 3 ** 300_000) == (1, 1)", 1 << 1_000_000),
    (f"assert round(12, f(0){IF}) == 0", -(10 ** 9)),
    (f"assert int(f(0){IF}) == 1", decimal.Decimal("1e999999999")),
    (f"assert sum(range(f(0){IF})) == 1", 10 ** 12),
    ("assert any(x == y - 1 for x in f(0) for y in f(0))", list(range(0, 200_000, 2))),
    (f"assert math.factorial(f(0){IF}) == 1", 10 ** 6),
    (f"assert math.prod(f(0){IF}) == 1", [1 << 100_000] * 10),
    ("assert sum(f(0) if f(0) else [], []) == []", [[0] * 300] * 1000),  # quadratic with +
    (f"assert '{{:>{{}}}}'.format(1, f(0){IF}) == ' 1'", 999_999_999),
    (f"assert 'ab'.center(f(0){IF}) == 'ab'", 1 << 30),
    ("assert 'abc'.replace('', f(0) if f(0) else '') == 'abc'", "x" * 3_000_000),
    (f"assert (5).to_bytes(f(0){IF}, 'big') == b''", 10 ** 9),
    (f"assert bytes(f(0){IF}) == b''", 10 ** 9),
    (f"assert str(f(0){IF}) == '1'", 1 << 200_000),
]


def _judge_alone(test: str, value) -> tuple:
    """The trusted side's work on a result line claiming ``value`` for ``f(0)``: (result, seconds, peak bytes).

    Timed without ``tracemalloc`` (which slows every allocation), measured with it.
    """
    plan = asserts.compile_job((test,), "", "def f(x):\n    return x\n")
    (block,) = plan.blocks
    (step,) = block.steps
    assert step[0] == "a" and set(step[2]) <= {"f(0)", "bool(f(0))"}, step
    holes = [{"v": True} if hole == "bool(f(0))" else {"v": plain.encode(value)} for hole in step[2]]
    line = plain.dumps({"c": [[step[1], holes]]}).decode()
    started = time.monotonic()
    result = api._judge(block, line, api.NO_EXPECTED)
    seconds = time.monotonic() - started
    tracemalloc.start()
    try:
        api._judge(block, line, api.NO_EXPECTED)
        return result, seconds, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("test", "value"), WORST, ids=[test for test, _ in WORST])
def test_the_worst_values_found_cost_the_trusted_side_little(test, value):
    result, seconds, peak = _judge_alone(test, value)
    assert result.status in ("failed", "error"), result
    assert seconds < 1.0 and peak < 64 << 20, (result, seconds, peak >> 20)


def test_sorting_the_candidates_value_here_is_bounded():
    """``sorted(f(0))`` is computed here on the value's plain copy: more values than a quarter
    second's sort are refused as too large to check (a line may hold 4 million: seconds)."""
    plan = asserts.compile_job(("assert sorted(f(0)) == [1]",), "", "def f(x):\n    return x\n")
    (block,) = plan.blocks
    (step,) = block.steps
    value = [float(i % 1000) + i / 1e6 for i in range((1 << 18) + 1)][::-1]
    line = plain.dumps({"c": [[step[1], [{"v": plain.encode((value, value))}]]]}).decode()
    result = api._judge(block, line, api.NO_EXPECTED)
    assert (result.status, result.exc_type) == ("error", "OverflowError"), result


def test_a_huge_width_from_the_candidate_is_refused_end_to_end():
    outcome = api.check("def f(x):\n    return (999_999_999, 1)", ["assert '%*d' % f(0) == ' 1'"], **FAST)
    assert (outcome.status, outcome.exc_type) == ("error", "OverflowError")
