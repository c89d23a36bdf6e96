"""Generated parts of the README: a section between two marker lines, and the cells its tables share.

A results section is rendered from committed files and swapped in between its markers, so the
README never carries a number typed by hand (``paper_outputs``, ``study_report``).
"""

from __future__ import annotations

import math


def replace_section(text: str, start: str, end: str, section: str) -> str:
    """``text`` with everything from the ``start`` marker to the ``end`` marker (both included) replaced by ``section``,
    which carries the markers itself."""
    if start not in text or end not in text:
        raise ValueError(f"README: the markers are missing ({start!r} ... {end!r})")
    before, rest = text.split(start, 1)
    return before + section + rest.split(end, 1)[1]


def points(metric: str) -> float:
    """The factor a metric is shown with: pass@k in percentage points, MI as is."""
    return 100.0 if metric.startswith("pass@") else 1.0


def difference_cell(row, metric: str) -> str:
    """``-1.40 [-2.10, -0.70] worse``: a paired difference, its interval and its verdict (pass@k in points)."""
    diff, low, high = (row[name] * points(metric) for name in ("diff", "low", "high"))
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}] {row['verdict']}"


def estimate_cell(estimate: float, low: float, high: float, metric: str) -> str:
    """``23.50 [20.10, 27.00]``: a variant's metric and its interval (pass@k in percent)."""
    if math.isnan(estimate):
        return "—"
    scale = points(metric)
    return f"{estimate * scale:.2f} [{low * scale:.2f}, {high * scale:.2f}]"
