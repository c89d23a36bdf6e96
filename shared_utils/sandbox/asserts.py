"""Compiling tests into what the candidate computes and what the trusted side decides.

Every test is a block of statements.  Each ``assert`` in it becomes a *site*: the parts that
depend on the candidate (*holes*) are evaluated in the candidate's process and come back as
plain data; a *template* evaluated only in this process combines them with the expected
side.  ``and``/``or``/``not``, comparisons and ``math.isclose`` are split here, and so is
arithmetic that mixes the candidate's values with expected ones (``abs(f(x) - 0.33) <
1e-6``: the candidate's ``__sub__`` must not decide; operations whose result would be huge
are refused).  The template keeps Python's short-circuit order: the candidate evaluates
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
  statements run in both processes, so they must be deterministic (a seeded ``random``).

Asserts nested in other statements (loops, functions a test or the set-up defines, such
as HumanEval's ``check(candidate)``) report each time they run.  Their operands are
literals or holes, since no reference run can follow a loop the candidate drives, and
arithmetic on the loop's variables (``x + y``, ``str(x)``) is done here on the values the
candidate's process reports.  A test that calls such a function must bring every report
that always runs (its straight-line asserts, those in a loop over a fixed ``range``), as
often as they run.  That keeps always-equal objects, patched builtins and silence out; the
candidate's process still reports the loop's variables and computes any other expected
side there: a documented weakness (5 HumanEval problems loop).
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.machinery
import json
import math
import operator
import sys
from dataclasses import dataclass
from types import CodeType

from .child import REPORT

TRUSTED_BUILTINS = {
    name: getattr(builtins, name)
    for name in ("abs", "all", "any", "bool", "bytearray", "bytes", "chr", "complex", "dict", "divmod",
                 "enumerate", "float", "frozenset", "hex", "int", "isinstance", "len", "list", "max", "min", "oct",
                 "ord", "pow", "range", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "zip")
}
TRUSTED_MODULES = {"math": math}
BUILTIN_NAMES = frozenset(dir(builtins))
_LITERAL_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Name, ast.Attribute, ast.Call,
                  ast.keyword, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Subscript, ast.Slice, ast.Starred,
                  ast.expr_context, ast.unaryop, ast.operator, ast.cmpop)
HOLES, EXPECTED, OPERATE = "__h", "__r", "__op"
# Builtins the trusted side may apply to the candidate's values (abs(f(x) - 1.5)): each costs
# time in proportion to its arguments' size, which plain decoding bounds.
_SPLIT_CALLS = frozenset({"abs", "round", "min", "max", "int", "float", "complex", "bool", "len", "sum",
                          "str", "chr", "ord", "hex", "oct", "isinstance"})
_OPERATORS = {
    "Add": operator.add, "Sub": operator.sub, "Mult": operator.mul, "Div": operator.truediv,
    "FloorDiv": operator.floordiv, "Mod": operator.mod, "Pow": operator.pow, "LShift": operator.lshift,
    "RShift": operator.rshift, "BitOr": operator.or_, "BitXor": operator.xor, "BitAnd": operator.and_,
    "MatMult": operator.matmul, "USub": operator.neg, "UAdd": operator.pos, "Invert": operator.invert,
}
MAX_RESULT_BITS = 1 << 22  # arithmetic on the candidate's numbers: about 1.3 million digits at most
HOLE, LITERAL, REFERENCE = "hole", "literal", "reference"
MAX_REQUIRED = 10_000  # reports a test must produce, at most (the trusted side checks each)


@dataclass(frozen=True)
class Site:
    """One assert: ``holes`` values from the candidate, ``expected`` from the reference run."""

    template: CodeType
    holes: int
    expected: int
    top: bool  # a statement of the test itself: must report exactly once, in order


@dataclass(frozen=True)
class Block:
    """One test: the steps the candidate runs, the ones the reference runs, and the sites."""

    source: str
    steps: tuple  # wire: ["x", statement] or ["a", site, [hole, ...]]
    reference_steps: tuple
    sites: tuple[Site, ...]
    required: tuple[int, ...] = ()  # nested sites that must report (as often as listed) unless it raised

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
    """Every name a source could bind, in any scope (conservative)."""
    outer, inner = _bindings(node)
    return outer | inner


def _loaded(node: ast.AST) -> set[str]:
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load)}


def _free(node: ast.AST) -> set[str]:
    """Names ``node`` reads from the scope it runs in (not its comprehensions' or functions' own)."""
    return _loaded(node) - _bindings(node)[1]


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

def _literal(node: ast.AST, rebound: frozenset[str]) -> bool:
    for sub in ast.walk(node):
        if not isinstance(sub, _LITERAL_NODES):
            return False
        if isinstance(sub, ast.Name) and (sub.id in rebound or (sub.id not in TRUSTED_BUILTINS
                                                                and sub.id not in TRUSTED_MODULES)):
            return False
        if isinstance(sub, ast.Attribute) and sub.attr.startswith("_"):
            return False
    return True


def _is_isclose(node: ast.AST, rebound: frozenset[str]) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "isclose"
            and _literal(node.func, rebound) and not any(isinstance(a, ast.Starred) for a in node.args))


class _Splitter:
    """Cuts an assert's test into operands; each becomes a hole, stays, or goes to the reference."""

    def __init__(self, candidate: set[str], rebound: frozenset[str], nested: bool):
        self.candidate, self.rebound, self.nested = candidate, rebound, nested
        self.holes: list[str] = []
        self.expected: list[str] = []
        self.hole_names: set[str] = set()

    def _side(self, node: ast.expr) -> str:
        if _free(node) & self.candidate:
            return HOLE
        if _literal(node, self.rebound):
            return LITERAL
        return HOLE if self.nested else REFERENCE

    def _slot(self, node: ast.expr, truth: bool, into: list[str], name: str) -> ast.expr:
        expr = ast.Call(ast.Name("bool", ast.Load()), [node], []) if truth else node
        into.append(ast.unparse(expr))
        return ast.Subscript(ast.Name(name, ast.Load()), ast.Constant(len(into) - 1), ast.Load())

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
        return parts is not None and any(not (_free(part) & self.candidate) or self._mixed(part)
                                         or (self.nested and isinstance(part, ast.Name)) for part in parts)

    def _rebuild(self, node: ast.expr, truth: bool) -> ast.expr:
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) else [node.operand]
            return ast.Call(ast.Name(OPERATE, ast.Load()),
                            [ast.Constant(type(node.op).__name__), *map(self.split, operands)], [])
        if isinstance(node, ast.IfExp):
            return ast.IfExp(self.split(node.test, True), self.split(node.body, truth), self.split(node.orelse, truth))
        if isinstance(node, ast.Call):
            return ast.Call(node.func, [self.split(a) for a in node.args],
                            [ast.keyword(k.arg, self.split(k.value)) for k in node.keywords])
        return type(node)([self.split(e) for e in node.elts], ast.Load())

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
        if side == HOLE and self._mixed(node):
            return self._rebuild(node, truth)
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
    return Site(code, len(splitter.holes), len(splitter.expected), top), splitter


def _too_large(name: str, left, right=None) -> bool:
    """Would this operation on the candidate's values cost the trusted side more than a moment?"""
    numbers = [v for v in (left, right) if isinstance(v, int)]
    if any(abs(v).bit_length() > MAX_RESULT_BITS for v in numbers):
        return True
    if name == "Pow" and len(numbers) == 2:
        return abs(left) > 1 and right > 0 and left.bit_length() * right > MAX_RESULT_BITS
    if name == "LShift" and len(numbers) == 2:
        return right > MAX_RESULT_BITS
    if name == "Mult" and len(numbers) == 2:
        return left.bit_length() + right.bit_length() > MAX_RESULT_BITS
    if name == "Mult" and len(numbers) == 1:
        sizes = [len(v) for v in (left, right) if isinstance(v, (str, bytes, bytearray, list, tuple))]
        return bool(sizes) and sizes[0] * numbers[0] > MAX_RESULT_BITS
    return False


def _operate(name: str, *operands):
    """An arithmetic operator of a template, refused where the candidate's numbers make it huge."""
    if _too_large(name, *operands):
        raise OverflowError("the result would be too large to check")
    return _OPERATORS[name](*operands)


def evaluate(site: Site, holes, expected) -> bool:
    """The template on the candidate's values and the reference's (their exceptions propagate)."""
    scope = {"__builtins__": TRUSTED_BUILTINS, **TRUSTED_MODULES, HOLES: holes, EXPECTED: expected,
             OPERATE: _operate}
    return bool(eval(site.template, scope))


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
        thunks = [ast.Lambda(ast.arguments([], [], None, [], [], None, []), ast.parse(h, mode="eval").body)
                  for h in splitter.holes]
        call = ast.Call(ast.Name(REPORT, ast.Load()),
                        [ast.Constant(len(compiler.sites) - 1), ast.Tuple(thunks, ast.Load())], [])
        return ast.copy_location(ast.Expr(call), node)


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


def _iterations(node: ast.stmt) -> int:
    """How often a statement runs its body for sure: ``for`` over ``range(<constants>)``, ``with``."""
    if isinstance(node, ast.With):
        return 1
    if not (isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
            and node.iter.func.id == "range" and not node.iter.keywords and not node.orelse):
        return 0
    try:
        return min(len(range(*(ast.literal_eval(arg) for arg in node.iter.args))), MAX_REQUIRED)
    except (ValueError, TypeError, SyntaxError):
        return 0


def _always_reported(body: list[ast.stmt]) -> list[int]:
    """The sites a block of statements reports whenever it runs to its end, once per report.

    A candidate's process that swallowed reports (by rebinding the report function) would
    otherwise pass a check function, or a loop, by saying nothing.
    """
    required = []
    for node in body:
        site = _report_site(node)
        if site is not None:
            required.append(site)
            continue
        if _may_leave_early(node):
            break
        required += _always_reported(getattr(node, "body", [])) * _iterations(node)
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
        self.reference_steps: list = []

    def assertion(self, node: ast.Assert) -> None:
        site, splitter = split_assert(node.test, self.candidate, self.shadowing, self.rebound,
                                      nested=False, top=True)
        self.sites.append(site)
        self.steps.append(["a", len(self.sites) - 1, splitter.holes])
        if splitter.expected:
            self.reference_steps.append(["a", len(self.sites) - 1, splitter.expected])
        self.candidate |= splitter.hole_names & self.data_names  # the candidate may have mutated them

    def statement(self, node: ast.stmt) -> None:
        bound, loaded = _bindings(node)[0], _free(node)
        source = ast.unparse(ast.fix_missing_locations(_Nested(self).visit(node)))
        self.steps.append(["x", source])
        self.note_function(node)
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id in self.functions):
            self.required += self.functions[node.value.func.id]
        if loaded & self.candidate:
            self.candidate |= bound | (loaded & self.data_names)
        else:
            self.candidate -= bound
            self.data_names |= bound
            self.reference_steps.append(["x", source])


    def note_function(self, node: ast.stmt) -> None:
        """A function defined here: which reports a call of it must produce."""
        if isinstance(node, ast.FunctionDef):
            self.functions[node.name] = _always_reported(node.body)


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


def _setup_statements(tree: ast.Module, candidate: set[str], data_names: set[str]) -> list[str]:
    """Walk the set-up: statements that use the candidate's names taint what they touch."""
    clean = []
    for node in tree.body:
        bound, loaded = _bindings(node)[0], _free(node)
        if loaded & candidate:
            candidate |= bound | (loaded & data_names)
        else:
            candidate -= bound
            data_names |= bound
            clean.append(ast.unparse(node))
    return clean


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
    sent_setup = ast.unparse(setup_tree) if in_setup.sites else setup
    clean_setup = _setup_statements(setup_tree, candidate, data_names)
    blocks = []
    for source, tree in zip(tests, trees):
        compiler = _BlockCompiler(candidate, shadowing, rebound, data_names, tuple(in_setup.sites), in_setup.functions)
        if tree is None:
            compiler.steps.append(["x", source])  # compiling it in the child raises the SyntaxError there
        for node in tree.body if tree is not None else ():
            compiler.assertion(node) if isinstance(node, ast.Assert) else compiler.statement(node)
        candidate = compiler.candidate
        blocks.append(Block(source, tuple(compiler.steps), tuple(compiler.reference_steps), tuple(compiler.sites),
                            tuple(compiler.required)))
    reference = None
    if any(block.needs_reference for block in blocks):
        imports = _reference_imports(blocks, data_names | _bindings(setup_tree)[0])
        reference = {"code": "\n".join(imports), "setup": "\n".join(clean_setup),
                     "tests": [list(block.reference_steps) for block in blocks]}
    return Plan(tuple(blocks), sent_setup, reference)
