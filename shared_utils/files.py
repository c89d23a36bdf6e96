"""Atomic writes and provenance sidecars: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

TRACKED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "radon", "bitsandbytes", "vllm",
)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces ``target`` (file or folder).

    The temporary path lives in the same folder so the final ``os.replace`` is atomic.
    On error it is removed and ``target`` keeps its previous content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file, naming the file and line of any malformed record."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
    return rows


def sha256_of(*paths: str | os.PathLike) -> str:
    """SHA-256 over the files' bytes in order: the identity of a downloaded file, a GGUF, an adapter's weights."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def content_hash(rows: Iterable[dict], fields: tuple[str, ...] | None = None) -> str:
    """SHA-256 of rows' content in order (only ``fields`` of each, when given), independent of how they are stored:
    the one hash of datasets, pairs and problems that provenance and identities record."""
    digest = hashlib.sha256()
    for row in rows:
        content = row if fields is None else {field: row[field] for field in fields}
        digest.update(json.dumps(content, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def repository_commit() -> str | None:
    """The checkout's git commit, ``+dirty`` when tracked files differ from it; None outside a git clone."""
    from shared_utils.paths import REPO_ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance(**fields: Any) -> dict[str, Any]:
    """What to record next to an artifact: the caller's fields plus time, the repository's commit, library
    versions and the sandbox's isolation (``none`` marks verdicts obtained without every wall)."""
    from shared_utils.sandbox.api import isolation_mode

    return {**fields, "created": now(), "git_commit": repository_commit(), "versions": library_versions(),
            "sandbox_isolation": isolation_mode()}


def write_provenance(folder: str | os.PathLike, **fields: Any) -> Path:
    """Write ``provenance.json`` inside an artifact folder."""
    return write_json(Path(folder) / "provenance.json", provenance(**fields))


def read_provenance(folder: str | os.PathLike) -> dict | None:
    """An artifact folder's ``provenance.json``, or None when it has none."""
    path = Path(folder) / "provenance.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
