"""Turn a model's answer into Python source.

Two named modes:

``paper``
    The published protocol: delete every "```python" and "```" marker and strip. Prose around
    the code stays in and usually makes the sample fail, exactly as in the paper's numbers.
``fenced``
    The first fenced code block (any language tag) if there is one, else the whole text stripped.
"""

from __future__ import annotations

import re

MODES = ("paper", "fenced")
_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_paper(text: str) -> str:
    return text.replace("```python", "").replace("```", "").strip()


def extract_fenced(text: str) -> str:
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip()


def extract_code(text: str, mode: str = "paper") -> str:
    if mode == "paper":
        return extract_paper(text)
    if mode == "fenced":
        return extract_fenced(text)
    raise ValueError(f"unknown extraction mode {mode!r}; expected one of {MODES}")


def wrap_code(code: str) -> str:
    """The paper's chosen/rejected format: a python fence around the code."""
    return f"```python\n{code}\n```"
