"""Gather what a bare GPU machine lacks for ``gpu_check.py`` into one folder it can be handed.

The machine: PyTorch, transformers, peft, accelerate, safetensors and tokenizers installed (with
what they require), no package registry, no hub, at most 60 MiB of files per call. The folder:

- the wheels of every distribution the check imports that the machine lacks (TRL, datasets with
  pyarrow and pandas, radon, bitsandbytes, ...), at the versions installed here (the pins of
  ``requirements*.txt``), for the machine's Python (``--python-version``) on manylinux x86-64,
  downloaded with ``pip download``;
- ``tokenizer/``: the embedded model's tokenizer, from which the check builds the tiny look-alikes
  of Gemma 3, Qwen 3 and Llama (``tests/tiny_models.py``); their random weights (about 6 MiB each)
  are not worth carrying;
- ``manifest.json``: every file with its size and sha256, what the machine was assumed to have.

Wheels that do not fit one call are spread over parts (``part-1/``, ``part-2/``, ...), each under
the limit, the tokenizer in the last; hand them over one call at a time to a machine kept warm
(``gpu_check.py --bundle PART --install-only`` for all but the last). ``--have`` names more
distributions the machine already has (the project's lent machine has pandas, pyarrow and xxhash,
which leaves one part).

    python benchmarks/gpu_bundle.py [--out gpu_bundle] [--python-version 3.12] [--have pandas pyarrow xxhash]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MIB = 2**20
LIMIT_MIB = 60
PREINSTALLED = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers")
CHECK_NEEDS = ("trl", "radon", "bitsandbytes")  # datasets comes with TRL
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"
MANIFEST_ROOM = 64 * 1024  # kept free in each part for its manifest.json


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def requirements(name: str, python_version: str) -> set[str]:
    """The distributions ``name`` (as installed here) requires on the target Python, extras left out; none
    known for one not installed here (a ``--have`` of the machine's own)."""
    from packaging.requirements import Requirement

    try:
        lines = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    environment = {"python_version": python_version, "python_full_version": python_version + ".0",
                   "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    needed = set()
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            needed.add(canonical(requirement.name))
    return needed


def closure(roots, requires) -> set[str]:
    """``roots`` and everything they require, through ``requires(name) -> names``."""
    seen, todo = set(), [canonical(root) for root in roots]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(requires(name) - seen)
    return seen


def missing(have, python_version: str, requires=None) -> list[str]:
    """What the check needs that a machine with ``have`` (and what it requires) lacks, sorted."""
    requires = requires or (lambda name: requirements(name, python_version))
    return sorted(closure(CHECK_NEEDS, requires) - closure(have, requires))


def pack(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Items into as few parts of at most ``limit`` bytes as first-fit by decreasing size finds."""
    too_big = [name for name, size in sizes.items() if size > limit]
    if too_big:
        raise ValueError(f"{too_big[0]} ({sizes[too_big[0]] / MIB:.1f} MiB) does not fit one part of "
                         f"{limit / MIB:g} MiB: raise --limit-mib, or --have it on the machine")
    parts: list[list[str]] = []
    for name in sorted(sizes, key=lambda name: (-sizes[name], name)):
        part = next((part for part in parts if sum(sizes[item] for item in part) + sizes[name] <= limit), None)
        if part is None:
            part = []
            parts.append(part)
        part.append(name)
    return parts


def installed_here(name: str) -> bool:
    try:
        return bool(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return False


def download(names: list[str], python_version: str, folder: Path) -> dict[str, Path]:
    """Each distribution's wheel at the version installed here, for the target Python and manylinux."""
    absent = [name for name in names if not installed_here(name)]
    if absent:
        raise SystemExit(f"not installed here, so no version to pin: {', '.join(absent)} "
                         "(pip install -r requirements.txt -r requirements-test.txt first)")
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in names]
    platforms = [option for tag in PLATFORMS for option in ("--platform", tag)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--implementation", "cp", "--python-version", python_version, *platforms, "-d", str(folder),
                    *pins], check=True)
    wheels = {canonical(path.name.split("-")[0]): path for path in folder.glob("*.whl")}
    absent = [name for name in names if name not in wheels]
    if absent:
        raise RuntimeError(f"pip download saved no wheel for {', '.join(absent)}")
    return {name: wheels[name] for name in names}


def save_tokenizer(folder: Path) -> None:
    from transformers import AutoTokenizer

    from shared_utils.models import embedded_model_dir

    AutoTokenizer.from_pretrained(embedded_model_dir()).save_pretrained(folder)


def build(out: Path, *, python_version: str, have: tuple[str, ...] = (), limit_mib: float = LIMIT_MIB) -> dict:
    """Write the bundle into ``out`` (replaced) and return its manifest. The part with the tokenizer is the
    last, the one the check runs with."""
    assumed = closure((*PREINSTALLED, *have), lambda name: requirements(name, python_version))
    names = missing((*PREINSTALLED, *have), python_version)
    with tempfile.TemporaryDirectory(prefix="gpu_bundle_") as tmp:
        tmp = Path(tmp)
        wheels = download(names, python_version, tmp / "wheels")
        save_tokenizer(tmp / TOKENIZER)
        sizes = {name: path.stat().st_size for name, path in wheels.items()}
        sizes[TOKENIZER] = sum(path.stat().st_size for path in (tmp / TOKENIZER).iterdir())
        parts = sorted(pack(sizes, int(limit_mib * MIB) - MANIFEST_ROOM), key=lambda part: TOKENIZER in part)
        shutil.rmtree(out, ignore_errors=True)
        folders = [out] if len(parts) == 1 else [out / f"part-{i}" for i in range(1, len(parts) + 1)]
        manifest = {"python_version": python_version, "platforms": list(PLATFORMS), "limit_mib": limit_mib,
                    "assumed_installed": sorted(assumed), "built_on": f"Python {platform.python_version()}",
                    "parts": []}
        for folder, part in zip(folders, parts):
            folder.mkdir(parents=True)
            entry = {"folder": folder.relative_to(out).as_posix(), "wheels": []}
            for name in sorted(set(part) - {TOKENIZER}):
                copied = Path(shutil.copy2(wheels[name], folder))
                entry["wheels"].append({"distribution": name, "version": importlib.metadata.version(name),
                                        "file": copied.name, "bytes": copied.stat().st_size,
                                        "sha256": hashlib.sha256(copied.read_bytes()).hexdigest()})
            if TOKENIZER in part:
                shutil.copytree(tmp / TOKENIZER, folder / TOKENIZER)
                entry["tokenizer"] = TOKENIZER
            entry["mib"] = round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / MIB, 2)
            manifest["parts"].append(entry)
    for folder in {out, *folders}:
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_bundle"), help="the folder to write (replaced)")
    parser.add_argument("--python-version", default="{}.{}".format(*sys.version_info[:2]),
                        help="the GPU machine's Python (default: this one's)")
    parser.add_argument("--have", nargs="*", default=[], help="distributions the machine has beyond the six")
    parser.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="the most one call may carry")
    args = parser.parse_args(argv)
    manifest = build(args.out, python_version=args.python_version, have=tuple(args.have), limit_mib=args.limit_mib)
    for part in manifest["parts"]:
        names = ", ".join(f"{wheel['distribution']} {wheel['version']}" for wheel in part["wheels"])
        print(f"{args.out / part['folder']}: {part['mib']} MiB: {names}" + (" + tokenizer" if "tokenizer" in part else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
