"""Maintainability Index exactly as the paper computes it, plus what it is made of.

MI = radon ``mi_visit(code, multi=True)``. radon combines Halstead volume, cyclomatic
complexity, SLOC and the share of comment lines; exposing them lets later analysis say
whether a gain in MI came from simpler code or merely from more comments.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

from radon.metrics import mi_compute, mi_parameters
from radon.raw import analyze


@dataclasses.dataclass(frozen=True)
class MIResult:
    """MI and components; ``scorable`` is False (and the numbers NaN) for code radon cannot parse."""

    mi: float
    halstead_volume: float
    cyclomatic_complexity: float
    sloc: int
    comment_lines: int
    scorable: bool = True
    error: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# The Halstead volume of one binary operation (`x + 1`: 3 operators and operands of 3 distinct, 3 * log2(3)).
ONE_OPERATION_VOLUME = 3 * math.log2(3)
NOT_SCORABLE = dict(mi=math.nan, halstead_volume=math.nan, cyclomatic_complexity=math.nan, sloc=0, comment_lines=0)


def mi_score(code: str) -> float:
    """The paper's number: radon ``mi_visit(code, multi=True)``; NaN if the code does not parse."""
    return score(code).mi


def score(code: str, *, volume_floor: float = 0.0) -> MIResult:
    """MI and its components; ``volume_floor`` > 0 charges the MI formula at least that Halstead volume.

    radon's MI is 100 whenever the volume is 0 (code without a single operator node), a jump of
    10 or more points over the same code with one ``+``. With ``volume_floor=ONE_OPERATION_VOLUME``
    that jump is gone: removing the last operator, by any rewriting, gains nothing, while every
    other operator still counts as radon counts it. ``halstead_volume`` stays radon's own.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            # What radon's mi_visit(code, multi=True) computes, taken apart once: the volume and the
            # (module-total) complexity its MI formula uses come with the MI at no extra parse.
            volume, complexity, logical_lines, comments = mi_parameters(code, count_multi=True)
            mi = mi_compute(max(volume, volume_floor), complexity, logical_lines, comments)
            raw = analyze(code)
    except (SyntaxError, ValueError, TypeError, IndentationError, RecursionError, MemoryError) as exc:
        return MIResult(**NOT_SCORABLE, scorable=False, error=f"not scorable: {type(exc).__name__}: {exc}")
    return MIResult(
        mi=float(mi),
        halstead_volume=float(volume),
        cyclomatic_complexity=float(complexity),
        sloc=raw.sloc,
        comment_lines=raw.comments + raw.multi,
    )


def without_comments(code: str) -> str:
    """``code`` with its comments, docstrings and other bare string statements removed.

    radon's MI (``multi=True``) adds up to 50 points for a share of comment lines, multi-line strings included,
    so a policy optimised for MI can learn to pad answers with docstrings. Scoring this form
    instead leaves only the code's own size and complexity to reward. Returns ``code`` unchanged
    when it does not parse (it is then not scorable either way).
    """
    import ast

    try:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block:
                    setattr(node, field, [stmt for stmt in block if not _is_bare_string(stmt)] or [ast.Pass()])
        return ast.unparse(tree)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return code


def _is_bare_string(statement) -> bool:
    import ast

    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))
