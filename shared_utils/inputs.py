"""The authors' files this project reads: one manifest, a local folder, and a checked download.

Two groups of files come from the paper's authors: ``gemini`` (their 238 Gemini 2.5 Pro answer
pairs, the Stage-1 replay input) and ``published`` (their raw evaluation completions and their
own per-task and per-run analysis). ``resources/authors_files.json`` lists every file once, with
its size and sha256. They are read from the local data folder (``paths.shared_data_dir``:
``$SHARED_DATA_DIR``, else ``../shared/data`` beside the checkout, else the cache), and
``download-data`` fetches the missing ones into it from ``AUTHORS_BASE_URL``, checking each
against the manifest before keeping it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from shared_utils import files, paths

# The address under which the authors publish these files (the raw-file prefix of their repository,
# each file at <AUTHORS_BASE_URL>/<its path in the manifest>). Not known to this project yet: set it
# once here when it is.
AUTHORS_BASE_URL = ""
MANIFEST = Path(__file__).parent / "resources" / "authors_files.json"
GROUPS = ("gemini", "published")


def manifest() -> dict[str, dict[str, dict]]:
    """``{group: {relative path: {"bytes": n, "sha256": hex}}}``, as recorded."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))["groups"]


def check(path: Path, expected: dict) -> str | None:
    """None when ``path`` has the recorded size and checksum, else what is wrong, in a few words."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size != expected["bytes"]:
        return f"{path.stat().st_size} bytes, expected {expected['bytes']}"
    found = files.sha256_of(path)
    return None if found == expected["sha256"] else f"sha256 {found[:12]}..., expected {expected['sha256'][:12]}..."


def data_dir() -> Path:
    """The local data folder, or a one-line error saying how to get one."""
    found = paths.shared_data_dir()
    if found is None:
        tried = ", ".join(str(path) for path in paths.data_dir_candidates())
        raise FileNotFoundError(f"no local data folder (looked in {tried}): run `python -m shared_utils download-data` "
                                f"or set {paths.DATA_VARIABLE} to a folder holding the authors' files")
    return found


def group_dir(group: str, folder: Path | None = None) -> Path:
    """The folder that holds ``group``'s files (``published/``, ``global_dpo/``) in the data folder."""
    relative = Path(next(iter(manifest()[group])))
    return (folder or data_dir()) / relative.parent


def gemini_pairs() -> Path:
    """The authors' Gemini answers in the local data folder, checked against the manifest (the replay default)."""
    relative, expected = next(iter(manifest()["gemini"].items()))
    path = data_dir() / relative
    problem = check(path, expected)
    if problem == "missing":
        raise FileNotFoundError(f"{path}: missing; run `python -m shared_utils download-data --what gemini` "
                                "or pass the responses file")
    if problem:
        raise ValueError(f"{path}: {problem} (not the authors' file recorded in {MANIFEST.name})")
    return path


def status(groups=GROUPS, folder: Path | None = None) -> dict[str, str | None]:
    """Every file of ``groups`` in ``folder`` (default: the local data folder) and what is wrong with it."""
    folder = folder or paths.shared_data_dir() or paths.data_download_dir()
    return {relative: check(folder / relative, expected)
            for group in groups for relative, expected in manifest()[group].items()}


def download(groups=GROUPS, folder: Path | None = None, *, base_url: str | None = None, progress=print) -> Path:
    """Fetch every file of ``groups`` not already in ``folder`` with its recorded checksum; returns the folder.

    A file that arrives with another size or checksum is not kept. Without an address (the
    authors' is not known here yet) nothing is fetched and the error says what to do instead.
    """
    base_url = (base_url or AUTHORS_BASE_URL).rstrip("/")
    folder = Path(folder or paths.data_download_dir())
    wanted = {relative: expected for group in groups for relative, expected in manifest()[group].items()
              if check(folder / relative, expected) is not None}
    if wanted and not base_url:
        raise FileNotFoundError(
            f"the authors' address is not set (shared_utils.inputs.AUTHORS_BASE_URL): place the {len(wanted)} missing "
            f"file(s) listed in {MANIFEST.name} under {folder}, or set {paths.DATA_VARIABLE} to a folder holding them")
    for relative, expected in wanted.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_path(target) as tmp:
            with urllib.request.urlopen(f"{base_url}/{relative}", timeout=60) as response:
                Path(tmp).write_bytes(response.read())
            problem = check(Path(tmp), expected)
            if problem:
                raise ValueError(f"{base_url}/{relative}: {problem}; not kept")
        progress(f"fetched {relative} ({expected['bytes']} bytes, sha256 checked)")
    return folder


def record(folder: Path) -> Path:
    """Rewrite the manifest's sizes and checksums from the files in ``folder`` (same file list)."""
    groups = {group: {relative: {"bytes": (folder / relative).stat().st_size,
                                 "sha256": files.sha256_of(folder / relative)}
                      for relative in entries}
              for group, entries in manifest().items()}
    return files.write_json(MANIFEST, {**json.loads(MANIFEST.read_text()), "groups": groups})
