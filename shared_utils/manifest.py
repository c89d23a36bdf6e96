"""The record of what a folder's artifacts are: ``manifest.json`` beside them, one entry per artifact.

A stage that writes an artifact (an adapter, a dataset of local pairs, an evaluation run) records
it here: its folder name, its role in the pipeline (``layout`` names the roles), the full identity
it was made with (data hash, every resolved setting, model, protocol, starting adapter and its
weights' hash), when, and by which commit. Later stages read their inputs from the record (the
latest artifact of a role), never by recomputing a folder name from a recipe, so a stage run with
other settings feeds the next one without any path given by hand.

The same record decides reuse (``Manifest.reuse``): an artifact is reused only when its identity
equals the one asked for; otherwise the run stops, naming the differing fields and the two ways
out (a new output folder, or ``overwrite=True``). Folder names stay readable; nothing parses them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared_utils import files

FILE_NAME = "manifest.json"
# The identity fields that name the artifact another was made from (an adapter's start, the global pairs' problems,
# the labelled pairs' pairs): replacing that artifact makes this one stale.
MADE_FROM = ("init_adapter", "start_adapter", "adapter", "problems", "pairs")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One recorded artifact."""

    path: Path
    role: str
    iteration: int | None
    identity: dict
    created: str
    commit: str | None
    superseded_by: str | None = None  # the artifact whose replacement left this one made from weights now gone
    seed: int = 0  # the training seed's index (several adapters of one stage, recipe key training_seeds)


def normalised(identity: dict) -> dict:
    """The identity as JSON reads it back (paths and tuples as strings and lists), so records compare equal."""
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def differences(recorded: dict, asked: dict, prefix: str = "") -> list[str]:
    """``field: recorded -> asked`` for every field (dotted through nested mappings) that differs."""
    found = []
    for key in sorted(set(recorded) | set(asked), key=str):
        old, new, name = recorded.get(key), asked.get(key), f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new, f"{name}.")
        elif old != new:
            found.append(f"{name}: {old!r} -> {new!r}")
    return found


def adapter_sha256(folder: str | Path | None) -> str | None:
    """The identity of a LoRA adapter's weights (None for the base model)."""
    if folder is None:
        return None
    present = [Path(folder) / name for name in ("adapter_config.json", "adapter_model.safetensors")]
    return files.sha256_of(*[path for path in present if path.is_file()])


class Manifest:
    """``<folder>/manifest.json``: every artifact written into ``folder``, by folder name."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.file = self.folder / FILE_NAME

    def _read(self) -> dict:
        return json.loads(self.file.read_text(encoding="utf-8")) if self.file.is_file() else {"artifacts": {}}

    def entries(self) -> list[Entry]:
        """Every recorded artifact, oldest first."""
        return [Entry(path=self.folder / name, role=item["role"], iteration=item.get("iteration"),
                      identity=item["identity"], created=item["created"], commit=item.get("commit"),
                      superseded_by=item.get("superseded_by"), seed=item.get("seed", 0))
                for name, item in self._read()["artifacts"].items()]

    def entry(self, path: str | Path) -> Entry | None:
        return next((entry for entry in self.entries() if entry.path.name == Path(path).name), None)

    def latest(self, role: str, iteration: int | None = None, seed: int = 0) -> Entry | None:
        """The most recently recorded artifact of a role (iteration and training seed) that is still on disk and was
        made from what its stage now starts from (not superseded)."""
        found = [entry for entry in self.entries() if entry.role == role and entry.iteration == iteration
                 and entry.seed == seed and entry.superseded_by is None and entry.path.exists()]
        return found[-1] if found else None

    def record(self, path: str | Path, role: str, identity: dict, iteration: int | None = None,
               seed: int = 0) -> Entry:
        """Record (or replace) the artifact ``path`` (inside this folder), atomically; it becomes its role's latest
        (for its iteration and training seed)."""
        path = Path(path)
        if path.parent.resolve() != self.folder.resolve():
            raise ValueError(f"{path}: not inside {self.folder}; record it in its own folder's manifest")
        artifacts = self._read()["artifacts"]
        replaced = {name for name, item in artifacts.items()
                    if item["role"] == role and item.get("iteration") == iteration and item.get("seed", 0) == seed}
        artifacts.pop(path.name, None)  # re-inserted last: the latest of its role
        artifacts[path.name] = {"role": role, "iteration": iteration, **({"seed": seed} if seed else {}),
                                "identity": normalised(identity), "created": files.now(),
                                "commit": files.repository_commit()}
        _supersede(artifacts, replaced, by=path.name)
        files.write_json(self.file, {"artifacts": artifacts})
        return self.entry(path)

    def reuse(self, path: str | Path, identity: dict, *, overwrite: bool = False, complete: bool | None = None,
              what: str = "artifact") -> Entry | None:
        """The recorded entry when ``path`` may be reused as is; None when it is to be made (absent, or ``overwrite``).

        ``complete`` says whether the artifact on disk is whole (default: it exists). A whole artifact
        made with another identity, or one nobody recorded, stops the run: reusing it would return
        an old result for new settings.
        """
        path = Path(path)
        if overwrite or not (path.exists() if complete is None else complete):
            return None
        entry = self.entry(path)
        if entry is None:
            raise ValueError(f"{path}: a {what} is there but {self.file} does not record how it was made; "
                             "give a new output folder, or overwrite=True to make it again")
        same_or_stop(path, entry.identity, identity, made=entry.created, what=what)
        if entry.superseded_by is not None:  # its start was made again with the same weights: current again
            manifest = self._read()
            del manifest["artifacts"][path.name]["superseded_by"]
            files.write_json(self.file, manifest)
        return entry


def _supersede(artifacts: dict, replaced: set[str], *, by: str) -> None:
    """Mark what was made, directly or through others, from a replaced artifact: later stages no longer read it
    (its entry stays, so a rerun names what changed: the starting adapter's weights)."""
    stale = set(replaced)
    while True:
        more = {name for name, item in artifacts.items() if name not in stale and name != by
                and any(Path(str(item["identity"].get(key) or "")).name in stale for key in MADE_FROM)}
        if not more:
            break
        stale |= more
        for name in more:
            artifacts[name]["superseded_by"] = by


def same_or_stop(path: Path, recorded: dict, asked: dict, *, made: str | None, what: str) -> None:
    """Say that ``path`` is reused when the identity it was made with is the one asked for; else stop, naming
    the fields that differ and the two ways out."""
    changed = differences(recorded, normalised(asked))
    if changed:
        raise ValueError(f"{path}: this {what} was made with other settings ({'; '.join(changed)}); "
                         "give a new output folder, or overwrite=True to replace it")
    print(f"reusing {path}, {'trained' if 'adapter' in what else 'made'} {made}, same settings")
