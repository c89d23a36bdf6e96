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


def _run_test(kind: str, sources: list[str], namespace: dict) -> dict:
    if kind == "exec":
        exec(compile(sources[0], "<test>", "exec"), namespace)
        return {"values": []}
    values = [eval(compile(src, "<test>", "eval"), namespace) for src in sources]
    return {"values": [plain.encode(v) for v in values]}


def run(setup: str, code: str, tests: list) -> None:
    """Run everything and report; never returns (the process ends here)."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(code, "<candidate>", "exec"), namespace)
        exec(compile(setup, "<setup>", "exec"), namespace)
        message = {"ready": 1}
    except BaseException as exc:
        message = {"error": _describe(exc)}
    _flush_output()
    _send(message)
    if "ready" in message:
        for kind, sources in tests:
            try:
                message = _run_test(kind, sources, namespace)
            except BaseException as exc:
                message = {"error": _describe(exc)}
            _flush_output()
            _send(message)
    os._exit(0)
