"""GPU check: the paper's GPU path in one short run (minutes), and its reduced form on a CPU.

What no CPU test can show: that 4-bit loading, a QLoRA DPO step, the sampling loop and vLLM with
an adapter work on a real GPU with the installed libraries. Each check is reported as passed,
failed or skipped (saying why), with its time and peak GPU memory, for each model:

1. ``load``: the model in bfloat16 on a GPU (float32 on a CPU), one forward pass;
2. ``load-4bit``: NF4 4-bit with bitsandbytes (CUDA kernels on a GPU, its CPU backend on a CPU);
3. ``generate``: our local sampling loop, greedy, gives the tokens ``model.generate`` gives;
4. ``dpo-qlora``: ``--steps`` DPO steps at the paper's learning rate (5e-7) on the 4-bit model
   (computing in bf16 on a GPU): every ``lora_A`` moves in most of its elements (a bf16 one
   would not) and stays float32;
5. ``adapter-roundtrip``: the saved adapter loads back onto a freshly quantised base with the same
   LoRA weights and logits;
6. ``vllm-lora``: the vLLM backend with the adapter as a ``LoRARequest``, against the local
   backend on the same prompts (needs vLLM and CUDA; vLLM is too large to carry in a bundle).

No hub access is needed. The default model is the embedded ``smollm2-135m``; ``--model`` (repeatable)
takes a registry name (hub weights) or a model folder. On a bare GPU machine (no registry, no hub):
``--bundle DIR``, a folder made by ``gpu_bundle.py``, installs the wheels it carries offline and
checks the tiny look-alikes of Gemma 3, Qwen 3 and Llama built from its tokenizer. Checks not
started within ``--budget-s`` are skipped. Exit status 1 when a check failed.

    python benchmarks/gpu_check.py [--bundle DIR [--install-only]] [--model smollm2-135m ...] [--steps 5]
                                   [--max-new-tokens 64] [--report FILE.md] [--json FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the repository, for a machine without `make setup`
from _common import machine, publish  # noqa: E402  (the script's own folder is on sys.path)

from shared_utils import files  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAPER_LEARNING_RATE = 5e-7
BUDGET_S = 480
# Gemma 3 as the 4-bit model loads (multimodal), Qwen 3, and Llama (the embedded SmolLM2's architecture)
LOOKALIKES = ("gemma3-12b", "qwen3-4b", "smollm2-135m")
VERSIONS = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "bitsandbytes", "radon", "vllm")
NO_VLLM = ("vLLM is not installed (a bundle does not carry it: its wheels and the torch build they pin are far over "
           "60 MiB); `pip install vllm` on the machine runs this check")


class Skipped(Exception):
    """A check this machine cannot run; the message says what it lacks."""


@dataclasses.dataclass
class Outcome:
    model: str
    check: str
    status: str  # passed | failed | skipped
    detail: str
    seconds: float
    peak_gpu_gib: float | None


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def toy_pairs(count: int = 4):
    """Preference pairs from the demo problems: the reference solution against a clumsier one."""
    from datasets import Dataset

    from shared_utils import data, prompts
    from shared_utils.extraction import wrap_code

    rows = []
    for problem in data.demo_problems()[:count]:
        clumsy = problem["code"].replace("    ", "  ") + "\n  pass"
        rows.append({"prompt": prompts.messages(problem["text"]),
                     "chosen": [{"role": "assistant", "content": wrap_code(problem["code"])}],
                     "rejected": [{"role": "assistant", "content": wrap_code(clumsy)}]})
    return Dataset.from_list(rows)


# ---------------------------------------------------------------- the bundle
def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def bundle_wheels(folder: Path, manifest: dict) -> dict[str, tuple[dict, Path]]:
    """The manifest's wheels that lie in ``folder`` (a part, or the bundle holding its parts), by distribution."""
    found = {}
    for part in manifest["parts"]:
        for wheel in part["wheels"]:
            for path in (folder / wheel["file"], folder / part["folder"] / wheel["file"]):
                if path.is_file():
                    found[wheel["distribution"]] = (wheel, path)
    return found


def install_bundle(folder: Path) -> dict:
    """Install the wheels ``folder`` carries, offline (``pip install --no-index --find-links``), after checking
    their sha256 against the manifest; the bundle's manifest. Wheels installed at their version already are kept."""
    manifest = json.loads((folder / "manifest.json").read_text())
    present = bundle_wheels(folder, manifest)
    for wheel, path in present.values():
        if hashlib.sha256(path.read_bytes()).hexdigest() != wheel["sha256"]:
            raise SystemExit(f"{path}: sha256 differs from the bundle's manifest; copy the bundle again")
    wanted = {name: entry for name, entry in present.items() if installed_version(name) != entry[0]["version"]}
    if wanted:
        links = [option for path in sorted({path.parent for _, path in wanted.values()})
                 for option in ("--find-links", str(path))]
        # --no-deps: what the wheels need is the machine's or another wheel's; a part may come before the others
        subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "--quiet", *links,
                        *[f"{name}=={wheel['version']}" for name, (wheel, _) in wanted.items()]], check=True)
        importlib.invalidate_caches()
    print(f"bundle: {len(present)} wheels in {folder} ({len(wanted)} installed now, {len(present) - len(wanted)} "
          "there already)", flush=True)
    return manifest


def parts_not_installed(manifest: dict) -> list[str]:
    """The bundle's parts with a wheel not installed at its version, each with what it lacks."""
    lacking = {part["folder"]: [f"{wheel['distribution']} {wheel['version']}" for wheel in part["wheels"]
                                if installed_version(wheel["distribution"]) != wheel["version"]]
               for part in manifest["parts"]}
    return [f"{folder} ({', '.join(names)})" for folder, names in lacking.items() if names]


def tokenizer_dir(folder: Path, manifest: dict) -> Path:
    for path in [folder / "tokenizer"] + [folder / part["folder"] / "tokenizer" for part in manifest["parts"]]:
        if path.is_dir():
            return path
    raise SystemExit(f"{folder}: no tokenizer/ here; hand over the bundle's last part (the one holding it)")


def lookalikes(tokenizer: Path, work: Path) -> list[str]:
    """The tiny look-alikes of ``LOOKALIKES``, built here from the bundle's tokenizer (random weights, seed 0)."""
    from tests.tiny_models import build_tiny_model

    return [str(build_tiny_model(name, work / f"{name}-lookalike", tokenizer_dir=tokenizer)) for name in LOOKALIKES]


class GpuCheck:
    def __init__(self, model: str, steps: int, max_new_tokens: int, work: Path):
        self.model, self.steps, self.max_new_tokens, self.work = model, steps, max_new_tokens, work
        self.adapter = work / "adapter"
        self.trained = None  # the DPO check's PEFT model, for the round trip
        self.quantized = False
        self.dtype = "bfloat16" if cuda() else "float32"  # the 4-bit compute dtype, as gemma3-12b's on a GPU

    def requests(self, count: int = 2):
        from shared_utils import data, prompts
        from shared_utils.generation import Request

        return [Request(problem["task_id"], prompts.messages(problem["text"]), n=1)
                for problem in data.demo_problems()[:count]]

    def greedy(self):
        from shared_utils.generation import SamplingConfig

        return SamplingConfig(n=1, temperature=0.0, max_new_tokens=self.max_new_tokens, stop_at_code_end=False)

    def load(self) -> str:
        import torch

        from shared_utils import models

        loaded = models.load_model(self.model, dtype=self.dtype, load_in_4bit=False)
        ids = loaded.tokenizer("def f():", return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.inference_mode():
            logits = loaded.model(ids).logits
        if not torch.isfinite(logits).all():
            raise AssertionError("non-finite logits")
        parameters = sum(param.numel() for param in loaded.model.parameters())
        return (f"{type(loaded.model).__name__}, {parameters / 1e6:.1f}M parameters in "
                f"{next(loaded.model.parameters()).dtype} on {loaded.model.device}")

    def load_4bit(self) -> str:
        import torch

        from shared_utils import models

        if not has("bitsandbytes"):
            raise Skipped("needs bitsandbytes (pip install bitsandbytes, or a bundle)")
        from bitsandbytes.nn import Linear4bit

        loaded = models.load_model(self.model, dtype=self.dtype, load_in_4bit=True)
        quantized = sum(isinstance(module, Linear4bit) for module in loaded.model.modules())
        ids = loaded.tokenizer("def f():", return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.inference_mode():
            if not torch.isfinite(loaded.model(ids).logits).all():
                raise AssertionError("non-finite logits")
        return (f"{quantized} Linear4bit layers (NF4, computing in {self.dtype}) on {loaded.model.device}, "
                f"{loaded.model.get_memory_footprint() / 2**30:.3f} GiB of weights")

    def generate(self) -> str:
        import torch

        from shared_utils import generation, models

        loaded = models.load_model(self.model, dtype=self.dtype)
        request = self.requests(1)[0]
        (ours,) = generation.generate([request], loaded=loaded, sampling=self.greedy(), progress=False)
        ids = loaded.tokenizer(loaded.render(request.messages), add_special_tokens=False,
                               return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.inference_mode():
            out = loaded.model.generate(ids, do_sample=False, max_new_tokens=self.max_new_tokens,
                                        pad_token_id=loaded.tokenizer.pad_token_id)
        theirs = loaded.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        if ours.text != theirs:
            raise AssertionError(f"the sampling loop wrote {ours.text[:80]!r}, model.generate {theirs[:80]!r}")
        window = getattr(loaded.model.config.get_text_config(), "sliding_window", None)
        length = ids.shape[1] + ours.tokens
        return (f"{ours.tokens} greedy tokens identical to model.generate; prompt + answer {length} tokens"
                + (f", sliding window {window} ({'passed' if length > window else 'not reached'})" if window else ""))

    def dpo_qlora(self) -> str:
        import torch

        from shared_utils import models, recipes
        from shared_utils.training import dpo

        self.quantized = has("bitsandbytes")
        registered = models.find_spec(self.model) is not None
        settings = recipes.load(self.model if registered else None).training("stage1").replace(
            max_steps=self.steps, learning_rate=PAPER_LEARNING_RATE, per_device_train_batch_size=2,
            gradient_accumulation_steps=1, max_length=256, save_strategy="no", logging_steps=1,
            activation_checkpointing=False)
        settings = dataclasses.replace(settings, load_in_4bit=self.quantized, load_dtype=self.dtype)
        trainer = dpo.build_trainer(self.model, dpo.load_pairs(toy_pairs()), self.work / "train", settings=settings,
                                    progress=False)
        lora_a = {name: param for name, param in trainer.model.named_parameters() if "lora_A" in name}
        before = {name: param.detach().clone() for name, param in lora_a.items()}
        trainer.train()
        # more than half the elements, not any: a bf16 tensor too moves in the few elements near zero
        moved = [name for name, param in lora_a.items() if (param != before[name]).float().mean() > 0.5]
        dtypes = {str(param.dtype).removeprefix("torch.") for param in lora_a.values()}
        if len(moved) != len(lora_a) or dtypes != {"float32"}:
            raise AssertionError(f"lora_A moved in {len(moved)} of {len(lora_a)} modules; dtypes {sorted(dtypes)}")
        trainer.model.save_pretrained(str(self.adapter))
        self.trained = trainer.model.eval()
        where = (f"the 4-bit model (QLoRA, computing in {self.dtype})" if self.quantized
                 else "the full-precision model (4-bit skipped: no bitsandbytes)")
        return (f"{self.steps} steps at lr {PAPER_LEARNING_RATE:g} on {where}: lora_A moved in all "
                f"{len(lora_a)} modules, float32")

    def adapter_roundtrip(self) -> str:
        import torch

        from shared_utils import models

        if self.trained is None:
            raise Skipped("no adapter: the dpo-qlora check did not pass")
        loaded = models.load_model(self.model, adapter=self.adapter, dtype=self.dtype, load_in_4bit=self.quantized)
        saved = {name: param for name, param in self.trained.named_parameters() if "lora_" in name}
        reloaded = dict(loaded.model.named_parameters())
        differ = [name for name, param in saved.items() if not torch.equal(param.float(), reloaded[name].float())]
        if differ:
            raise AssertionError(f"{len(differ)} LoRA tensors differ after reloading, e.g. {differ[0]}")
        ids = loaded.tokenizer("def add(a, b):", return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.inference_mode():
            gap = (self.trained(input_ids=ids).logits.float() - loaded.model(input_ids=ids).logits.float()).abs().max()
        tolerance = 5e-2 if cuda() else 1e-4
        if gap > tolerance:
            raise AssertionError(f"logits differ by {gap:.2e} after reloading (tolerance {tolerance:g})")
        return (f"{len(saved)} LoRA tensors identical on a freshly {'quantised' if self.quantized else 'loaded'} "
                f"base, logits within {gap:.1e}")

    def vllm_lora(self) -> str:
        from shared_utils import generation

        lacking = ([] if cuda() else ["CUDA"]) + ([] if has("vllm") else [NO_VLLM])
        if lacking:
            raise Skipped("needs " + " and ".join(lacking))
        if not self.adapter.is_dir():
            raise Skipped("no adapter: the dpo-qlora check did not pass")
        self.trained = None
        release_gpu()
        requests = self.requests(4)
        ours = generation.generate(requests, backend="vllm", model=self.model, adapter=self.adapter,
                                   sampling=self.greedy(), progress=False)
        release_gpu()
        local = generation.generate(requests, backend="local", model=self.model, adapter=self.adapter,
                                    sampling=self.greedy(), progress=False)
        if not all(completion.text for completion in ours):
            raise AssertionError("vLLM returned an empty completion")
        same = sum(a.text == b.text for a, b in zip(ours, local))
        return (f"{len(ours)} greedy completions with a LoRARequest; {same} of {len(ours)} identical to the "
                "local backend (bf16 kernels differ, so a few may not be)")

    def checks(self):
        return (("load", self.load), ("load-4bit", self.load_4bit), ("generate", self.generate),
                ("dpo-qlora", self.dpo_qlora), ("adapter-roundtrip", self.adapter_roundtrip),
                ("vllm-lora", self.vllm_lora))


def release_gpu() -> None:
    gc.collect()
    if cuda():
        import torch

        torch.cuda.empty_cache()


def run(model: str, name: str, check, deadline: float) -> Outcome:
    import torch

    if cuda():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        if start > deadline:
            raise Skipped("the run's time budget (--budget-s) was spent before this check")
        status, detail = "passed", check()
    except Skipped as skipped:
        status, detail = "skipped", str(skipped)
    except Exception as error:  # a failed check is reported, and the others still run
        traceback.print_exc()
        status, detail = "failed", f"{type(error).__name__}: {error}"
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda() else None
    release_gpu()
    outcome = Outcome(model, name, status, detail, round(time.perf_counter() - start, 1), peak and round(peak, 2))
    print(f"[{outcome.status}] {model}: {name} ({outcome.seconds} s): {detail}", flush=True)
    return outcome


def describe_model(model: str) -> str:
    """A look-alike by what it looks like (its provenance), anything else by its name."""
    made = files.read_provenance(model) if Path(model).is_dir() else None
    return f"{made['tiny_lookalike_of']} look-alike" if made and "tiny_lookalike_of" in made else model


def environment(bundle: dict | None) -> dict:
    import torch

    return {"device": torch.cuda.get_device_name(0) if cuda() else "CPU only", "machine": machine(),
            "versions": {name: installed_version(name) for name in VERSIONS},
            "bundle": None if bundle is None else [
                {"folder": part["folder"], "mib": part["mib"], "wheels": [f"{w['distribution']} {w['version']}"
                                                                          for w in part["wheels"]]}
                for part in bundle["parts"]]}


def markdown(outcomes: list[Outcome], setting: dict, seconds: float) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in setting["versions"].items() if version)
    lines = [f"# GPU check on {setting['device']}", "", setting["machine"], "", f"Versions: {versions}.", ""]
    if setting["bundle"]:
        lines += ["Installed offline from a bundle (`benchmarks/gpu_bundle.py`): " + "; ".join(
            f"`{part['folder']}` {part['mib']} MiB" for part in setting["bundle"]) + ".", ""]
    lines += [f"All checks in {seconds:.0f} s.", "",
              "| model | check | status | seconds | peak GPU GiB | detail |", "|---|---|---|---|---|---|"]
    lines += [f"| {o.model} | {o.check} | {o.status} | {o.seconds} | "
              f"{'' if o.peak_gpu_gib is None else o.peak_gpu_gib} | {o.detail} |" for o in outcomes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a folder (or one part) made by gpu_bundle.py: install it "
                        "offline and check the tiny look-alikes")
    parser.add_argument("--install-only", action="store_true", help="install this part of the bundle and stop")
    parser.add_argument("--model", action="append", help="registry name or model folder (repeatable; default: the "
                        "bundle's look-alikes, else smollm2-135m)")
    parser.add_argument("--steps", type=int, default=5, help="DPO steps (2 at least: lora_B starts at zero)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="skip the checks not started by then")
    parser.add_argument("--report", type=Path, help="write the table here (e.g. benchmarks/results/gpu_check.md)")
    parser.add_argument("--json", type=Path, help="write the setting and outcomes here as JSON")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be 2 or more: lora_A's first gradient is zero while lora_B is")
    if args.install_only and not args.bundle:
        parser.error("--install-only needs --bundle")
    start = time.perf_counter()
    bundle = install_bundle(args.bundle) if args.bundle else None
    if bundle is not None:
        absent = parts_not_installed(bundle)
        if args.install_only:
            print("installed; parts still to install: " + ("; ".join(absent) if absent else "none"))
            return 0
        if absent:
            print(f"{args.bundle}: parts not installed yet: {'; '.join(absent)}; hand each over with "
                  "`gpu_check.py --bundle PART --install-only` first", file=sys.stderr)
            return 2
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        work = Path(work)
        models = args.model or (lookalikes(tokenizer_dir(args.bundle, bundle), work) if bundle else ["smollm2-135m"])
        for index, model in enumerate(models):
            checker = GpuCheck(model, args.steps, args.max_new_tokens, work / f"model-{index}")
            outcomes += [run(describe_model(model), name, check, start + args.budget_s)
                         for name, check in checker.checks()]
    setting = environment(bundle)
    table = markdown(outcomes, setting, time.perf_counter() - start)
    if args.report:
        publish(args.report, [table])
    else:
        print(table)
    if args.json:
        files.write_json(args.json, {**setting, "outcomes": [dataclasses.asdict(o) for o in outcomes]}, indent=1)
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
