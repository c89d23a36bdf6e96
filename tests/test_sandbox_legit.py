"""What hardening must not break: ordinary code a correct candidate may use, and the report of
which walls are up.

Each case is a correct candidate with its assert; it must pass under the default limits.
"""

from __future__ import annotations

import time

import pytest

from sandbox_probes import describe, missing_walls, run
from shared_utils.sandbox import capabilities

LEGIT = {
    "threads": ("""
from concurrent.futures import ThreadPoolExecutor
def f(n):
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(lambda x: x * x, range(n)))
""", "assert f(10) == 285"),
    "multiprocessing Pool": ("""
import multiprocessing
def square(x):
    return x * x
def f(n):
    with multiprocessing.Pool(2) as pool:
        return pool.map(square, range(n))
""", "assert f(4) == [0, 1, 4, 9]"),
    "multiprocessing Queue and Process": ("""
import multiprocessing
def produce(queue, n):
    queue.put(n * 2)
def f(n):
    queue = multiprocessing.Queue()
    worker = multiprocessing.Process(target=produce, args=(queue, n))
    worker.start()
    value = queue.get(timeout=10)
    worker.join(10)
    return value, worker.exitcode
""", "assert f(21) == (42, 0)"),
    "subprocess of sys.executable": ("""
import subprocess, sys
def f():
    return subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True,
                          timeout=10).stdout.strip()
""", "assert f() == '42'"),
    "sockets of the allowed families, asyncio, name look-ups": ("""
import asyncio, multiprocessing, socket
def f():
    left, right = socket.socketpair()
    left.sendall(b'ping')
    got = right.recv(4)
    left.close(), right.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as v6:
        v4.bind(('0.0.0.0', 0))
        families = sorted({v4.family.name, v6.family.name})
    async def twice(x):
        await asyncio.sleep(0)
        return 2 * x
    with multiprocessing.Manager() as manager:
        shared = manager.list([1, 2])
        shared.append(3)
        managed = list(shared)
    resolved = {entry[4][0] for entry in socket.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM)}
    return [got, families, asyncio.run(twice(21)), managed, sorted(resolved)]
""", "assert f() == [b'ping', ['AF_INET', 'AF_INET6'], 42, [1, 2, 3], ['127.0.0.1']]"),
    "tempfile": ("""
import os, tempfile
def f(text):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'note.txt')
        with open(path, 'w') as out:
            out.write(text)
        with tempfile.NamedTemporaryFile('w+') as other:
            other.write(text)
            other.seek(0)
            return open(path).read() + other.read()
""", "assert f('ab') == 'abab'"),
    "writing in the work directory": ("""
import os
def f(text):
    os.makedirs('out/nested', exist_ok=True)
    with open('out/nested/result.txt', 'w') as out:
        out.write(text)
    return open(os.path.join(os.getcwd(), 'out', 'nested', 'result.txt')).read()
""", "assert f('hello') == 'hello'"),
    "500 MB of memory": ("""
def f():
    block = bytearray(b'x') * (500 << 20)
    return len(block)
""", "assert f() == 500 << 20"),
    "recursion to depth 5000": ("""
import sys
sys.setrecursionlimit(12000)
def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)
def f():
    return depth(5000)
""", "assert f() == 5000"),
    "annotations evaluated as in plain Python": ("""
def f(x: int) -> list:
    return [f.__annotations__['x'] is int, f.__annotations__['return'] is list]
""", "assert f(1) == [True, True]"),
}


@pytest.mark.parametrize("case", LEGIT.values(), ids=LEGIT.keys())
def test_legitimate_program_passes(case):
    code, test = case
    outcome = run(code, [test], timeout=10)
    assert outcome.passed, describe(outcome)


@pytest.mark.parametrize("library,case", [
    ("numpy", ("import numpy as np\ndef f(n):\n    return int(np.arange(n).sum())", "assert f(10) == 45")),
    ("pandas", ("import pandas as pd\ndef f():\n    return pd.DataFrame({'a': [1, 2, 3]})['a'].sum().item()",
                "assert f() == 6")),
])
def test_installed_library_works(library, case):
    pytest.importorskip(library)
    code, test = case
    outcome = run(code, [test], timeout=20)
    assert outcome.passed, describe(outcome)


def test_reading_stdin_gives_eof_without_hanging():
    code = """
import sys
def f():
    try:
        line = input()
    except EOFError:
        line = 'EOF'
    return [sys.stdin.read(), line]
"""
    started = time.monotonic()
    outcome = run(code, ["assert f() == ['', 'EOF']"], timeout=3)
    assert outcome.passed, describe(outcome)
    assert time.monotonic() - started < 3


def test_capabilities_report_every_wall():
    caps = capabilities()
    assert missing_walls(caps) == [], f"capabilities() = {caps}"
