"""The paper's output format: a JSON list of {"task_id", "generated_sequences"} plus a sidecar."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path
from typing import Iterable

from shared_utils import files
from shared_utils.generation.core import Completion, ordered


def write_paper_format(completions: Iterable[Completion], path: str | os.PathLike, *, metadata: dict) -> Path:
    """Write completions grouped by task (first-seen order; rounds in order), samples in sample order.

    Several rounds of one task are concatenated in round order (the paper's files hold one
    round). Written atomically, with ``<path>.meta.json`` beside it.
    """
    path = Path(path)
    groups: dict = {}
    for completion in ordered(completions):
        groups.setdefault(completion.task_id, []).append(completion)
    rows = [{"task_id": task_id, "generated_sequences": [c.text for c in sorted(items, key=lambda c: (c.round, c.sample))]}
            for task_id, items in groups.items()]
    files.write_json(path, rows)
    files.write_json(Path(f"{path}.meta.json"), files.provenance(**metadata, file=path.name, tasks=len(rows),
                                                          samples=sum(len(r["generated_sequences"]) for r in rows)))
    return path


def read_paper_format(path: str | os.PathLike) -> dict:
    """``{task_id: [text, ...]}`` from a paper-format file (ours or the published raw outputs, ``.xz`` or not)."""
    path = Path(path)
    text = (lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()).decode("utf-8")
    try:
        data = json.loads(text) if text.strip() else []
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{task_id, generated_sequences}} objects")
    if not data:
        raise ValueError(f"{path}: holds no completions")
    out: dict = {}
    for index, row in enumerate(data):
        if not isinstance(row, dict) or "task_id" not in row or not isinstance(row.get("generated_sequences"), list):
            raise ValueError(f"{path}: item {index} lacks task_id or a generated_sequences list")
        out.setdefault(row["task_id"], []).extend(str(text) for text in row["generated_sequences"])
    return out
