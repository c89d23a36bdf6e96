"""What runs inside the candidate's process, after the walls are up.

It runs the candidate, then the setup (MBPP's set-up code builds objects from the
candidate's classes, as in MBPP's own harness: code + setup + asserts), then each test's
steps (see ``asserts``): statements, and asserts' *holes* (the parts that depend on
candidate code), whose values it writes as plain data.  It never sees an expected value,
so it has nothing to forge with: the trusted side compares.

Lines on the result channel: ``{"ready":1}`` or ``{"error":[type,msg]}`` for the
setup+candidate phase, then one line per test: ``{"c":[[site,[hole,...]],...]}`` with each
hole ``{"v":value}`` or ``{"e":[type,msg]}``, in the order the asserts ran (a nested
assert reports each time it runs; a replaying one reports ``[[hole, value], ...]``, every
value each hole took while the whole assert ran here), plus ``"e":[type,msg]`` when a statement raised (the
test's remaining steps are skipped, as the statement would have ended it).
"""

from __future__ import annotations

import builtins
import functools
import os
import sys
import types

from . import plain

RESULT_FD = 3
REPORT = "__sandbox_report__"  # the function a nested assert calls (see ``asserts``)
REPLAY_HOLE = "__sandbox_hole__"  # the function each hole of a replaying assert calls
MESSAGE_CHARS = 300
COMPILED_CACHE = 4096  # sources compiled in the worker: a task's tests recur with every sample


def _send(message) -> None:
    data = memoryview(plain.dumps(message))
    while data:
        data = data[os.write(RESULT_FD, data):]


def _describe(exc: BaseException) -> list:
    try:
        return [type(exc).__name__, str(exc)[:MESSAGE_CHARS]]
    except BaseException:
        return [type(exc).__name__, "<unprintable>"]


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


@functools.lru_cache(maxsize=COMPILED_CACHE)
def _compiled(source: str, filename: str, mode: str):
    """``dont_inherit``: this module's ``from __future__ import annotations`` must not reach the
    candidate, whose annotations are evaluated as in plain Python."""
    try:
        return compile(source, filename, mode, dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        return exc


def _prepared(step: list) -> tuple:
    if step[0] == "x":
        return "x", _compiled(step[1], "<test>", "exec")
    if step[0] == "r":
        return "r", step[1], _compiled(step[2], "<test>", "eval")
    return "a", step[1], [_compiled(hole, "<test>", "eval") for hole in step[2]]


def prepare(job: dict) -> tuple:
    """Compile everything in the warm worker, before forking.

    Compiling is not running, and doing it here spares each child the page faults of
    the parser's first use (about 2 ms per candidate on a VM); a compile error is kept
    and raised in the child, where it is reported like any other exception.  Sources seen
    before (a task's tests with each of its samples, repeated answers) are compiled once.
    """
    tests = [[_prepared(step) for step in block] for block in job["tests"]]
    return (_compiled(job["code"], "<candidate>", "exec"), _compiled(job["setup"], "<setup>", "exec"), tests,
            job.get("namespace", "main"))


def _execute(compiled, namespace: dict):
    if isinstance(compiled, BaseException):
        raise compiled
    return eval(compiled, namespace)


def _untrace() -> None:
    """Undo what a candidate's call may have hooked to skip the lines that report.

    A tracing hook can jump over a report, and a rebound report function can swallow it;
    the trusted side refuses a test whose required reports are missing, and this keeps an
    honest-looking hook from silencing the others (it cannot stop one written in C).
    """
    if sys.gettrace() is None and sys.getprofile() is None:
        return  # a frame's own f_trace runs only under a trace function
    sys.settrace(None)
    sys.setprofile(None)
    frame = sys._getframe(1)
    while frame is not None:
        frame.f_trace = None
        frame = frame.f_back


BUILTINS = dict(vars(builtins))  # as they were before any candidate ran (this module loads in the worker)


@functools.lru_cache(maxsize=COMPILED_CACHE)
def _builtin_names(code: types.CodeType) -> tuple[str, ...]:
    """The builtins a piece of code (its comprehensions' and lambdas' included) may look up."""
    names = set(code.co_names) & BUILTINS.keys()
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.update(_builtin_names(constant))
    return tuple(sorted(names))


def _restore_builtins(namespace: dict, code) -> None:
    """Undo a candidate's patching of the builtins this code looks up (``builtins.all``, or
    its own ``__builtins__``) before a hole or statement runs: ``all(f(x))`` is then the
    real ``all`` applied to what ``f`` returned.

    The candidate's own module-level names (MBPP 126's ``def sum``) are its globals, not
    builtins, and stay.  Only what differs is written back: a write to the builtins resets
    every global look-up cache.
    """
    if isinstance(code, types.CodeType):
        current = vars(builtins)
        for name in _builtin_names(code):
            if current.get(name) is not BUILTINS[name]:
                current[name] = BUILTINS[name]
    if namespace.get("__builtins__") not in (builtins, vars(builtins)):
        namespace["__builtins__"] = builtins


def _rebind(namespace: dict, report) -> None:
    """Give back the report functions a candidate's call may have rebound (only where it did)."""
    if namespace.get(REPORT) is not report or namespace.get(REPLAY_HOLE) is not _replay_hole:
        namespace[REPORT], namespace[REPLAY_HOLE] = report, _replay_hole


def _hole(evaluate) -> dict:
    try:
        return {"v": plain.encode(evaluate())}
    except BaseException as exc:
        return {"e": _describe(exc)}
    finally:
        _untrace()


def _replay(evaluate) -> list:
    """Run a replaying assert: ``[hole, value]`` for each value a hole took, in order.

    Each hole hands the candidate's own value on, so the assert runs here as in plain
    Python; its verdict is ignored (the trusted side runs the assert again on these values).
    """
    pairs = []

    def hole(index, thunk):
        try:
            value = thunk()
        except BaseException as exc:
            pairs.append([index, {"e": _describe(exc)}])
            raise
        finally:
            _untrace()
        pairs.append([index, {"v": plain.encode(value)}])
        return value

    previous = REPLAYING[:]
    REPLAYING[:] = [hole]
    try:
        evaluate()
    except BaseException:
        pass
    finally:
        REPLAYING[:] = previous
        _untrace()
    return pairs


REPLAYING: list = []  # the hole function of the replaying assert now running


def _replay_hole(index, thunk):
    if not REPLAYING:
        raise RuntimeError("a replaying hole outside its assert")
    return REPLAYING[-1](index, thunk)


def _run_block(block: list, namespace: dict, records: list, report) -> dict:
    message = {"c": records}
    for step in block:
        if step[0] == "x":
            _restore_builtins(namespace, step[1])
            try:
                _execute(step[1], namespace)
            except BaseException as exc:
                message["e"] = _describe(exc)
                break
            finally:
                _untrace()
                _rebind(namespace, report)
        elif step[0] == "r":
            _restore_builtins(namespace, step[2])
            records.append([step[1], _replay(lambda c=step[2]: _execute(c, namespace))])
        else:
            records.append([step[1], [_hole(lambda c=c: _restore_builtins(namespace, c) or _execute(c, namespace))
                                      for c in step[2]]])
    return message


def _namespace(kind: str) -> dict:
    """The candidate's globals.

    ``main``: a real ``__main__`` module, so that ``pickle`` (and with it ``multiprocessing.Pool``)
    finds the candidate's functions by their names and ``if __name__ == "__main__":`` runs.
    ``exec``: the paper's ``exec(code, {})``, an empty dict, so ``__name__`` is ``"builtins"``.
    """
    if kind == "exec":
        return {}
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    return module.__dict__


def _run(program: tuple) -> None:
    code, setup, tests, kind = program
    namespace = _namespace(kind)
    records: list = []  # what the set-up reports while it runs is dropped: only tests count

    def report(site, holes, replaying=None):
        records.append([site, _replay(replaying) if replaying else
                        [_hole(lambda h=h: _restore_builtins(namespace, h.__code__) or h()) for h in holes]])
        _rebind(namespace, report)

    try:
        _execute(code, namespace)
        _untrace()
        _rebind(namespace, report)
        _execute(setup, namespace)
        _untrace()
        message = {"ready": 1}
    except BaseException as exc:
        message = {"error": _describe(exc)}
    _flush_output()
    _send(message)
    if "ready" in message:
        for block in tests:
            records = []
            _rebind(namespace, report)
            message = _run_block(block, namespace, records, report)
            _flush_output()
            _send(message)


def run(program: tuple) -> None:
    """Run a prepared program and report; never returns (the process ends here, whatever happens)."""
    try:
        _run(program)
    except BaseException:
        os._exit(1)
    os._exit(0)
