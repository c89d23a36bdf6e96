"""The GPU check script runs on a CPU in its reduced form: 4-bit through bitsandbytes' CPU backend, float32
instead of bf16, and vLLM skipped, saying why."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared_utils import paths


@pytest.mark.slow
def test_gpu_check_runs_reduced_on_a_cpu_and_names_what_it_skipped(tiny_model_factory, tmp_path):
    """On the Gemma 3 look-alike, past its sliding window: every check but vLLM's passes."""
    report = tmp_path / "outcomes.json"
    done = subprocess.run([sys.executable, str(paths.REPO_ROOT / "benchmarks" / "gpu_check.py"),
                           "--model", str(tiny_model_factory("gemma3-1b")), "--steps", "2",
                           "--max-new-tokens", "8", "--json", str(report), "--report", str(tmp_path / "table.md")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = {outcome["check"]: outcome for outcome in json.loads(report.read_text())["outcomes"]}
    assert {name: outcome["status"] for name, outcome in outcomes.items()} == {
        "load": "passed", "load-4bit": "passed", "generate": "passed", "dpo-qlora": "passed",
        "adapter-roundtrip": "passed", "vllm-lora": "skipped"}
    assert {outcome["model"] for outcome in outcomes.values()} == {"gemma3-1b look-alike"}
    assert "Linear4bit layers (NF4, computing in float32) on cpu" in outcomes["load-4bit"]["detail"]
    assert outcomes["vllm-lora"]["detail"].startswith("needs CUDA and vLLM is not installed")
    assert "identical to model.generate" in outcomes["generate"]["detail"]
    assert "sliding window 64 (passed)" in outcomes["generate"]["detail"]
    assert "on the 4-bit model (QLoRA, computing in float32): lora_A moved in all" in outcomes["dpo-qlora"]["detail"]
    assert "on a freshly quantised base" in outcomes["adapter-roundtrip"]["detail"]
    assert "| gemma3-1b look-alike | vllm-lora | skipped |" in (tmp_path / "table.md").read_text()
