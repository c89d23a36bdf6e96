"""Compiling tests into what the candidate computes and what the trusted side decides.

Every test is a block of statements.  Each ``assert`` in it becomes a *site*: the parts that
depend on the candidate (*holes*) are evaluated in the candidate's process and come back as
plain data; a *template* evaluated only in this process combines them with the expected
side.  ``and``/``or``/``not``, comparisons and ``math.isclose`` are split here, and so is
arithmetic on the candidate's values (``abs(f(x) - 0.33) < 1e-6``: the candidate's
``__sub__`` must not decide), and so is every call, display, subscript, comprehension or
lambda that holds a comparison (``all(f(i) == i * i for i in range(3))``, ``bool(f(3) ==
9)``): see ``_Splitter``.  Each such operation is bounded (``bounds``).  The template keeps Python's short-circuit order: the candidate evaluates
every hole of an assert (each one's exception is kept apart), and a hole that raised
makes the test an error only when the template actually reaches it.  (A hole past a false ``and`` still
runs: it can cost time, a timeout at worst, but never turn a failure into a pass.)

Which side a subexpression is on (an *operand*: a leaf below those operators):

* **The candidate's** when it mentions a name that exists only because the candidate
  bound it: anything but a builtin, an importable module, or a name bound by set-up or
  test statements that do not involve the candidate.  ``root = Node(1)`` in a set-up or
  ``r = f(1)`` in a test involve it, so ``root`` and ``r`` are the candidate's; so is a
  name once passed to a hole, which the candidate may have mutated.  No parsing of the
  candidate decides this, so a function it defines with ``exec`` is still its own.
  If an assert has no such operand but mentions a builtin or module name the candidate
  redefines at module level, the assert is testing that function (MBPP 126 defines
  ``sum``): those names are the candidate's for that assert.
* **A literal** when it is built only from constants, containers, operators and a few
  pure builtins (``sorted``, ``set``, ``math``...), none rebound by the set-up or the test:
  evaluated here, with the real builtins, whatever the candidate rebound.
* **Expected** otherwise (``sys.getsizeof(t)``, a set-up name, a test variable computed
  without the candidate): computed in a *reference run*, a job through the same sandbox
  with no candidate code: it imports the modules those operands name, runs the set-up
  and test statements that do not involve the candidate, and evaluates the operands.
  So an expected side sees the state those statements left, never what the candidate
  changed, and ``sys`` is imported for it even where the candidate forgot to.  Those
  statements run in both processes, so they must be deterministic (a seeded ``random``),
  except assignments of pure data (``expected = sum(...)``) that nothing on the
  candidate's side reads: those run only in the reference run, so the candidate cannot
  read the expected value through its globals, a frame or ``gc`` (``_withholdable``).

Asserts nested in other statements (loops, functions a test or the set-up defines, such
as HumanEval's ``check(candidate)``) report each time they run.  Their operands are
literals or holes, since no reference run can follow a loop the candidate drives, and
arithmetic on the loop's variables (``x + y``, ``str(x)``) is done here on the values the
candidate's process reports.  A test that calls such a function must bring every report
that always runs (its straight-line asserts, those in a loop over a fixed ``range``), as
often as they run; the same holds for a test's own compound statements (``for`` over a
literal, ``if`` on a literal, ``with``, the reports opening a ``try``).  That keeps
always-equal objects, patched builtins and silence out.  A test's own loop that this side
can follow (``for`` over a literal, ``while`` on the test's literal names stepped by
literal assignments: ``_loop_course``) is followed here: each report's loop variables are
taken from this side's turn, not from the candidate's process (which could rebind them
through its globals), and the loop must report once per turn, no more.  Elsewhere the
candidate's process still reports the loop's variables and computes any other expected
side there, and the reports of a ``while`` loop or a loop over computed values cannot be
counted (the child undoes rebound report functions and tracing hooks after each call of
the candidate's, which stops the Python-level ways to silence them): documented
weaknesses (5 HumanEval problems loop in their ``check``).  A replaying assert (a hole inside a comprehension or lambda) runs whole
in the candidate's process too, so its expected parts are there as well.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.machinery
import itertools
import json
import math
import sys
from dataclasses import dataclass
from types import CodeType

from . import bounds, plain
from .child import REPLAY_HOLE, REPORT

TRUSTED_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "bytearray", "bytes", "chr", "complex", "dict", "divmod",
                 "enumerate", "filter", "float", "frozenset", "hex", "int", "isinstance", "len", "list", "map", "max",
                 "min", "oct", "ord", "pow", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple",
                 "zip")
}
TRUSTED_MODULES = {"math": math}
PURE_MODULES = frozenset({"math", "cmath", "operator", "string", "fractions", "statistics"})
BUILTIN_NAMES = frozenset(dir(builtins))
_LITERAL_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Name, ast.Attribute, ast.Call,
                  ast.keyword, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Subscript, ast.Slice, ast.Starred,
                  ast.expr_context, ast.unaryop, ast.operator, ast.cmpop)
HOLES, EXPECTED, OPERATE, CALL, METHOD, STEPS, FORMAT = "__h", "__r", "__op", "__call", "__method", "__steps", "__format"
ON_VALUE, RECEIVER = "__on_value", "__sandbox_value"
# Methods the plain types (str, bytes, list, tuple, dict, set, int, float) answer themselves:
# called on a candidate's value of such a type, they are computed here on its plain copy, so
# a subclass's own ``count`` or ``keys`` decides nothing (as its ``__eq__`` decides nothing).
PLAIN_METHODS = frozenset(
    name for kind in (str, bytes, list, tuple, dict, set, frozenset, int, float) for name in dir(kind)
    if not name.startswith("_") and name not in {"append", "extend", "insert", "remove", "pop", "clear", "sort",
                                                  "reverse", "update", "add", "discard", "setdefault", "popitem",
                                                  "intersection_update", "difference_update",
                                                  "symmetric_difference_update"}
) | {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__contains__", "__len__", "__getitem__"}
# Builtins that read a value's own methods (``__len__``, ``__iter__``...): applied to the
# candidate's value alone, computed here on its plain copy too.
_VALUE_CALLS = frozenset({"len", "sorted", "sum", "min", "max", "list", "tuple", "set", "frozenset", "str", "abs",
                          "int", "float", "any", "all", "reversed", "dict"})
# Builtins the trusted side may apply to the candidate's values (abs(f(x) - 1.5)): each costs
# time in proportion to its arguments' size, which plain decoding bounds.
_SPLIT_CALLS = frozenset({"abs", "round", "min", "max", "int", "float", "complex", "bool", "len", "sum",
                          "str", "chr", "ord", "hex", "oct", "isinstance"})
HOLE, LITERAL, REFERENCE = "hole", "literal", "reference"
MAX_REQUIRED = 10_000  # reports a test must produce, at most (the trusted side checks each)


@dataclass(frozen=True)
class Site:
    """One assert: ``holes`` values from the candidate, ``expected`` from the reference run."""

    template: CodeType
    holes: int
    expected: int
    top: bool  # a statement of the test itself: must report exactly once, in order
    replay: bool = False  # reports [hole, value] pairs in the order the holes ran (see ``_Splitter``)


@dataclass(frozen=True)
class Block:
    """One test: the steps the candidate runs, the ones the reference runs, and the sites."""

    source: str
    steps: tuple  # wire: ["x", statement] or ["a", site, [hole, ...]]
    reference_steps: tuple
    sites: tuple[Site, ...]
    required: tuple[int, ...] = ()  # nested sites that must report (as often as listed) unless it raised
    pinned: tuple = ()  # (site, ({hole: value}, ...)): a loop's own variables, per report, known here

    @property
    def top_sites(self) -> tuple[int, ...]:
        return tuple(index for index, site in enumerate(self.sites) if site.top)

    @property
    def needs_reference(self) -> bool:
        return any(site.expected for site in self.sites)


@dataclass(frozen=True)
class Plan:
    blocks: tuple[Block, ...]
    setup: str  # the set-up the candidate's process runs: its functions' asserts made reports
    reference: dict | None  # a job (code, setup, tests) with no candidate code, when needed

    @functools.cached_property
    def reference_key(self) -> str | None:
        """Equal for plans whose reference runs are the same job (one run serves them all)."""
        return None if self.reference is None else json.dumps(self.reference, sort_keys=True)


# --- names -----------------------------------------------------------------------------

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def _binds(node: ast.AST, plain_imports: bool) -> set[str]:
    """The names this very node binds (not its children).

    ``plain_imports=False`` leaves out ``import x`` without an alias: that binds the real
    module, which is what a test naming ``x`` means anyway.
    """
    if isinstance(node, ast.Name):
        return set() if isinstance(node.ctx, ast.Load) else {node.id}
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.arg):
        return {node.arg}
    if isinstance(node, ast.Import):
        return {alias.asname or alias.name.split(".")[0] for alias in node.names if plain_imports or alias.asname}
    if isinstance(node, ast.ImportFrom):
        return {alias.asname or alias.name for alias in node.names}
    if isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
        return {node.name}
    return set()


def _bindings(node: ast.AST, *, plain_imports: bool = True) -> tuple[set[str], set[str]]:
    """(names bound in the scope ``node`` runs in, names bound in scopes nested inside it).

    ``global x`` anywhere counts as binding ``x`` outside.  Iterative: no recursion limit.
    """
    outer, inner = set(), set()
    stack = [(node, False)]
    while stack:
        current, nested = stack.pop()
        if isinstance(current, ast.Global):
            outer.update(current.names)
        (inner if nested else outer).update(_binds(current, plain_imports))
        opens = nested or isinstance(current, _SCOPES)
        stack.extend((child, opens) for child in ast.iter_child_nodes(current))
    return outer, inner


def _outer_bound(tree: ast.Module, source: str) -> set[str]:
    """``_bindings(tree, plain_imports=False)[0]``, without walking function bodies when it can.

    Only a ``global`` statement inside a function binds outside it; without the word in the
    source, the bodies are skipped (this runs once per candidate).
    """
    if "global" in source:
        return _bindings(tree, plain_imports=False)[0]
    names, stack = set(), [tree]
    while stack:
        current = stack.pop()
        names.update(_binds(current, plain_imports=False))
        if not isinstance(current, _SCOPES):
            stack.extend(ast.iter_child_nodes(current))
    return names


def _bound(node: ast.AST) -> set[str]:
    """Every name a source could bind, in any scope (conservative); ``import math`` binds the
    real module, which is what a test naming ``math`` means anyway."""
    outer, inner = _bindings(node, plain_imports=False)
    return outer | inner


def _loaded(node: ast.AST) -> set[str]:
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)}


def _free(node: ast.AST) -> set[str]:
    """Names ``node`` reads from the scope it runs in (not its comprehensions' or functions' own):
    ``_loaded(node) - _bindings(node)[1]`` in one walk (it runs for every operand of every assert)."""
    loaded, inner = set(), set()
    stack = [(node, False)]
    while stack:
        current, nested = stack.pop()
        if type(current) is ast.Name:
            if type(current.ctx) is ast.Load:
                loaded.add(current.id)
            elif nested:
                inner.add(current.id)
            continue
        if nested:
            inner.update(_binds(current, True))
        opens = nested or isinstance(current, _SCOPES)
        stack.extend((child, opens) for child in ast.iter_child_nodes(current))
    return loaded - inner


@functools.lru_cache(maxsize=4096)
def importable(name: str) -> bool:
    """A top-level module of the standard library or an installed package (never imported here).

    Not a file beside the caller: the sandbox runs an isolated interpreter that cannot
    import those, and a folder that happens to share a function's name must not make
    that name a module.
    """
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    packages = [entry for entry in sys.path if "site-packages" in entry or "dist-packages" in entry]
    try:
        return importlib.machinery.PathFinder.find_spec(name, packages) is not None
    except (ImportError, ValueError):
        return False


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except Exception:  # SyntaxError, ValueError (NUL bytes), RecursionError, MemoryError
        return None


@functools.lru_cache(maxsize=4096)
def _trusted_names(tests: tuple[str, ...], setup: str) -> frozenset[str]:
    """The names the tests and set-up read that exist without any candidate: builtins, modules."""
    trees = [tree for tree in map(_parse, (*tests, setup)) if tree is not None]
    used = set().union(*map(_loaded, trees))
    return frozenset(name for name in used if name in BUILTIN_NAMES or importable(name))


def redefined_names(code: str, names: frozenset[str]) -> frozenset[str]:
    """Which of these builtin or module names the candidate binds at module level (``def sum``).

    A candidate that does not parse fails before any test runs: it binds nothing.
    """
    if not any(name in code for name in names):
        return frozenset()
    tree = _parse(code)
    return frozenset(_outer_bound(tree, code) & names) if tree is not None else frozenset()


# --- splitting one assert --------------------------------------------------------------

def _literal(node: ast.AST, rebound: frozenset[str], local: frozenset[str] = frozenset()) -> bool:
    """Built only from constants, pure builtins and ``local`` names (a comprehension's own)."""
    for sub in ast.walk(node):
        if not isinstance(sub, _LITERAL_NODES):
            return False
        if isinstance(sub, ast.Name) and sub.id not in local and (
                sub.id in rebound or (sub.id not in TRUSTED_BUILTINS and sub.id not in TRUSTED_MODULES)):
            return False
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("_"):
            return False
    return True


def _is_isclose(node: ast.AST, rebound: frozenset[str]) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isclose"
            and _literal(node.func, rebound) and not any(isinstance(a, ast.Starred) for a in node.args))


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _decides(node: ast.AST) -> bool:
    """Does a comparison or a truth test sit anywhere in this expression?"""
    return any(isinstance(sub, (ast.Compare, ast.BoolOp, ast.IfExp)) or
               (isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.Not)) for sub in ast.walk(node))


def _targets(node: ast.AST) -> set[str]:
    """The names a comprehension's ``for`` targets or a lambda's parameters bind."""
    if isinstance(node, ast.Lambda):
        return _bindings(node.args)[0]
    return set().union(*(_bindings(generator.target)[0] for generator in node.generators))


class _Splitter:
    """Cuts an assert's test into operands; each becomes a hole, stays, or goes to the reference.

    An operand of the candidate's that contains a comparison (``all(f(i) == i for i in
    ...)``, ``bool(f(3) == 9)``, ``[f(2) == 4][0]``) is not a hole: its calls, displays,
    subscripts, comprehensions and lambdas are rebuilt here around smaller holes.  A hole
    inside a comprehension or lambda reads that scope's variables: such a site *replays*
    (``replay``): the candidate's process evaluates the whole assert, each hole reporting
    every value it takes, in order, and the template here takes them in the same order
    while it runs the comprehension itself.
    """

    def __init__(self, candidate: set[str], rebound: frozenset[str], nested: bool):
        self.candidate, self.rebound, self.nested = candidate, rebound, nested
        self.holes: list[str] = []
        self.expected: list[str] = []
        self.hole_names: set[str] = set()
        self.hole_nodes: dict[int, int] = {}  # id(original node) -> hole index
        self.local: frozenset[str] = frozenset()  # the enclosing comprehensions' and lambdas' names
        self.replay = False

    def _theirs(self, node: ast.expr) -> set[str]:
        """The candidate's names this operand reads (a comprehension's own variables are not)."""
        return (_free(node) - self.local) & self.candidate

    def _side(self, node: ast.expr) -> str:
        if self._theirs(node):
            return HOLE
        if _literal(node, self.rebound, self.local):
            return LITERAL
        return HOLE if self.nested or _free(node) & self.local else REFERENCE

    def _slot(self, node: ast.expr, truth: bool, into: list[str], name: str) -> ast.expr:
        expr = ast.Call(ast.Name("bool", ast.Load()), [node], []) if truth else node
        into.append(ast.unparse(expr))
        if into is self.holes:
            self.hole_nodes[id(node)] = len(into) - 1
            self.replay |= bool(self.local and _free(node) & self.local)
        return ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(len(into) - 1), ast.Load())

    def _rooted(self, node: ast.expr) -> bool:
        """Is this the candidate's own object, or something reached through it (``f(x)[0]``)?"""
        while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id in self.candidate - self.local

    def _trusted_call(self, node: ast.expr) -> bool:
        func = node.func
        if isinstance(func, ast.Lambda):
            return True
        if isinstance(func, ast.Name):
            return func.id in TRUSTED_BUILTINS and func.id not in self.rebound | self.candidate | self.local
        return isinstance(func, ast.Attribute) and not self._rooted(func.value) and _literal(func.value, self.rebound)

    def _opened(self, node: ast.expr) -> bool:
        """Must this operand of the candidate's be computed here around smaller holes?

        Always for arithmetic, f-strings and a literal's methods or ``math``'s functions
        (the candidate's ``__add__`` or ``__format__`` must not decide, nor its patched
        ``math``); for the rest, where it holds a comparison or mixes in an expected value.
        """
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.IfExp, ast.JoinedStr)):
            return True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and self._trusted_call(node)
                and not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)):
            return True
        if not _decides(node) and not self._mixed(node):
            return False
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return not any(isinstance(e, ast.Starred) for e in node.elts)
        if isinstance(node, ast.Dict):
            return None not in node.keys
        if isinstance(node, ast.Subscript):
            return not self._rooted(node.value)
        if isinstance(node, ast.Call):
            return (self._trusted_call(node) and not any(isinstance(a, ast.Starred) for a in node.args)
                    and all(k.arg for k in node.keywords))
        return isinstance(node, (*_COMPREHENSIONS, ast.Lambda))

    def _on_value(self, node: ast.expr) -> ast.expr | None:
        """``f(x).count(1)``, ``len(f(x))``: a plain type's method, or a builtin, applied to the
        candidate's value with literal arguments.

        The candidate's process reports the value and its own answer in one hole (the value
        is computed once); here the answer is computed again on the value's plain copy, and
        the candidate's is used only where the value is no plain data (its own class).
        """
        if isinstance(node, ast.Subscript):
            return self._item_of_value(node)
        if not isinstance(node, ast.Call) or (self.local and self.local & _free(node)) or any(
                isinstance(a, ast.Starred) for a in node.args) or not all(k.arg for k in node.keywords):
            return None
        func, arguments = node.func, [*node.args, *(k.value for k in node.keywords)]
        if isinstance(func, ast.Attribute) and func.attr in PLAIN_METHODS and self._theirs(func.value):
            value, rest, extra = func.value, arguments, node.args
            call = ast.Call(ast.Attribute(ast.Name(RECEIVER, ast.Load()), func.attr, ast.Load()), node.args,
                            node.keywords)
            how = ast.Constant(func.attr)
        elif (isinstance(func, ast.Name) and func.id in _VALUE_CALLS and func.id not in self.rebound | self.candidate
              and node.args and self._theirs(node.args[0])):
            value, rest, extra = node.args[0], arguments[1:], node.args[1:]
            call = ast.Call(func, [ast.Name(RECEIVER, ast.Load()), *node.args[1:]], node.keywords)
            how = ast.Name(func.id, ast.Load())
        else:
            return None
        if not all(_literal(a, self.rebound) for a in rest):
            return None
        return ast.Call(ast.Name(ON_VALUE, ast.Load()), [self._value_hole(node, value, call), how, *extra],
                        node.keywords)

    def _item_of_value(self, node: ast.Subscript) -> ast.expr | None:
        """``f(x)[0]``, ``f(x)[1:]``, ``f(x)['k']`` with a literal index: as ``_on_value``, the
        item taken here from the value's plain copy (a subclass's ``__getitem__`` decides nothing)."""
        if (self.local and self.local & _free(node)) or not self._theirs(node.value):
            return None
        if isinstance(node.slice, ast.Slice):
            parts = [part or ast.Constant(None) for part in (node.slice.lower, node.slice.upper, node.slice.step)]
            how = ast.Constant("[:]")
        else:
            parts, how = [node.slice], ast.Constant("[]")
        if not all(_literal(part, self.rebound) for part in parts):
            return None
        call = ast.Subscript(ast.Name(RECEIVER, ast.Load()), node.slice, ast.Load())
        return ast.Call(ast.Name(ON_VALUE, ast.Load()), [self._value_hole(node, node.value, call), how, *parts], [])

    def _value_hole(self, node: ast.expr, value: ast.expr, call: ast.expr) -> ast.expr:
        """The hole that reports the candidate's value and its own answer (``call`` on it)."""
        pair = ast.Call(ast.Lambda(ast.arguments([], [ast.arg(RECEIVER)], None, [], [], None, []),
                                   ast.Tuple([ast.Name(RECEIVER, ast.Load()), call], ast.Load())), [value], [])
        self.hole_names |= _free(node)
        return self._slot(pair, False, self.holes, HOLES)

    def _scoped(self, node: ast.expr) -> ast.expr:
        """A comprehension or lambda rebuilt here, its own names local to what it holds."""
        outer = self.local
        self.local = outer | _targets(node)
        try:
            if isinstance(node, ast.Lambda):
                return ast.Lambda(node.args, self.split(node.body))
            generators = [ast.comprehension(g.target, ast.Call(ast.Name(STEPS, ast.Load()), [self.split(g.iter)], []),
                                            [self.split(i, True) for i in g.ifs], g.is_async) for g in node.generators]
            if isinstance(node, ast.DictComp):
                return ast.DictComp(self.split(node.key), self.split(node.value), generators)
            return type(node)(self.split(node.elt), generators)
        finally:
            self.local = outer

    def _parts(self, node: ast.expr) -> list[ast.expr] | None:
        """The operands the trusted side can combine itself, for the node kinds it computes."""
        if isinstance(node, ast.BinOp):
            return [node.left, node.right]
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
            return [node.operand]
        if isinstance(node, ast.IfExp):
            return [node.test, node.body, node.orelse]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and not any(isinstance(e, ast.Starred) for e in node.elts):
            return list(node.elts)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SPLIT_CALLS
                and node.func.id not in self.rebound | self.candidate
                and not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)):
            return [*node.args, *(k.value for k in node.keywords)]
        return None

    def _mixed(self, node: ast.expr) -> bool:
        """Does this operand combine the candidate's values with an expected one (``f(x) - 1.5``)?

        Then it is split further, or the candidate's own ``__sub__`` would decide the result.
        In a nested assert a variable counts as such a value: ``candidate(x, y) == x + y``
        in a loop becomes ``__h[0] == __h[1] + __h[2]``, the sum computed here.
        """
        parts = self._parts(node)
        return parts is not None and any(not self._theirs(part) or self._mixed(part)
                                         or (self.nested and isinstance(part, ast.Name)) for part in parts)

    def _rebuild(self, node: ast.expr, truth: bool) -> ast.expr:
        if isinstance(node, (*_COMPREHENSIONS, ast.Lambda)):
            return self._scoped(node)
        if isinstance(node, ast.JoinedStr):  # ''.join of its parts, each formatted (and bounded) here
            parts = [ast.Call(ast.Name(FORMAT, ast.Load()), [self.split(part.value), ast.Constant(part.conversion),
                                                              self.split(part.format_spec) if part.format_spec
                                                              else ast.Constant("")], [])
                     if isinstance(part, ast.FormattedValue) else part for part in node.values]
            return ast.Call(ast.Attribute(ast.Constant(""), "join", ast.Load()), [ast.List(parts, ast.Load())], [])
        if isinstance(node, ast.Subscript):
            return ast.Subscript(self.split(node.value), self._slice(node.slice), ast.Load())
        if isinstance(node, ast.Dict):
            return ast.Dict([self.split(k) for k in node.keys], [self.split(v) for v in node.values])
        if isinstance(node, ast.Call):
            arguments = [self.split(a) for a in node.args]
            keywords = [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords]
            if isinstance(node.func, ast.Lambda):
                return ast.Call(self.split(node.func), arguments, keywords)
            if isinstance(node.func, ast.Attribute):  # a literal's method, or math's function: checked
                return ast.Call(ast.Name(METHOD, ast.Load()),
                                [node.func.value, ast.Constant(node.func.attr), *arguments], keywords)
            return ast.Call(ast.Name(CALL, ast.Load()), [node.func, *arguments], keywords)
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) else [node.operand]
            return ast.Call(ast.Name(OPERATE, ast.Load()),
                            [ast.Constant(type(node.op).__name__), *map(self.split, operands)], [])
        if isinstance(node, ast.IfExp):
            return ast.IfExp(self.split(node.test, True), self.split(node.body, truth), self.split(node.orelse, truth))
        return type(node)([self.split(e) for e in node.elts], ast.Load())

    def _slice(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Slice):
            return ast.Slice(*(part and self.split(part) for part in (node.lower, node.upper, node.step)))
        return self.split(node)

    def split(self, node: ast.expr, truth: bool = False) -> ast.expr:
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(node.op, [self.split(value, truth) for value in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ast.UnaryOp(ast.Not(), self.split(node.operand, truth=True))
        if isinstance(node, ast.Compare):
            return ast.Compare(self.split(node.left), node.ops, [self.split(c) for c in node.comparators])
        if _is_isclose(node, self.rebound):
            return ast.Call(node.func, [self.split(a) for a in node.args],
                            [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords])
        side = self._side(node)
        if side == HOLE and not self._rooted(node) and self._opened(node):
            return self._rebuild(node, truth)
        if side == HOLE and (on_value := self._on_value(node)) is not None:
            return on_value
        if side == HOLE:
            self.hole_names |= _free(node)
            return self._slot(node, truth, self.holes, HOLES)
        if side == REFERENCE:
            return self._slot(node, truth, self.expected, EXPECTED)
        return node


def split_assert(test: ast.expr, candidate: set[str], shadowing: frozenset[str], rebound: frozenset[str],
                 *, nested: bool, top: bool) -> tuple[Site, _Splitter]:
    """Split one assert; with no operand of the candidate's, a redefined builtin is the tested one."""
    splitter = _Splitter(candidate, rebound, nested)
    template = splitter.split(test, truth=True)
    if not splitter.holes and _loaded(test) & shadowing:
        splitter = _Splitter(candidate | (_loaded(test) & shadowing), rebound, nested)
        template = splitter.split(test, truth=True)
    code = compile(ast.fix_missing_locations(ast.Expression(template)), "<assert>", "eval")
    return Site(code, len(splitter.holes), len(splitter.expected), top, splitter.replay), splitter


class _Replaying(ast.NodeTransformer):
    """The assert as the candidate's process evaluates it for a replaying site: each hole
    becomes ``__sandbox_hole__(index, lambda: hole)``, which reports every value it takes."""

    def __init__(self, splitter: _Splitter):
        self.splitter = splitter

    def visit(self, node: ast.AST) -> ast.AST:
        index = self.splitter.hole_nodes.get(id(node))
        if index is None:
            return self.generic_visit(node)
        return ast.Call(ast.Name(REPLAY_HOLE, ast.Load()),
                        [ast.Constant(index), _thunk(self.splitter.holes[index])], [])


def _thunk(source: str) -> ast.Lambda:
    return ast.Lambda(ast.arguments([], [], None, [], [], None, []), ast.parse(source, mode="eval").body)


def replayed(test: ast.expr, splitter: _Splitter) -> ast.expr:
    """The candidate's side of a replaying site (``test`` is spent: its nodes are replaced)."""
    return ast.fix_missing_locations(_Replaying(splitter).visit(test))


def evaluate(site: Site, holes, expected) -> bool:
    """The template on the candidate's values and the reference's (their exceptions propagate)."""
    scope = {"__builtins__": TRUSTED_BUILTINS, **TRUSTED_MODULES, HOLES: holes, EXPECTED: expected,
             OPERATE: bounds.operate, CALL: bounds.call_function, METHOD: bounds.call_method, STEPS: bounds.Steps(),
             FORMAT: bounds.format_value, ON_VALUE: _on_plain_value}
    return bool(eval(site.template, scope))


_COMPARISONS = frozenset({"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"})


def _on_plain_value(pair, how, *arguments, **keywords):
    """The answer of a method (``how`` its name) or builtin on the candidate's value, computed
    here where the value is plain data, else the candidate's own answer (see ``_on_value``)."""
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise plain.Unreadable("malformed value")
    value, theirs = pair
    if _opaque_inside(value):
        if how in _COMPARISONS:  # as ``==`` on such a value: its own class must not decide
            raise plain.UncheckableValue(f"the judge cannot compare a value of this type ({how}, not plain data)")
        return theirs
    if how == "[]":
        return value[arguments[0]]
    if how == "[:]":
        return value[slice(*arguments)]
    if isinstance(how, str):
        return bounds.call_method(value, how, *arguments, **keywords)
    return bounds.call_function(how, value, *arguments, **keywords)


def _opaque_inside(value, depth: int = 0) -> bool:
    if isinstance(value, plain.Opaque):
        return True
    if depth > plain.MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(_opaque_inside(k, depth + 1) or _opaque_inside(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_opaque_inside(item, depth + 1) for item in value)
    return False


# --- compiling a job -------------------------------------------------------------------

class _Nested(ast.NodeTransformer):
    """Asserts inside a statement become reports: ``__sandbox_report__(site, (lambda: hole, ...))``."""

    def __init__(self, compiler: "_BlockCompiler"):
        self.compiler = compiler

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        compiler = self.compiler
        site, splitter = split_assert(node.test, compiler.candidate, compiler.shadowing, compiler.rebound,
                                      nested=True, top=False)
        compiler.sites.append(site)
        compiler.hole_sources[len(compiler.sites) - 1] = tuple(splitter.holes)
        if site.replay:
            arguments = [ast.Tuple([], ast.Load()), ast.Lambda(_thunk("0").args, replayed(node.test, splitter))]
        else:
            arguments = [ast.Tuple([_thunk(h) for h in splitter.holes], ast.Load())]
        call = ast.Call(ast.Name(REPORT, ast.Load()), [ast.Constant(len(compiler.sites) - 1), *arguments], [])
        return ast.copy_location(ast.Expr(call), node)


SEAL = "__sandbox_seal__"


def sealed(node: ast.stmt) -> str:
    """A statement with reports, run inside a function that receives the report functions.

    Its reports then call a parameter (a closure cell for the functions it defines, such
    as HumanEval's ``check``), not a global: a candidate's call inside the statement
    (``f(-1)`` in a ``try``, ``r = f(x)`` in a loop) cannot silence the reports after it
    by rebinding a name in its globals.  Names the statement binds stay globals.  A
    statement the function would change (``from m import *``, a top-level ``return``) is
    left as it is.
    """
    source = ast.unparse(node)
    if REPORT not in source and REPLAY_HOLE not in source:
        return source
    if _may_leave_early(node) or any(isinstance(sub, ast.ImportFrom) and any(a.name == "*" for a in sub.names)
                                     for sub in ast.walk(node)):
        return source
    names = sorted(_bindings(node)[0] - {REPORT, REPLAY_HOLE})
    parameters = ast.arguments([], [ast.arg(REPORT), ast.arg(REPLAY_HOLE)], None, [], [], None, [])
    body = ([ast.Global(names)] if names else []) + [node]
    wrapper = ast.FunctionDef(SEAL, parameters, body, [], None, None)
    call = ast.Expr(ast.Call(ast.Name(SEAL, ast.Load()), [ast.Name(REPORT, ast.Load()),
                                                           ast.Name(REPLAY_HOLE, ast.Load())], []))
    return ast.unparse(ast.fix_missing_locations(ast.Module([wrapper, call], [])))


def _report_site(node: ast.stmt) -> int | None:
    """The site of a statement that is a rewritten assert, else None."""
    if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
            and node.value.func.id == REPORT):
        return node.value.args[0].value
    return None


def _may_leave_early(node: ast.stmt) -> bool:
    """Could this statement skip what follows it without raising (return, break, yield...)?"""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.Return, ast.Break, ast.Continue, ast.Yield, ast.YieldFrom, ast.Await)):
            return True
        stack.extend(child for child in ast.iter_child_nodes(current) if not isinstance(child, _SCOPES))
    return False


def _constant(node: ast.expr, rebound: frozenset[str]):
    """The value of a literal expression (``range(3)``, ``[(1, 2)]``, ``True``), else None."""
    if not _literal(node, rebound):
        return None
    try:
        return _computed(node)
    except Exception:
        return None


def _computed(node: ast.expr, known: dict | None = None):
    """A literal expression's value, computed here with the real builtins and ``known`` names."""
    return eval(compile(ast.Expression(node), "<literal>", "eval"),
                {"__builtins__": TRUSTED_BUILTINS, **TRUSTED_MODULES, **(known or {})})


def _runs(node: ast.stmt, rebound: frozenset[str]) -> list[list[ast.stmt]]:
    """The statement lists a compound statement runs for sure, as often as it runs them.

    ``for`` over a literal iterable (``range(3)``, ``[1, 2]``), ``if`` on a literal test,
    ``with``, a ``try``'s ``finally`` and the reports that open its body (a report never
    raises: a hole's exception is kept in the report).  Anything else (``while``, a loop
    over computed values) may legitimately run its body any number of times.
    """
    if isinstance(node, ast.With):
        return [node.body]
    if isinstance(node, ast.If):
        test = _constant(node.test, rebound)
        return [] if test is None else [node.body if test else node.orelse]
    if isinstance(node, ast.Try):
        opening = list(itertools.takewhile(lambda statement: _report_site(statement) is not None, node.body))
        return [opening, node.finalbody]
    if isinstance(node, ast.For) and not node.orelse:
        iterable = _constant(node.iter, rebound)
        try:
            return [node.body] * min(len(iterable), MAX_REQUIRED) if iterable is not None else []
        except TypeError:
            return []
    return []


_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None))


def _immutable(value) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return type(value) in (tuple, frozenset) and all(map(_immutable, value))
    return type(value) in _IMMUTABLE


def _literal_value(node: ast.expr, known: dict, rebound: frozenset[str]):
    """(True, value) of an expression of literals and ``known`` names, computed here; else (False, None)."""
    if not _literal(node, rebound, frozenset(known)):
        return False, None
    try:
        value = _computed(node, known)
    except Exception:
        return False, None
    return _immutable(value), value


def _literal_items(node: ast.expr, known: dict, rebound: frozenset[str]) -> tuple | None:
    """The items of a literal iterable (``range(3)``, ``[(1, 2), (3, 4)]``) if all are immutable."""
    if not _literal(node, rebound, frozenset(known)):
        return None
    try:
        iterable = _computed(node, known)
        if len(iterable) > MAX_REQUIRED:
            return None
        items = tuple(iterable)
    except Exception:
        return None
    return items if all(map(_immutable, items)) else None


def _assigned(node: ast.stmt, known: dict, rebound: frozenset[str]) -> tuple[str, object] | None:
    """``name = literal`` or ``name += literal`` over ``known`` names: (name, its new value), else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        name, value = node.targets[0].id, node.value
    elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id in known:
        name, value = node.target.id, ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value)
    else:
        return None
    ok, result = _literal_value(ast.fix_missing_locations(value), known, rebound)
    return (name, result) if ok else None


def _known_after(node: ast.stmt, known: dict, rebound: frozenset[str]) -> dict:
    """The test's names bound to immutable literals once this statement of the test has run."""
    assigned = _assigned(node, known, rebound)
    after = {name: value for name, value in known.items() if name not in _bindings(node)[0]}
    if assigned is not None:
        after[assigned[0]] = assigned[1]
    return after


def _loop_course(node: ast.stmt, known: dict, rebound: frozenset[str]) -> list[list] | None:
    """Each turn of a test's loop as this side can follow it: [(site, names' values), ...] for
    the reports in its body, in order; None where it cannot.

    ``for`` over a literal iterable (immutable items, plain names as targets) whose body
    rebinds none of them, or ``while`` on a literal test over the test's earlier literal
    names whose body is only reports and ``name = literal`` / ``name += literal`` steps:
    this side then knows every turn, and neither a candidate that rebinds the loop's names
    (``globals()['i'] = 0``) nor one that silences the reports can change what is checked.
    Nothing may leave the loop early.
    """
    if getattr(node, "orelse", True) or _may_leave_early(node):
        return None
    steps = [statement for statement in node.body if _report_site(statement) is None]
    if isinstance(node, ast.For):
        targets = node.target.elts if isinstance(node.target, ast.Tuple) else [node.target]
        iterable = _literal_items(node.iter, known, rebound)
        if iterable is None or not all(isinstance(t, ast.Name) for t in targets):
            return None
        if any(_bindings(statement)[0] & ({t.id for t in targets} | set(known)) for statement in steps):
            return None  # the body rebinds what it loops over: followed no further
        course = []
        for item in iterable:
            values = item if len(targets) > 1 else (item,)
            if len(values) != len(targets):
                return None
            state = {**known, **{t.id: v for t, v in zip(targets, values)}}
            course.append([(site, state) for site in map(_report_site, node.body) if site is not None])
        return course
    if not isinstance(node, ast.While) or any(_assigned(statement, known, rebound) is None for statement in steps):
        return None
    course, state = [], dict(known)
    while len(course) <= MAX_REQUIRED:
        ok, going = _literal_value(node.test, state, rebound)
        if not ok:
            return None
        if not going:
            return course
        turn = []
        for statement in node.body:
            site = _report_site(statement)
            if site is not None:
                turn.append((site, dict(state)))
                continue
            step = _assigned(statement, state, rebound)
            if step is None:
                return None
            state[step[0]] = step[1]
        course.append(turn)
    return None


def _always_reported(body: list[ast.stmt], rebound: frozenset[str]) -> list[int]:
    """The sites a block of statements reports whenever it runs to its end, once per report.

    A candidate's process that swallowed reports (by rebinding the report function, or a
    tracing hook that jumps over lines) would otherwise pass a check function, or a loop,
    by saying nothing.
    """
    required = []
    for node in body:
        site = _report_site(node)
        if site is not None:
            required.append(site)
            continue
        if _may_leave_early(node):
            break
        for statements in _runs(node, rebound):
            required += _always_reported(statements, rebound)
            if len(required) >= MAX_REQUIRED:
                return required[:MAX_REQUIRED]
    return required[:MAX_REQUIRED]


class _BlockCompiler:
    def __init__(self, candidate: set[str], shadowing: frozenset[str], rebound: frozenset[str],
                 data_names: set[str], sites: tuple[Site, ...] = (), functions: dict | None = None):
        self.candidate, self.shadowing, self.rebound = candidate, shadowing, rebound
        self.data_names = data_names
        self.sites: list[Site] = list(sites)  # the set-up's come first: any test may call them
        self.functions: dict[str, list[int]] = dict(functions or {})  # name -> sites a call must report
        self.required: list[int] = []
        self.steps: list = []
        self.private: list[set[str] | None] = []  # per step: the names it binds, if it may be withheld
        self.reference_steps: list = []
        self.hole_sources: dict[int, tuple[str, ...]] = {}
        self.known: dict[str, object] = {}  # the test's names bound to immutable literals so far
        self.pinned: dict[int, list[dict]] = {}

    def assertion(self, node: ast.Assert) -> None:
        site, splitter = split_assert(node.test, self.candidate, self.shadowing, self.rebound,
                                      nested=False, top=True)
        self.sites.append(site)
        if site.replay:
            self.steps.append(["r", len(self.sites) - 1, ast.unparse(replayed(node.test, splitter))])
        else:
            self.steps.append(["a", len(self.sites) - 1, splitter.holes])
        self.private.append(None)
        if splitter.expected:
            self.reference_steps.append(["a", len(self.sites) - 1, splitter.expected])
        self.candidate |= splitter.hole_names & self.data_names  # the candidate may have mutated them

    def statement(self, node: ast.stmt) -> None:
        bound, loaded = _bindings(node)[0], _free(node)
        node = ast.fix_missing_locations(_Nested(self).visit(node))
        source = sealed(node)
        self.steps.append(["x", source])
        self.note_function(node)
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id in self.functions):
            self.required += self.functions[node.value.func.id]
        self.required += _always_reported([node], self.rebound)
        self.follow_loop(node)
        self.known = _known_after(node, self.known, self.rebound)
        if loaded & self.candidate:
            self.candidate |= bound | (loaded & self.data_names)
            self.private.append(None)
        else:
            self.candidate -= bound
            self.data_names |= bound
            self.reference_steps.append(["x", source])
            self.private.append(bound if _withholdable(node, self.rebound) else None)


    def follow_loop(self, node: ast.stmt) -> None:
        """A test's ``for`` or ``while`` whose course this side can follow (see ``_loop_course``):
        each report in its body is pinned to the loop's variables of its turn, and the loop
        must report as often as it turns (``_runs`` counts a ``for`` over a plain literal)."""
        course = _loop_course(node, self.known, self.rebound)
        if course is None:
            return
        if isinstance(node, ast.While) or _constant(node.iter, self.rebound) is None:
            self.required += _always_reported(node.body, self.rebound) * len(course)
        for turn in course:
            for site, variables in turn:
                self.pinned.setdefault(site, []).append(
                    {index: variables[hole] for index, hole in enumerate(self.hole_sources.get(site, ()))
                     if hole in variables})

    def note_function(self, node: ast.stmt) -> None:
        """A function defined here: which reports a call of it must produce."""
        if isinstance(node, ast.FunctionDef):
            self.functions[node.name] = _always_reported(node.body, self.rebound)


def _setup_functions(tree: ast.Module, compiler: _BlockCompiler) -> _BlockCompiler:
    """Asserts in the set-up's functions (HumanEval's ``check(candidate)``) become reports.

    Their expected sides then stay here like any test's, instead of running, and lying in
    plain sight, in the candidate's process.
    """
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _Nested(compiler).visit(node)
            compiler.note_function(node)
    ast.fix_missing_locations(tree)
    return compiler


def _setup_statements(tree: ast.Module, candidate: set[str], data_names: set[str],
                      rebound: frozenset[str]) -> tuple[list[str], list, list]:
    """Walk the set-up: statements that use the candidate's names taint what they touch.

    Returns the clean statements (for the reference run), and every statement as a step
    with the names it binds where it may be withheld from the candidate's process.
    """
    clean, steps, private = [], [], []
    for node in tree.body:
        bound, loaded = _bindings(node)[0], _free(node)
        source = sealed(node)
        steps.append(["x", source])
        if loaded & candidate:
            candidate |= bound | (loaded & data_names)
            private.append(None)
        else:
            candidate -= bound
            data_names |= bound
            clean.append(source)
            private.append(bound if _withholdable(node, rebound) else None)
    return clean, steps, private


def _withholdable(node: ast.stmt, rebound: frozenset[str]) -> bool:
    """An assignment of data computed without the candidate and without side effects.

    Such a statement (``expected = sum(...)``) runs only in the reference run unless the
    candidate's side reads what it binds: there the candidate could read the expected
    value through its globals, a frame or ``gc``.  Calls of anything but a pure builtin
    might change state the candidate's side relies on (a seeded ``random``): those run
    in both.
    """
    if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return False
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if isinstance(sub, ast.Call) and not _pure(sub.func, rebound):
            return False
    return True


def _pure(func: ast.expr, rebound: frozenset[str]) -> bool:
    """A pure builtin, a function of a pure module (``math.factorial``), or a literal's method."""
    if isinstance(func, ast.Name):
        return func.id in TRUSTED_BUILTINS and func.id not in rebound
    if not isinstance(func, ast.Attribute) or func.attr.startswith("_"):
        return False
    root = func.value
    while isinstance(root, ast.Attribute):
        root = root.value
    return (isinstance(root, ast.Name) and root.id in PURE_MODULES) or isinstance(
        func.value, (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict))


def _reads(step: list) -> set[str]:
    sources = {"x": [step[1]], "r": [step[-1]]}.get(step[0], step[-1])
    return set().union(*(_loaded(_parse(source) or ast.Module([], [])) for source in sources))


def _withhold(parts: list[tuple[list, list]]) -> list[list]:
    """Each part's steps without the withholdable ones whose names the candidate's side never reads.

    ``parts`` are the set-up's and each test's (steps, private) in the order they run; a
    name is read if any later step of the candidate's reads it.
    """
    needed, kept_parts = set(), []
    for steps, private in reversed(parts):
        kept = []
        for step, binds in zip(reversed(steps), reversed(private)):
            if binds is not None and not binds & needed:
                continue
            needed |= _reads(step)
            kept.append(step)
        kept_parts.append(kept[::-1])
    return kept_parts[::-1]


def _reference_imports(blocks: list[Block], known: set[str]) -> list[str]:
    """``import x`` for each module an expected operand names and nothing binds (``sys``)."""
    names = {name for block in blocks for step in block.reference_steps if step[0] == "a"
             for source in step[2] for name in _free(ast.parse(source))}
    return [f"import {name}" for name in sorted(names - known - BUILTIN_NAMES) if importable(name)]


def compile_job(tests: tuple[str, ...], setup: str, code: str) -> Plan:
    """The plan for one candidate: the same for every candidate unless it redefines a builtin."""
    return _compile(tests, setup, redefined_names(code, _trusted_names(tests, setup)))


@functools.lru_cache(maxsize=8192)
def _compile(tests: tuple[str, ...], setup: str, redefined: frozenset[str]) -> Plan:
    setup_tree = _parse(setup) or ast.Module([], [])
    trees = [_parse(test) for test in tests]
    rebound = frozenset(_bound(setup_tree).union(*(_bound(t) for t in trees if t is not None)))
    used = set().union(*(_loaded(t) for t in (setup_tree, *trees) if t is not None))
    candidate, data_names = used - _trusted_names(tests, setup), set()
    shadowing = redefined - rebound
    in_setup = _setup_functions(setup_tree, _BlockCompiler(candidate, shadowing, rebound, data_names))
    clean_setup, setup_steps, setup_private = _setup_statements(setup_tree, candidate, data_names, rebound)
    compilers = []
    for source, tree in zip(tests, trees):
        compiler = _BlockCompiler(candidate, shadowing, rebound, data_names, tuple(in_setup.sites), in_setup.functions)
        if tree is None:
            compiler.steps.append(["x", source])  # compiling it in the child raises the SyntaxError there
            compiler.private.append(None)
        for node in tree.body if tree is not None else ():
            compiler.assertion(node) if isinstance(node, ast.Assert) else compiler.statement(node)
        candidate = compiler.candidate
        compilers.append(compiler)
    sent_setup, *sent_steps = _withhold([(setup_steps, setup_private)] + [(c.steps, c.private) for c in compilers])
    blocks = [Block(source, tuple(steps), tuple(c.reference_steps), tuple(c.sites), tuple(c.required),
                    tuple((site, tuple(turns)) for site, turns in c.pinned.items()))
              for source, c, steps in zip(tests, compilers, sent_steps)]
    reference = None
    if any(block.needs_reference for block in blocks):
        imports = _reference_imports(blocks, data_names | _bindings(setup_tree)[0])
        reference = {"code": "\n".join(imports), "setup": "\n".join(clean_setup),
                     "tests": [list(block.reference_steps) for block in blocks]}
    setup_source = "\n".join(step[1] for step in sent_setup) if _parse(setup) is not None else setup
    return Plan(tuple(blocks), setup_source, reference)
