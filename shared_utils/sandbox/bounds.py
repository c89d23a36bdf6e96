"""What the trusted side may spend on one operation over a candidate's values.

A template (see ``asserts``) computes here with values the candidate's process reported:
decoded plain data, at most ``plain.MAX_ITEMS`` values from a result line of at most 32 MiB.
Every operation that could turn such a value into far more work or memory than it holds
is checked before it runs and refused with an ``OverflowError`` (the verdict is an error,
never a pass):

* integers: results and operands of arithmetic at most ``MAX_RESULT_BITS`` bits (about
  79,000 digits; division of two such numbers takes milliseconds), ``pow`` with a modulus
  on numbers of at most ``MAX_MODULAR_BITS``, ``round``/``int`` that would expand a
  number into more digits than Python prints (4,300), ``math`` functions on such numbers
  (``factorial``/``comb``/``perm`` of at most ``MAX_FACTORIAL``);
* sequences: repetition, ``bytes(n)``, ``range`` and padding (``'%*d'``, ``str.center``,
  a ``str.format`` width taken from an argument) at most ``MAX_ITEMS`` items or characters,
  ``sum`` of sequences in linear time;
* iteration: the comprehensions of one template take at most ``MAX_STEPS`` steps in all.

So one operation costs at most a few tens of MB and well under a second; a chain of them
in one assert is as long as the test's own source.  Operations on the test's literals alone
are the test's business and are not checked.
"""

from __future__ import annotations

import builtins
import itertools
import math
import operator
import re
from decimal import Decimal
from fractions import Fraction

MAX_RESULT_BITS = 1 << 18
MAX_MODULAR_BITS = 1 << 13
MAX_DIGITS = 4300  # Python's own limit on printing an int
MAX_FACTORIAL = 20_000
MAX_ITEMS = 1 << 22
MAX_STEPS = 1 << 18

OPERATORS = {
    "Add": operator.add, "Sub": operator.sub, "Mult": operator.mul, "Div": operator.truediv,
    "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow, "LShift": operator.lshift,
    "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor, "BitAnd": operator.and_,
    "MatMult": operator.matmul, "USub": operator.neg, "UAdd": operator.pos, "Invert": operator.invert,
}
_SEQUENCES = (str, bytes, bytearray, list, tuple)
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")


def refuse(what: str = "the result would be too large to check"):
    raise OverflowError(what)


def _bits(value) -> int:
    """The size in bits of a number's exact value (0 for anything else)."""
    if isinstance(value, int):
        return abs(value).bit_length()
    if isinstance(value, Fraction):
        return max(_bits(value.numerator), _bits(value.denominator))
    if isinstance(value, Decimal) and value.is_finite():
        return int(max(abs(value.adjusted()), len(value.as_tuple().digits)) * 3.33)
    return 0


def _ints(value):
    """The integers of an argument: itself, or the items of a tuple (``'%*d' % (w, x)``)."""
    if isinstance(value, int):
        return [value]
    return [v for v in value if isinstance(v, int)] if isinstance(value, (tuple, list, dict)) else []


def too_large(name: str, left, right=None) -> bool:
    """Would this operator on these values cost the trusted side more than a moment?"""
    numbers = [v for v in (left, right) if _bits(v)]
    if any(_bits(v) > MAX_RESULT_BITS for v in numbers):
        return True
    if name == "Pow" and len(numbers) == 2:
        return abs(left) > 1 and right > 0 and _bits(left) * right > MAX_RESULT_BITS
    if name == "LShift" and len(numbers) == 2:
        return right > MAX_RESULT_BITS
    if name == "Mult" and isinstance(left, _SEQUENCES) != isinstance(right, _SEQUENCES):
        sequence, count = (left, right) if isinstance(left, _SEQUENCES) else (right, left)
        return isinstance(count, int) and len(sequence) * count > MAX_ITEMS
    if name == "Mod" and isinstance(left, (str, bytes)):  # '%*d' % (width, x): the width is an argument
        star = "*" in left if isinstance(left, str) else b"*" in left
        return star and any(abs(v) > MAX_ITEMS for v in _ints(right))
    return False


def operate(name: str, *operands):
    """An operator of a template, refused where the candidate's values make it huge."""
    if too_large(name, *operands):
        refuse()
    return OPERATORS[name](*operands)


def _pow(base, exponent, modulus=None):
    if modulus is None:
        return operate("Pow", base, exponent)
    if max(_bits(base), _bits(exponent), _bits(modulus)) > MAX_MODULAR_BITS:
        refuse()
    return builtins.pow(base, exponent, modulus)


def _round(number, ndigits=None):
    if ndigits is not None and not isinstance(number, float) and abs(operator.index(ndigits)) > MAX_DIGITS:
        refuse()
    return builtins.round(number, ndigits) if ndigits is not None else builtins.round(number)


def _int(value=0, *base):
    if isinstance(value, (Decimal, Fraction)) and _bits(value) > MAX_RESULT_BITS:
        refuse()
    return builtins.int(value, *base)


def _range(*arguments):
    try:
        if builtins.len(builtins.range(*arguments)) <= MAX_ITEMS:
            return builtins.range(*arguments)
    except OverflowError:
        pass
    refuse("the range is too long to check")


def _sized(kind):
    def build(source=b"", *rest):
        if isinstance(source, int) and source > MAX_ITEMS:
            refuse()
        return kind(source, *rest)
    return build


def _sum(iterable, start=0):
    items = list(itertools.islice(iterable, MAX_ITEMS + 1))
    if builtins.len(items) > MAX_ITEMS or any(_bits(item) > MAX_RESULT_BITS for item in items):
        refuse()
    if isinstance(start, (list, tuple)) and all(type(item) is type(start) for item in items):
        joined = type(start)(itertools.chain(start, *items))  # linear, where repeated + would be quadratic
        if builtins.len(joined) > MAX_ITEMS:
            refuse()
        return joined
    if isinstance(start, _SEQUENCES):
        refuse("sum() of sequences other than lists and tuples is not checked")
    return builtins.sum(items, start)


def _sorted(iterable, *, key=None, reverse=False):
    """At most ``MAX_STEPS`` items (a quarter of a second): sorting the 4 million values a result
    line may hold would take the trusted side seconds."""
    items = list(itertools.islice(iterable, MAX_STEPS + 1))
    if builtins.len(items) > MAX_STEPS:
        refuse()
    return builtins.sorted(items, key=key, reverse=reverse)


def _divmod(left, right):
    return operate("FloorDiv", left, right), operate("Mod", left, right)


def _math(name: str, *arguments):
    numbers = [_bits(a) for a in arguments if _bits(a)]
    iterables = [a for a in arguments if isinstance(a, (list, tuple, set, frozenset, range))]
    if any(bits > MAX_RESULT_BITS for bits in numbers):
        refuse()
    if name in ("factorial", "comb", "perm") and any(abs(a) > MAX_FACTORIAL for a in arguments if isinstance(a, int)):
        refuse()
    if name in ("prod", "lcm") and sum(_bits(v) for a in (*iterables, arguments) for v in a) > MAX_RESULT_BITS:
        refuse()
    return getattr(math, name)(*arguments)


_CHECKED = {builtins.pow: _pow, builtins.round: _round, builtins.int: _int, builtins.range: _range,
            builtins.bytes: _sized(bytes), builtins.bytearray: _sized(bytearray), builtins.sum: _sum,
            builtins.divmod: _divmod, builtins.sorted: _sorted}


def call_function(function, *arguments, **keywords):
    """A builtin called on the candidate's values, checked where an argument multiplies its cost."""
    return _CHECKED.get(function, function)(*arguments, **keywords)


def call_method(receiver, name: str, *arguments, **keywords):
    """``receiver.name(...)`` where the receiver is the test's literal (or ``math``) and an argument
    the candidate's."""
    if receiver is math:
        return _math(name, *arguments, **keywords)
    if isinstance(receiver, (str, bytes)):
        numbers = [v for v in (*arguments, *keywords.values()) if isinstance(v, int)]
        if name in ("center", "ljust", "rjust", "zfill", "expandtabs") and any(abs(v) > MAX_ITEMS for v in numbers):
            refuse()
        if name == "format" and isinstance(receiver, str) and _NESTED_FIELD.search(receiver) and any(
                abs(v) > MAX_ITEMS for v in numbers):
            refuse()
        if name == "replace" and builtins.len(arguments) >= 2:
            old, new = arguments[:2]
            count = builtins.len(receiver) + 1 if not old else receiver.count(old)
            if builtins.len(receiver) + count * builtins.len(new) > MAX_ITEMS:
                refuse()
    if isinstance(receiver, int) and name == "to_bytes" and any(
            isinstance(v, int) and v > MAX_ITEMS for v in (*arguments, *keywords.values())):
        refuse()
    return getattr(receiver, name)(*arguments, **keywords)


_SPEC_NUMBERS = re.compile(r"\d+")
_CONVERSIONS = {-1: lambda value: value, ord("s"): str, ord("r"): repr, ord("a"): ascii}


def format_value(value, conversion: int, spec: str) -> str:
    """One ``{value!conversion:spec}`` of an f-string, refused where the spec's width is huge."""
    if any(int(digits) > MAX_ITEMS for digits in _SPEC_NUMBERS.findall(spec[:100])) or len(spec) > 100:
        refuse()
    return builtins.format(_CONVERSIONS[conversion](value), spec)


class Steps:
    """Counts the items a template's comprehensions take, across the whole template."""

    def __init__(self):
        self.left = MAX_STEPS

    def __call__(self, iterable):
        for item in iterable:
            self.left -= 1
            if self.left < 0:
                refuse("the comprehension takes too many steps to check")
            yield item
