"""What runs inside the candidate's process, after the walls are up.

It runs the candidate, then the setup (MBPP's set-up code builds objects from the
candidate's classes, as in MBPP's own harness: code + setup + asserts), then evaluates each test's *holes* (the parts of an
assert that depend on candidate code) and writes their values as plain data, one line per
test, to the result channel.  It never sees an expected value, so it has nothing to forge
with: the trusted side compares.  Lines: ``{"ready":1}`` or ``{"error":[type,msg]}`` for
the setup+candidate phase, then ``{"values":[...]}`` or ``{"error":[type,msg]}`` per test.
"""

from __future__ import annotations

import builtins
import os
import sys

from . import plain

RESULT_FD = 3
MESSAGE_CHARS = 300


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


def _compiled(source: str, filename: str, mode: str):
    try:
        return compile(source, filename, mode)
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        return exc


def prepare(job: dict) -> tuple:
    """Compile everything in the warm worker, before forking.

    Compiling is not running, and doing it here spares each child the page faults of
    the parser's first use (about 2 ms per candidate on a VM); a compile error is kept
    and raised in the child, where it is reported like any other exception.
    """
    tests = [(kind, [_compiled(src, "<test>", "exec" if kind == "exec" else "eval") for src in sources])
             for kind, sources in job["tests"]]
    return _compiled(job["code"], "<candidate>", "exec"), _compiled(job["setup"], "<setup>", "exec"), tests


def _execute(compiled, namespace: dict):
    if isinstance(compiled, BaseException):
        raise compiled
    return eval(compiled, namespace)


def _run_test(kind: str, compiled: list, namespace: dict) -> dict:
    values = [_execute(c, namespace) for c in compiled]
    return {"values": [] if kind == "exec" else [plain.encode(v) for v in values]}


def run(program: tuple) -> None:
    """Run a prepared program and report; never returns (the process ends here)."""
    code, setup, tests = program
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        _execute(code, namespace)
        _execute(setup, namespace)
        message = {"ready": 1}
    except BaseException as exc:
        message = {"error": _describe(exc)}
    _flush_output()
    _send(message)
    if "ready" in message:
        for kind, compiled in tests:
            try:
                message = _run_test(kind, compiled, namespace)
            except BaseException as exc:
                message = {"error": _describe(exc)}
            _flush_output()
            _send(message)
    os._exit(0)
