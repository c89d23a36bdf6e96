"""The GPU bundle's bookkeeping, without downloading: what a bare machine lacks, how wheels are spread
over parts under the size limit, and how the check installs a part offline (or refuses a bad one)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys

import pytest

from shared_utils import paths

sys.path.insert(0, str(paths.REPO_ROOT / "benchmarks"))
import gpu_bundle  # noqa: E402
import gpu_check  # noqa: E402

MIB = gpu_bundle.MIB
# the shape of the real dependency graph (TRL 1.16, datasets 5.2, torch 2.13), trimmed
GRAPH = {"trl": {"accelerate", "datasets", "transformers", "pandas", "pyarrow"}, "radon": {"mando", "colorama"},
         "mando": {"six"}, "bitsandbytes": set(), "datasets": {"pyarrow", "pandas", "dill", "fsspec", "numpy"},
         "pandas": {"numpy", "python-dateutil"}, "python-dateutil": {"six"}, "transformers": {"numpy", "tokenizers"},
         "accelerate": {"torch", "numpy"}, "peft": {"torch", "transformers", "accelerate"}, "torch": {"fsspec"},
         "safetensors": set(), "tokenizers": set()}


def requires(name: str) -> set[str]:
    return GRAPH.get(name, set())


def test_a_bare_machine_lacks_what_the_check_imports_beyond_the_six_and_their_needs():
    lacking = gpu_bundle.missing(gpu_bundle.PREINSTALLED, "3.12", requires)
    assert lacking == ["bitsandbytes", "colorama", "datasets", "dill", "mando", "pandas", "pyarrow",
                       "python-dateutil", "radon", "six", "trl"]
    with_pandas = gpu_bundle.missing((*gpu_bundle.PREINSTALLED, "pandas", "pyarrow"), "3.12", requires)
    assert "pandas" not in with_pandas and "python-dateutil" not in with_pandas and "trl" in with_pandas


def test_requirements_follow_the_target_pythons_markers():
    """pandas wants tzdata only on Windows and in the browser; the bundle is for Linux."""
    needed = gpu_bundle.requirements("pandas", "3.12")
    assert "python-dateutil" in needed and "numpy" in needed and "tzdata" not in needed


def test_wheels_too_large_for_one_call_are_spread_over_parts_under_the_limit():
    sizes = {"pyarrow": 52 * MIB, "bitsandbytes": 41 * MIB, "pandas": 12 * MIB, "trl": MIB, "tokenizer": 3 * MIB,
             "six": 10_000}
    parts = gpu_bundle.pack(sizes, 60 * MIB)
    assert len(parts) == 2 and sorted(name for part in parts for name in part) == sorted(sizes)
    assert all(sum(sizes[name] for name in part) <= 60 * MIB for part in parts)
    assert gpu_bundle.pack({"trl": MIB, "six": 10_000}, 60 * MIB) == [["trl", "six"]]
    with pytest.raises(ValueError, match=r"pyarrow \(52.0 MiB\) does not fit one part of 50 MiB"):
        gpu_bundle.pack(sizes, 50 * MIB)


def fake_bundle(folder, files: dict[str, bytes], sha256: dict[str, str] | None = None) -> dict:
    """A bundle of two parts whose wheels name installed distributions (radon in part-1, trl in part-2)."""
    manifest = {"parts": []}
    for part, name in (("part-1", "radon"), ("part-2", "trl")):
        wheel = f"{name}-{importlib.metadata.version(name)}-py3-none-any.whl"
        (folder / part).mkdir(parents=True)
        (folder / part / wheel).write_bytes(files[name])
        digest = (sha256 or {}).get(name) or hashlib.sha256(files[name]).hexdigest()
        manifest["parts"].append({"folder": part, "mib": 0.0, "wheels": [
            {"distribution": name, "version": importlib.metadata.version(name), "file": wheel, "sha256": digest}]})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "part-2" / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_a_part_whose_wheels_are_installed_already_installs_nothing(tmp_path, monkeypatch):
    fake_bundle(tmp_path, {"radon": b"r", "trl": b"t"})
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda *a, **k: pytest.fail("pip ran for installed wheels"))
    manifest = gpu_check.install_bundle(tmp_path / "part-2")
    assert gpu_check.parts_not_installed(manifest) == []
    assert set(gpu_check.bundle_wheels(tmp_path, manifest)) == {"radon", "trl"}
    assert set(gpu_check.bundle_wheels(tmp_path / "part-2", manifest)) == {"trl"}


def test_a_missing_part_is_named_and_a_corrupt_wheel_refused(tmp_path, monkeypatch):
    manifest = fake_bundle(tmp_path, {"radon": b"r", "trl": b"t"})
    manifest["parts"][0]["wheels"][0]["version"] = "0.0.1"  # not what is installed: part-1 still to hand over
    assert gpu_check.parts_not_installed(manifest) == ["part-1 (radon 0.0.1)"]
    fake_bundle(tmp_path / "bad", {"radon": b"r", "trl": b"t"}, sha256={"trl": "0" * 64})
    with pytest.raises(SystemExit, match="sha256 differs"):
        gpu_check.install_bundle(tmp_path / "bad" / "part-2")
