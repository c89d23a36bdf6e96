"""Sandboxed unit-test execution for model-written code (see issue 3).

``check(code, tests)`` and ``check_many(jobs)`` run candidates in warm fork-server
workers, one fresh isolated child per candidate, and decide every verdict in the calling
process; ``capabilities()`` says which walls this kernel allows.
"""

from .api import Outcome, TestResult, capabilities, check, check_many

__all__ = ["Outcome", "TestResult", "capabilities", "check", "check_many"]
