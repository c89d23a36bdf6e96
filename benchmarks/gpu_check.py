"""GPU check: the paper's GPU path in one short run (minutes), and its reduced form on a CPU.

What no CPU test can show: that 4-bit loading, a QLoRA DPO step, the sampling loop and vLLM with
an adapter work on a real GPU with the installed libraries. Each check is reported as passed,
failed or skipped (saying why), with its time and peak GPU memory:

1. ``load``: the model in bfloat16 on a GPU (float32 on a CPU), one forward pass;
2. ``load-4bit``: NF4 4-bit with bitsandbytes (needs CUDA and bitsandbytes);
3. ``generate``: our local sampling loop, greedy, gives the tokens ``model.generate`` gives;
4. ``dpo-qlora``: ``--steps`` DPO steps at the paper's learning rate (5e-7) on the 4-bit model:
   every ``lora_A`` moves and stays float32 (on a CPU: the full-precision model, so only the
   float32 part is shown);
5. ``adapter-roundtrip``: the saved adapter loads back with the same LoRA weights and logits;
6. ``vllm-lora``: the vLLM backend with the adapter as a ``LoRARequest``, against the local
   backend on the same prompts (needs vLLM and CUDA).

No hub access is needed with the default, the embedded ``smollm2-135m``; ``--model`` takes a
registry name (hub weights) or a model folder (a tiny look-alike, e.g. Gemma 3's, whose sliding
window ``--max-new-tokens`` can pass). Exit status 1 when a check failed.

    python benchmarks/gpu_check.py [--model smollm2-135m] [--steps 5] [--max-new-tokens 64]
                                   [--report benchmarks/results/gpu_check.md] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from _common import machine, publish  # the script's own folder is on sys.path

from shared_utils import files

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PAPER_LEARNING_RATE = 5e-7


class Skipped(Exception):
    """A check this machine cannot run; the message says what it lacks."""


@dataclasses.dataclass
class Outcome:
    check: str
    status: str  # passed | failed | skipped
    detail: str
    seconds: float
    peak_gpu_gib: float | None


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def needs(*, bitsandbytes: bool = False, vllm: bool = False) -> None:
    """Raise ``Skipped`` naming what this machine lacks for the check."""
    lacking = [] if cuda() else ["CUDA"]
    for wanted, module in ((bitsandbytes, "bitsandbytes"), (vllm, "vllm")):
        if wanted and importlib.util.find_spec(module) is None:
            lacking.append(f"{module} (pip install {module})")
    if lacking:
        raise Skipped("needs " + " and ".join(lacking))


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


class GpuCheck:
    def __init__(self, model: str, steps: int, max_new_tokens: int, work: Path):
        self.model, self.steps, self.max_new_tokens, self.work = model, steps, max_new_tokens, work
        self.adapter = work / "adapter"
        self.trained = None  # the DPO check's PEFT model, for the round trip
        self.quantized = False

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

        loaded = models.load_model(self.model, dtype="bfloat16" if cuda() else "float32", load_in_4bit=False)
        ids = loaded.tokenizer("def f():", return_tensors="pt").input_ids.to(loaded.model.device)
        with torch.inference_mode():
            logits = loaded.model(ids).logits
        if not torch.isfinite(logits).all():
            raise AssertionError("non-finite logits")
        parameters = sum(param.numel() for param in loaded.model.parameters())
        return (f"{type(loaded.model).__name__}, {parameters / 1e6:.0f}M parameters in "
                f"{next(loaded.model.parameters()).dtype} on {loaded.model.device}")

    def load_4bit(self) -> str:
        from shared_utils import models

        needs(bitsandbytes=True)
        loaded = models.load_model(self.model, load_in_4bit=True)
        return f"{loaded.model.get_memory_footprint() / 2**30:.2f} GiB of weights in 4-bit"

    def generate(self) -> str:
        import torch

        from shared_utils import generation, models

        loaded = models.load_model(self.model)
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

        self.quantized = cuda() and importlib.util.find_spec("bitsandbytes") is not None
        registered = models.find_spec(self.model) is not None
        settings = recipes.load(self.model if registered else None).training("stage1").replace(
            max_steps=self.steps, learning_rate=PAPER_LEARNING_RATE, per_device_train_batch_size=2,
            gradient_accumulation_steps=1, max_length=256, save_strategy="no", logging_steps=1,
            activation_checkpointing=False)
        settings = dataclasses.replace(settings, load_in_4bit=self.quantized)
        trainer = dpo.build_trainer(self.model, dpo.load_pairs(toy_pairs()), self.work / "train", settings=settings,
                                    progress=False)
        lora_a = {name: param for name, param in trainer.model.named_parameters() if "lora_A" in name}
        before = {name: param.detach().clone() for name, param in lora_a.items()}
        trainer.train()
        moved = [name for name, param in lora_a.items() if not torch.equal(param, before[name])]
        dtypes = {str(param.dtype).removeprefix("torch.") for param in lora_a.values()}
        if len(moved) != len(lora_a) or dtypes != {"float32"}:
            raise AssertionError(f"lora_A moved in {len(moved)} of {len(lora_a)} modules; dtypes {sorted(dtypes)}")
        trainer.model.save_pretrained(str(self.adapter))
        self.trained = trainer.model.eval()
        where = "the 4-bit model (QLoRA)" if self.quantized else "the full-precision model (4-bit skipped: " + (
            "no bitsandbytes)" if cuda() else "needs CUDA)")
        return (f"{self.steps} steps at lr {PAPER_LEARNING_RATE:g} on {where}: lora_A moved in all "
                f"{len(lora_a)} modules, float32")

    def adapter_roundtrip(self) -> str:
        import torch

        from shared_utils import models

        if self.trained is None:
            raise Skipped("no adapter: the dpo-qlora check did not pass")
        loaded = models.load_model(self.model, adapter=self.adapter, load_in_4bit=self.quantized)
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
        return f"{len(saved)} LoRA tensors identical, logits within {gap:.1e}"

    def vllm_lora(self) -> str:
        from shared_utils import generation

        needs(vllm=True)
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


def release_gpu() -> None:
    gc.collect()
    if cuda():
        import torch

        torch.cuda.empty_cache()


def run(name: str, check) -> Outcome:
    import torch

    if cuda():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        status, detail = "passed", check()
    except Skipped as skipped:
        status, detail = "skipped", str(skipped)
    except Exception as error:  # a failed check is reported, and the others still run
        traceback.print_exc()
        status, detail = "failed", f"{type(error).__name__}: {error}"
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda() else None
    release_gpu()
    outcome = Outcome(name, status, detail, round(time.perf_counter() - start, 1), peak and round(peak, 2))
    print(f"[{outcome.status}] {name} ({outcome.seconds} s): {detail}", flush=True)
    return outcome


def markdown(outcomes: list[Outcome], model: str) -> str:
    import torch

    device = torch.cuda.get_device_name(0) if cuda() else "CPU only"
    lines = [f"# GPU check: `{model}` on {device}", "", machine(), "",
             "| check | status | seconds | peak GPU GiB | detail |", "|---|---|---|---|---|"]
    lines += [f"| {o.check} | {o.status} | {o.seconds} | {'' if o.peak_gpu_gib is None else o.peak_gpu_gib} | "
              f"{o.detail} |" for o in outcomes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="registry name or model folder")
    parser.add_argument("--steps", type=int, default=5, help="DPO steps (2 at least: lora_B starts at zero)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--report", type=Path, help="write the table here (e.g. benchmarks/results/gpu_check.md)")
    parser.add_argument("--json", type=Path, help="write the outcomes here as JSON")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be 2 or more: lora_A's first gradient is zero while lora_B is")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        checker = GpuCheck(args.model, args.steps, args.max_new_tokens, Path(work))
        outcomes = [run(name, check) for name, check in (
            ("load", checker.load), ("load-4bit", checker.load_4bit), ("generate", checker.generate),
            ("dpo-qlora", checker.dpo_qlora), ("adapter-roundtrip", checker.adapter_roundtrip),
            ("vllm-lora", checker.vllm_lora))]
    table = markdown(outcomes, args.model)
    if args.report:
        publish(args.report, [table])
    else:
        print(table)
    if args.json:
        files.write_json(args.json, [dataclasses.asdict(outcome) for outcome in outcomes], indent=1)
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
