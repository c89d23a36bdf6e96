"""An append-only JSONL checkpoint keyed by (task_id, round, sample), with a metadata sidecar."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from shared_utils import files
from shared_utils.generation.core import Completion, Key

COMPARED = ("model", "adapter", "backend", "sampling", "numerics")


class CheckpointMismatch(ValueError):
    """The checkpoint on disk was written by a different model, adapter, backend, sampling or numerics (dtype...)."""


def meta_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.meta.json")


class Checkpoint:
    """Completed samples on disk. A torn last line (a kill mid-write) is dropped on open."""

    def __init__(self, path: str | os.PathLike, identity: dict):
        self.path = Path(path)
        self.identity = identity
        self.done: dict[Key, Completion] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_meta()
        self._load()
        self.meta = {**self._old_meta, **identity, "path": str(self.path)}
        self.meta.setdefault("started", files.now())
        self.meta["resumed"] = self._old_meta.get("resumed", 0) + (1 if self._old_meta else 0)
        self.meta.update(files.provenance())
        self.meta.pop("created", None)
        self.meta.pop("finished", None)
        files.write_json(meta_path(self.path), self.meta)

    def _check_meta(self) -> None:
        self._old_meta = {}
        sidecar = meta_path(self.path)
        if sidecar.is_file():
            self._old_meta = json.loads(sidecar.read_text(encoding="utf-8"))
            for field in COMPARED:
                old, new = self._old_meta.get(field), json.loads(json.dumps(self.identity.get(field), default=str))
                if old != new:
                    raise CheckpointMismatch(
                        f"{self.path}: checkpoint was written with {field}={old!r}, this run asks for {new!r}; "
                        f"use another checkpoint path or delete {self.path} and {sidecar}")
        elif self.path.is_file() and self.path.stat().st_size:
            raise CheckpointMismatch(f"{self.path}: exists without its {sidecar.name}; refusing to mix runs")

    def _load(self) -> None:
        if not self.path.is_file():
            return
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
        lines = raw[:good].decode("utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                completion = Completion(row["task_id"], int(row["round"]), int(row["sample"]), row["text"],
                                        int(row.get("tokens", 0)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{self.path}: line {number} is not a completion record ({exc})") from None
            self.done[completion.key] = completion
        if good != len(raw):
            with open(self.path, "r+b") as handle:
                handle.truncate(good)

    def append(self, completions: Iterable[Completion]) -> None:
        lines = []
        for completion in completions:
            if completion.key in self.done:
                continue
            self.done[completion.key] = completion
            lines.append(json.dumps(completion.as_dict(), ensure_ascii=False) + "\n")
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    def finish(self, **extra) -> None:
        self.meta.update(extra, finished=files.now(), completions=len(self.done))
        files.write_json(meta_path(self.path), self.meta)


def discard(path: str | os.PathLike) -> None:
    """Remove a checkpoint and its sidecar: its artifact is made again (``overwrite``), from nothing."""
    Path(path).unlink(missing_ok=True)
    meta_path(path).unlink(missing_ok=True)


def read_checkpoint(path: str | os.PathLike) -> list[Completion]:
    """The completions in a checkpoint file (a torn last line ignored), without touching it."""
    raw = Path(path).read_bytes()
    text = raw[: raw.rfind(b"\n") + 1].decode("utf-8")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                out.append(Completion(row["task_id"], int(row["round"]), int(row["sample"]), row["text"],
                                      int(row.get("tokens", 0))))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: line {number} is not a completion record ({exc})") from None
    return out
