"""Adversarial completions against the maintainability reward: the same working answer obfuscated in every way
found to raise radon's MI, each next to its honest form.

Each probe first shows that it works and that it buys MI: the obfuscated code passes the
problem's asserts in the sandbox, and radon's MI of it beats the honest form's (every probe but the
comment padding also beat the honest answer under the reward before its guard against them). Then
the guarded reward (``rewards``: the gate, the normal form, the volume floor) never scores it above
the honest answer. Cramming statements onto one line buys nothing from radon itself (its own test).
"""

from __future__ import annotations

import pytest

from shared_utils import sandbox
from shared_utils.maintainability import score
from shared_utils.rewards import Judge, RewardSettings

TESTS = ["assert sum_of_squares(4) == 20", "assert sum_of_squares(7) == 56", "assert sum_of_squares(1) == 0"]
LOOP = """def sum_of_squares(n):
    total = 0
    for i in range(1, n + 1):
        if i % 2 == 0:
            total += i * i
    return total"""
EXPRESSION = "sum(i * i for i in range(1, n + 1) if i % 2 == 0)"
ONE_LINE = f"def sum_of_squares(n):\n    return {EXPRESSION}"

PROBES = {  # name: (honest answer, the same answer obfuscated)
    # code built and run from strings, or reached by name: rejected by the gate
    "exec": (LOOP, f"exec({LOOP!r})"),
    "eval": (f"sum_of_squares = lambda n: {EXPRESSION}", f"sum_of_squares = eval({'lambda n: ' + EXPRESSION!r})"),
    "compile": (LOOP, f"exec(compile({LOOP!r}, '<s>', 'exec'))"),
    "__import__": (LOOP, LOOP.replace("def sum_of_squares(n):", "def sum_of_squares(n):\n    op = __import__('operator')")
                   .replace("n + 1", "op.add(n, 1)").replace("i % 2 == 0", "op.eq(op.mod(i, 2), 0)")
                   .replace("total += i * i", "total = op.add(total, op.mul(i, i))")),
    "importlib": (LOOP, "import importlib\nop = importlib.import_module('operator')\n"
                  + LOOP.replace("n + 1", "op.add(n, 1)").replace("i % 2 == 0", "op.eq(op.mod(i, 2), 0)")),
    "getattr by name": (ONE_LINE, "import operator\ndef sum_of_squares(n):\n    return sum(getattr(operator, 'mul')(i, i) "
                        "for i in range(1, getattr(operator, 'add')(n, 1)) if not getattr(operator, 'mod')(i, 2))"),
    "getattr on a module": (ONE_LINE, "import operator\nNAMES = ['mul', 'add']\ndef sum_of_squares(n):\n"
                            "    mul, add = (getattr(operator, name) for name in NAMES)\n"
                            "    return sum(mul(i, i) for i in range(2, add(n, 1), 2))"),
    "globals": (ONE_LINE, f"globals()['sum_of_squares'] = lambda n: {EXPRESSION.replace('i * i', 'pow(i, 2)')}"),
    "builtins": (ONE_LINE, f"import builtins\nsum_of_squares = builtins.eval({'lambda n: ' + EXPRESSION!r})"),
    "dunder string": (ONE_LINE, "from operator import methodcaller\ndef sum_of_squares(n):\n"
                      "    return sum(methodcaller('__mul__', i)(i) for i in range(2, n + 1, 2))"),
    # operators written as calls: measured as the operators (the normal form)
    "operator module": (LOOP, "import operator\n" + LOOP.replace("n + 1", "operator.add(n, 1)")
                        .replace("i % 2 == 0", "operator.eq(operator.mod(i, 2), 0)")
                        .replace("total += i * i", "total = operator.iadd(total, operator.mul(i, i))")),
    "imported operators": (LOOP, "from operator import add, eq, mod, mul as times\n" + LOOP.replace("n + 1", "add(n, 1)")
                           .replace("i % 2 == 0", "eq(mod(i, 2), 0)").replace("total += i * i",
                                                                              "total = add(total, times(i, i))")),
    "aliased module": (LOOP, "import operator as o\np = o\n" + LOOP.replace("n + 1", "p.add(n, 1)")
                       .replace("i % 2 == 0", "p.not_(p.mod(i, 2))").replace("total += i * i",
                                                                            "total = p.__add__(total, p.mul(i, i))")),
    "dunder methods": (LOOP, LOOP.replace("n + 1", "n.__add__(1)").replace("i % 2 == 0", "i.__mod__(2).__eq__(0)")
                       .replace("total += i * i", "total = total.__add__(i.__mul__(i))")),
    "unbound dunders": (LOOP.replace("i % 2 == 0", "not i % 2"), LOOP.replace("n + 1", "int.__add__(n, 1)").replace("i % 2 == 0", "not int.__mod__(i, 2)")
                        .replace("total += i * i", "total = int.__radd__(int.__mul__(i, i), total)")),
    "numpy functions": (LOOP, "import numpy as np\n" + LOOP.replace("n + 1", "np.add(n, 1)")
                        .replace("i % 2 == 0", "np.equal(np.mod(i, 2), 0)")
                        .replace("total += i * i", "total = int(np.add(total, np.multiply(i, i)))")),
    "folds over a literal": ("def sum_of_squares(n):\n    return sum(i * i for i in range(2, n + 1, 2))",
                             "import math\ndef sum_of_squares(n):\n"
                             "    return sum(math.prod((i, i)) for i in range(2, sum((n, 1)), 2))"),
    "pow": (ONE_LINE.replace("i * i", "i ** 2"), ONE_LINE.replace("i * i", "pow(i, 2)").replace("n + 1", "sum([n, 1])")),
    "operator passed on": ("from functools import reduce\ndef sum_of_squares(n):\n"
                           "    return reduce(lambda a, b: a + b, (i * i for i in range(2, n + 1, 2)), 0)",
                           "from functools import reduce\nfrom operator import add, mul\ndef sum_of_squares(n):\n"
                           "    return reduce(add, map(mul, range(2, add(n, 1), 2), range(2, add(n, 1), 2)), 0)"),
    "dunder passed on": ("def sum_of_squares(n):\n    evens = range(2, n + 1, 2)\n"
                         "    return sum(map(lambda a, b: a * b, evens, evens))",
                         "def sum_of_squares(n):\n    evens = range(2, n.__add__(1), 2)\n"
                         "    return sum(map(int.__mul__, evens, evens))"),
    # padding: removed
    "docstrings and comments": (LOOP, LOOP.replace("    total = 0", '    """Sum of the squares\n    of the even numbers\n'
                                                   '    up to n."""\n    total = 0  # running sum\n    # loop\n')),
}


def _answer(code: str) -> str:
    return f"```python\n{code}\n```"


@pytest.fixture(scope="module")
def judged():
    """Every honest and obfuscated answer judged in one batch, and the obfuscated ones run without the gate."""
    honest, obfuscated = zip(*PROBES.values())
    settings = RewardSettings(timeout=2.0)
    codes = list(honest) + list(obfuscated)
    samples = Judge(settings).samples([[{"role": "assistant", "content": _answer(c)}] for c in codes],
                                      [TESTS] * len(codes), [""] * len(codes))
    ran = sandbox.check_many([(code, TESTS, "") for code in obfuscated], timeout=2.0, progress=False)
    return settings, dict(zip(PROBES, zip(samples[:len(PROBES)], samples[len(PROBES):], ran)))


@pytest.mark.parametrize("name", PROBES)
def test_obfuscation_never_scores_above_the_honest_answer(judged, name):
    settings, results = judged
    honest_code, obfuscated_code = PROBES[name]
    honest, obfuscated, ran = results[name]
    assert ran.passed, f"the obfuscated answer must work: {ran.status}"
    assert honest.passed and not honest.rejected
    unguarded = [score(code).mi for code in (honest_code, obfuscated_code)]
    assert unguarded[1] > unguarded[0], "the probe must buy MI from radon as written"
    assert settings.total(obfuscated) <= settings.total(honest)
    if obfuscated.rejected:
        assert obfuscated.rejected == "obfuscated" and settings.total(obfuscated) == 0.0
    else:
        assert obfuscated.mi_scored <= honest.mi_scored + 1e-9


def test_code_from_strings_is_rejected_and_operator_calls_are_not():
    from shared_utils.obfuscation import dynamic_code

    rejected = [name for name in PROBES if dynamic_code(PROBES[name][1])]
    assert rejected == list(PROBES)[:10]
    honest_uses = ["import re\nPATTERN = re.compile('a+')", "from re import compile\nP = compile('a')",
                   "import operator\nkey = operator.itemgetter(1)", "def f(o, name):\n    return getattr(o, name)",
                   "if __name__ == '__main__':\n    pass", "def f(x):\n    return hasattr(x, '__len__')"]
    assert [dynamic_code(code) for code in honest_uses] == [""] * len(honest_uses)


def test_one_line_with_semicolons_buys_nothing(judged):
    """radon counts logical lines, one per statement, so cramming them onto one line changes nothing."""
    settings, _ = judged
    laid_out = ("def sum_of_squares(n):\n    total = 0\n    i = 2\n    while i <= n:\n        total += i * i\n"
                "        i += 2\n    return total")
    crammed = "def sum_of_squares(n):\n    total = 0; i = 2\n    while i <= n: total += i * i; i += 2\n    return total"
    assert score(crammed).mi == score(laid_out).mi
    samples = Judge(settings).samples([_answer(laid_out), _answer(crammed)], [TESTS] * 2, [""] * 2)
    assert samples[0].passed and settings.total(samples[0]) == settings.total(samples[1])
