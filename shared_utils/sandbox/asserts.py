"""Splitting each test into what the candidate computes and what the trusted side decides.

``assert f(x) == [1, 2]`` becomes a *hole* ``f(x)`` that the candidate's process evaluates
and sends back as plain data, and a *template* ``__holes[0] == [1, 2]`` that only this
process evaluates.  The expected side never reaches the candidate, so frame-walking finds
nothing to copy and an always-equal object has no ``__eq__`` to call.  We descend through
comparisons, ``not`` and ``math.isclose``; any other subexpression that mentions a name
the candidate could have bound becomes a hole as a whole (so ``set(f(x))`` is computed by
the candidate, exactly as the paper's ``exec`` would).  A test that is not a single
assert runs in the candidate's process and only its success is reported.
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import re
from dataclasses import dataclass
from types import CodeType

TRUSTED_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "bytearray", "bytes", "chr", "complex", "dict", "divmod",
                 "enumerate", "float", "frozenset", "hex", "int", "len", "list", "max", "min", "oct",
                 "ord", "pow", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip")
}
TRUSTED_MODULES = {"math": math}
_TRUSTED_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Name, ast.Attribute, ast.Call,
                  ast.keyword, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Subscript, ast.Slice, ast.Starred,
                  ast.expr_context, ast.unaryop, ast.operator, ast.cmpop)
HOLES = "__holes"


@dataclass(frozen=True)
class Test:
    """One compiled test: hole sources for the candidate, a template for us."""

    source: str
    kind: str  # "holes": template decides; "exec": the candidate's process reports success
    holes: tuple[str, ...]
    template: CodeType | None

    def wire(self) -> list:
        return [self.kind, list(self.holes)]

    def verdict(self, values: list) -> bool:
        """Evaluate the template on the candidate's values (exceptions propagate)."""
        if self.template is None:
            return True
        scope = {"__builtins__": TRUSTED_BUILTINS, **TRUSTED_MODULES, HOLES: values}
        return bool(eval(self.template, scope))


def bound_names(*sources: str) -> frozenset[str]:
    """Every name the setup or candidate code could bind (conservatively: any scope).

    ``import math`` is not counted: it binds the very module we trust.
    """
    names = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue  # it will fail to run anyway; nothing it binds can matter
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                names.update(node.names)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update(a.asname or a.name.split(".")[0] for a in node.names
                             if (a.asname or a.name) not in TRUSTED_MODULES or isinstance(node, ast.ImportFrom))
    return frozenset(names)


def _trusted(node: ast.AST, bound: frozenset[str]) -> bool:
    for sub in ast.walk(node):
        if not isinstance(sub, _TRUSTED_NODES):
            return False
        if isinstance(sub, ast.Name) and (sub.id in bound or (sub.id not in TRUSTED_BUILTINS
                                                              and sub.id not in TRUSTED_MODULES)):
            return False
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("_"):
            return False
    return True


def _is_isclose(node: ast.AST, bound: frozenset[str]) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isclose"
            and _trusted(node.func, bound) and not any(isinstance(a, ast.Starred) for a in node.args))


class _Splitter:
    def __init__(self, bound: frozenset[str]):
        self.bound, self.holes = bound, []

    def hole(self, node: ast.expr, truth: bool) -> ast.expr:
        expr = ast.Call(ast.Name("bool", ast.Load()), [node], []) if truth else node
        self.holes.append(ast.unparse(expr))
        return ast.Subscript(ast.Name(HOLES, ast.Load()), ast.Constant(len(self.holes) - 1), ast.Load())

    def split(self, node: ast.expr, truth: bool = False) -> ast.expr:
        if _trusted(node, self.bound):
            return node
        if isinstance(node, ast.Compare):
            return ast.Compare(self.split(node.left), node.ops, [self.split(c) for c in node.comparators])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ast.UnaryOp(ast.Not(), self.split(node.operand, truth=True))
        if _is_isclose(node, self.bound):
            return ast.Call(node.func, [self.split(a) for a in node.args],
                            [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords])
        return self.hole(node, truth)


@functools.lru_cache(maxsize=65536)
def compile_test(source: str, bound: frozenset[str]) -> Test:
    """Compile one test given the names the candidate binds (cached: tests repeat a lot)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return Test(source, "exec", (source,), None)
    if len(body) != 1 or not isinstance(body[0], ast.Assert):
        return Test(source, "exec", (source,), None)
    splitter = _Splitter(bound)
    template = ast.fix_missing_locations(ast.Expression(splitter.split(body[0].test, truth=True)))
    return Test(source, "holes", tuple(splitter.holes), compile(template, "<assert>", "eval"))


@functools.lru_cache(maxsize=65536)
def _trusted_names_in(test: str) -> frozenset[str]:
    try:
        names = {node.id for node in ast.walk(ast.parse(test)) if isinstance(node, ast.Name)}
    except SyntaxError:
        return frozenset()
    return frozenset(names & (TRUSTED_BUILTINS.keys() | TRUSTED_MODULES.keys()))


def relevant_bound(tests: tuple[str, ...], setup: str, code: str) -> frozenset[str]:
    """The trusted names these tests use that the candidate might rebind.

    Parsing the candidate is the expensive part, so it happens only when such a name
    occurs in its text at all (keeps both this and the compile cache cheap).
    """
    used = frozenset().union(*map(_trusted_names_in, tests))
    if not any(re.search(rf"\b{name}\b", setup + code) for name in used):
        return frozenset()
    return bound_names(setup, code) & used
