"""Sandboxed unit-test execution for model-written code.

``check(code, tests)`` and ``check_many(jobs)`` run candidates in warm workers, one fresh
isolated child per candidate forked from a clean zygote, and decide every verdict in the
calling process; ``capabilities()`` says which walls this machine grants and what each
costs.  Where a wall cannot be built the sandbox refuses (``SandboxUnavailable``) unless
the caller passes ``isolation="none"`` (or sets ``SANDBOX_ISOLATION=none``), which every
report that scores code then names unsafe.
"""

from .api import Outcome, SandboxUnavailable, TestResult, capabilities, check, check_many, isolation_mode

__all__ = ["Outcome", "SandboxUnavailable", "TestResult", "capabilities", "check", "check_many", "isolation_mode"]
