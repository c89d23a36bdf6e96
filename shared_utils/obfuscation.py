"""What a policy optimised for radon's MI can do to working code without changing what it computes: found or undone.

radon's Halstead volume counts only operator nodes (``BinOp``, ``UnaryOp``, ``BoolOp``,
``AugAssign``, ``Compare``), and its MI jumps to 100 when that volume is 0. So the same code
scores higher when its operators become calls (``operator.add(a, b)``, ``a.__add__(b)``,
``np.multiply(a, b)``, ``sum((a, b))``) or when it is hidden in a string that ``exec`` or
``eval`` runs. Two answers, both static (nothing here runs the code):

``dynamic_code(code)``
    The first construct that builds, loads or reaches code or names through strings or
    reflection, or ``""``: ``exec``, ``eval``, ``compile``, ``__import__``, ``globals()``,
    ``locals()``, ``vars()`` (called or passed on), ``getattr``/``setattr``/``delattr`` with a
    literal name or on a module, a dunder name as a string (``methodcaller("__add__")``),
    ``__dict__``/``__globals__``/``__subclasses__`` and the like, ``sys.modules``,
    ``builtins.eval``, and importing ``importlib``, ``marshal``, ``runpy``, ``ctypes``,
    ``pickle``, ``inspect``, ``types``, ``builtins`` and their kin. Whatever such code computes,
    radon cannot measure it; the reward rejects it.
``normal_form(code)``
    The code as radon should measure it: comments, docstrings and bare strings removed, one
    statement per line (``ast.unparse``: semicolons and one-line bodies cannot shrink the
    logical line count), and every call of an operator function written as the operator:
    ``operator``'s functions (by module, alias or imported name, dunder spellings included),
    ``a.__add__(b)``-style calls (bound or unbound, reflected and in-place ones too), numpy's and
    torch's arithmetic, comparison and logical functions, ``math.prod``/``math.pow``/``math.fsum``
    and ``pow`` over their operands, ``sum``/``all``/``any`` over a literal tuple or list. An
    operator function passed as a value (``reduce(operator.add, xs)``) becomes a lambda holding
    the operator. Code without such calls is only stripped and laid out again.

Not undone: an operator moved into a helper the answer defines itself (``def add(a, b)``) counts
once however often it is called, as any honest helper does.
"""

from __future__ import annotations

import ast

from shared_utils.maintainability import without_comments

_BINARY = {"add": ast.Add, "concat": ast.Add, "sub": ast.Sub, "mul": ast.Mult, "truediv": ast.Div, "div": ast.Div,
           "floordiv": ast.FloorDiv, "mod": ast.Mod, "pow": ast.Pow, "matmul": ast.MatMult, "lshift": ast.LShift,
           "rshift": ast.RShift, "and": ast.BitAnd, "or": ast.BitOr, "xor": ast.BitXor}
_UNARY = {"neg": ast.USub, "pos": ast.UAdd, "invert": ast.Invert, "inv": ast.Invert, "not": ast.Not}
_COMPARE = {"eq": ast.Eq, "ne": ast.NotEq, "lt": ast.Lt, "le": ast.LtE, "gt": ast.Gt, "ge": ast.GtE, "is": ast.Is,
            "is_not": ast.IsNot}
_REFLECTED = {f"r{name}": op for name, op in _BINARY.items()}  # b.__radd__(a) is a + b
_OPERATORS = {**{f"i{name}": op for name, op in _BINARY.items()}, **_BINARY, **_REFLECTED, **_UNARY, **_COMPARE,
              "contains": ast.In}
_BOOLEAN = {"and_bool": ast.And, "or_bool": ast.Or, "all": ast.And, "any": ast.Or}
_FOLDS = {"sum": ast.Add, "prod": ast.Mult, "all": ast.And, "any": ast.Or}  # over a literal tuple or list
_ARRAY_FUNCTIONS = {  # numpy and torch
    "add": "add", "subtract": "sub", "multiply": "mul", "divide": "truediv", "true_divide": "truediv",
    "floor_divide": "floordiv", "mod": "mod", "remainder": "mod", "power": "pow", "matmul": "matmul",
    "negative": "neg", "positive": "pos", "invert": "invert", "logical_not": "not", "equal": "eq", "not_equal": "ne",
    "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge", "bitwise_and": "and",
    "bitwise_or": "or", "bitwise_xor": "xor", "left_shift": "lshift", "right_shift": "rshift",
    "logical_and": "and_bool", "logical_or": "or_bool"}
_MODULE_FUNCTIONS = {
    "operator": {spelling: name for name in _OPERATORS for spelling in (name, f"{name}_", f"__{name}__")},
    "numpy": _ARRAY_FUNCTIONS, "torch": _ARRAY_FUNCTIONS, "math": {"prod": "prod", "pow": "pow", "fsum": "sum"},
    "builtins": {"pow": "pow", "sum": "sum", "all": "all", "any": "any"},
}

_CODE_FROM_STRINGS = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                      "__builtins__", "__loader__", "__spec__"}
_ATTRIBUTE_BY_NAME = {"getattr", "setattr", "delattr"}
_REFLECTION_ATTRIBUTES = {"__dict__", "__globals__", "__code__", "__builtins__", "__getattribute__", "__import__",
                          "__subclasses__", "__bases__", "__mro__", "__closure__", "__func__", "__self__",
                          "__loader__", "__spec__", "f_globals", "f_locals", "f_builtins", "f_back", "co_code"}
_DYNAMIC_MODULES = {"importlib", "imp", "runpy", "marshal", "code", "codeop", "ctypes", "pickle", "dill", "builtins",
                    "inspect", "types", "gc"}
_HONEST_DUNDER_STRINGS = {"__main__"}


def dynamic_code(code: str) -> str:
    """The first construct in ``code`` that reaches code or names through strings or reflection, or ``""``.

    Code that does not parse has none (the reward rejects it for its format instead).
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    nodes = list(ast.walk(tree))
    modules = _module_names(nodes)
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    asked = {id(node.args[1]) for node in nodes if isinstance(node, ast.Call) and len(node.args) > 1
             and isinstance(node.func, ast.Name) and node.func.id == "hasattr"}  # hasattr(x, "__len__") runs nothing
    imported = {alias.asname or alias.name for node in nodes if isinstance(node, ast.ImportFrom)
                and node.module != "builtins" for alias in node.names}
    for node in nodes:
        found = "" if id(node) in asked else _dynamic(node, modules, called, imported)
        if found:
            return f"line {getattr(node, 'lineno', '?')}: {found}"
    return ""


def _dynamic(node: ast.AST, modules: dict, called: set, imported: set) -> str:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in imported:
        if node.id in _CODE_FROM_STRINGS or (node.id in _ATTRIBUTE_BY_NAME and id(node) not in called):
            return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ATTRIBUTE_BY_NAME:
        target, name = (node.args + [None, None])[:2]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            return f"{node.func.id}(..., {name.value!r}) instead of the attribute"
        if _module_of(target, modules):
            return f"{node.func.id} on the module {_module_of(target, modules)} by a computed name"
    if isinstance(node, ast.Attribute):
        module = _module_of(node.value, modules)
        if node.attr in _REFLECTION_ATTRIBUTES or (module, node.attr) in (("sys", "modules"), ("sys", "_getframe")):
            return f".{node.attr}"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            if name in _DYNAMIC_MODULES or name.split(".")[0] in _DYNAMIC_MODULES:
                return f"import {name}"
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
        if len(text) > 4 and text.startswith("__") and text.endswith("__") and text not in _HONEST_DUNDER_STRINGS:
            return f"the name {text!r} as a string"
    return ""


def _module_names(nodes: list[ast.AST]) -> dict[str, str]:
    """Local names bound to modules (``import operator as op``, ``import numpy.linalg``, ``p = operator``)."""
    modules = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
    aliases = [(target.id, node.value.id) for node in nodes if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Name) for target in node.targets if isinstance(target, ast.Name)]
    changed = True
    while changed:  # simple aliases of aliases, to a fixed point
        changed = False
        for alias, name in aliases:
            if name in modules and alias not in modules:
                modules[alias], changed = modules[name], True
    return modules


def _module_of(node: ast.AST | None, modules: dict) -> str:
    return modules.get(node.id, "").split(".")[0] if isinstance(node, ast.Name) else ""


def normal_form(code: str) -> str:
    """``code`` stripped of comments and docstrings, one statement per line, operator calls as operators.

    Returns ``code`` unchanged when it does not parse (it is then not scorable either way).
    """
    stripped = without_comments(code)
    try:
        tree = ast.parse(stripped)
        nodes = list(ast.walk(tree))
        modules = _module_names(nodes)
        tree = _OperatorCalls(modules, _imported_functions(nodes, modules)).visit(tree)
        return ast.unparse(ast.fix_missing_locations(tree))
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return stripped


def _imported_functions(nodes: list[ast.AST], modules: dict) -> dict[str, str]:
    """Local names bound to an operator function (``from operator import add as plus``, ``f = operator.mul``,
    ``from numpy import *``): name -> operator key."""
    functions = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            table = _MODULE_FUNCTIONS.get(node.module.split(".")[0], {})
            for alias in node.names:
                if alias.name == "*":
                    functions.update(table)
                elif alias.name in table:
                    functions[alias.asname or alias.name] = table[alias.name]
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute):
            key = _MODULE_FUNCTIONS.get(_module_of(node.value.value, modules), {}).get(node.value.attr)
            functions.update({target.id: key for target in node.targets if key and isinstance(target, ast.Name)})
    return functions


class _OperatorCalls(ast.NodeTransformer):
    """Rewrites calls of operator functions as the operators they name, and references to them as lambdas."""

    def __init__(self, modules: dict, functions: dict):
        self.modules, self.functions = modules, functions

    def visit_Call(self, node: ast.Call) -> ast.AST:
        key, receiver = self._operator_of(node.func)
        node.args = [self.visit(arg) for arg in node.args]
        node.keywords = [self.visit(keyword) for keyword in node.keywords]
        if key is None:
            node.func = self.visit(node.func)
            return node
        if receiver is not None:
            receiver = self.visit(receiver)
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            return node
        if receiver is not None:  # a.__add__(b), or unbound: int.__add__(a, b)
            return _apply(key, [receiver, *node.args]) or _apply(key, node.args) or node
        return _apply(key, node.args) or node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        key, receiver = self._operator_of(node)
        self.generic_visit(node)
        if key is not None and isinstance(node.ctx, ast.Load):
            return _as_lambda(key, bound=None if receiver is None else node.value) or node
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        key = self.functions.get(node.id)
        return (_as_lambda(key) or node) if key is not None and isinstance(node.ctx, ast.Load) else node

    def _operator_of(self, func: ast.AST) -> tuple[str | None, ast.AST | None]:
        """The operator key ``func`` names and, for a dunder method (``a.__add__``), its receiver ``a``."""
        if isinstance(func, ast.Name):
            builtin = _MODULE_FUNCTIONS["builtins"].get(func.id) if func.id not in self.modules else None
            return self.functions.get(func.id, builtin), None
        if isinstance(func, ast.Attribute):
            module = _module_of(func.value, self.modules)
            if module:
                return _MODULE_FUNCTIONS.get(module, {}).get(func.attr), None
            bare = func.attr[2:-2] if func.attr.startswith("__") and func.attr.endswith("__") else ""
            if bare in _OPERATORS:
                return bare, func.value
        return None, None


def _apply(key: str, operands: list[ast.AST]) -> ast.AST | None:
    """The operator expression ``key`` names over ``operands``, or None when their number does not fit."""
    if key in _FOLDS:
        if len(operands) == 1 and isinstance(operands[0], (ast.Tuple, ast.List)) and len(operands[0].elts) > 1:
            return _fold(key, operands[0].elts)
        return None
    if key in _BOOLEAN:
        return ast.BoolOp(op=_BOOLEAN[key](), values=operands) if len(operands) == 2 else None
    if key in _UNARY:
        return ast.UnaryOp(op=_UNARY[key](), operand=operands[0]) if len(operands) == 1 else None
    if len(operands) != 2:
        return None
    left, right = operands
    if key in _REFLECTED:
        return ast.BinOp(left=right, op=_REFLECTED[key](), right=left)
    if key == "contains":  # contains(container, item): item in container
        return ast.Compare(left=right, ops=[ast.In()], comparators=[left])
    if key in _COMPARE:
        return ast.Compare(left=left, ops=[_COMPARE[key]()], comparators=[right])
    return ast.BinOp(left=left, op=_OPERATORS[key](), right=right)


def _fold(key: str, items: list[ast.AST]) -> ast.AST:
    if key in _BOOLEAN:
        return ast.BoolOp(op=_BOOLEAN[key](), values=items)
    expression = items[0]
    for item in items[1:]:
        expression = ast.BinOp(left=expression, op=_FOLDS[key](), right=item)
    return expression


def _as_lambda(key: str, bound: ast.AST | None = None) -> ast.AST | None:
    """An operator function used as a value: ``lambda a, b: a + b`` (``lambda b: x + b`` for ``x.__add__``)."""
    if key in _FOLDS:
        return None  # sum, all, any or prod passed on applies no operator by itself
    names = ["a"] if key in _UNARY else ["a", "b"]
    operands = [ast.Name(id=name, ctx=ast.Load()) for name in names]
    if bound is not None:
        names, operands = names[1:], [bound, *operands[1:]]
    body = _apply(key, operands)
    arguments = ast.arguments(posonlyargs=[], args=[ast.arg(arg=name) for name in names], kwonlyargs=[],
                              kw_defaults=[], defaults=[])
    return ast.Lambda(args=arguments, body=body) if body is not None else None
