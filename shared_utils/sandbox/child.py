"""What runs inside the candidate's process, after the walls are up.

It runs the candidate, then the setup (MBPP's set-up code builds objects from the
candidate's classes, as in MBPP's own harness: code + setup + asserts), then each test's
steps (see ``asserts``): statements, and asserts' *holes* (the parts that depend on
candidate code), whose values it writes as plain data.  It never sees an expected value,
so it has nothing to forge with: the trusted side compares.

Lines on the result channel: ``{"ready":1}`` or ``{"error":[type,msg]}`` for the
setup+candidate phase, then one line per test: ``{"c":[[site,[hole,...]],...]}`` with each
hole ``{"v":value}`` or ``{"e":[type,msg]}``, in the order the asserts ran (a nested
assert reports each time it runs), plus ``"e":[type,msg]`` when a statement raised (the
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


def prepare(job: dict) -> tuple:
    """Compile everything in the warm worker, before forking.

    Compiling is not running, and doing it here spares each child the page faults of
    the parser's first use (about 2 ms per candidate on a VM); a compile error is kept
    and raised in the child, where it is reported like any other exception.  Sources seen
    before (a task's tests with each of its samples, repeated answers) are compiled once.
    """
    tests = [[("x", _compiled(step[1], "<test>", "exec")) if step[0] == "x"
              else ("a", step[1], [_compiled(hole, "<test>", "eval") for hole in step[2]]) for step in block]
             for block in job["tests"]]
    return (_compiled(job["code"], "<candidate>", "exec"), _compiled(job["setup"], "<setup>", "exec"), tests,
            job.get("namespace", "main"))


def _execute(compiled, namespace: dict):
    if isinstance(compiled, BaseException):
        raise compiled
    return eval(compiled, namespace)


def _hole(evaluate) -> dict:
    try:
        return {"v": plain.encode(evaluate())}
    except BaseException as exc:
        return {"e": _describe(exc)}


def _run_block(block: list, namespace: dict, records: list) -> dict:
    message = {"c": records}
    for step in block:
        if step[0] == "x":
            try:
                _execute(step[1], namespace)
            except BaseException as exc:
                message["e"] = _describe(exc)
                break
        else:
            records.append([step[1], [_hole(lambda c=c: _execute(c, namespace)) for c in step[2]]])
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
    try:
        _execute(code, namespace)
        namespace[REPORT] = lambda site, holes: records.append([site, [_hole(h) for h in holes]])
        _execute(setup, namespace)
        message = {"ready": 1}
    except BaseException as exc:
        message = {"error": _describe(exc)}
    _flush_output()
    _send(message)
    if "ready" in message:
        for block in tests:
            records = []
            message = _run_block(block, namespace, records)
            _flush_output()
            _send(message)


def run(program: tuple) -> None:
    """Run a prepared program and report; never returns (the process ends here, whatever happens)."""
    try:
        _run(program)
    except BaseException:
        os._exit(1)
    os._exit(0)
