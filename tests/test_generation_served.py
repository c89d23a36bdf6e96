"""The OpenAI backend against a real OpenAI-compatible server: ``transformers serve`` on the embedded model.

The stub tests (test_generation_remote.py) pin what the backend sends; only a real server shows
whether it is understood. ``transformers serve`` answers one choice whatever ``n`` asks, rejects a
top-level ``top_k`` (its own field is ``generation_config``) and only accepts the name it was
started with, so it exercises every adaptation the backend makes. One server for the module,
offline, on a free port, with one CPU thread (several threads on a shared machine are far slower).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from shared_utils.generation import openai_backend, read_paper_format
from shared_utils.models import embedded_model_dir
from stand_ins import free_port

pytestmark = pytest.mark.slow

PROBLEMS = [{"task_id": 11, "text": "Write a function to find the shared elements of two lists.", "code": "",
             "test_list": ["assert True"]},
            {"task_id": 12, "text": "Write a python function to tell whether a number is prime.", "code": "",
             "test_list": ["assert True"]}]


def _wait_until_healthy(proc: subprocess.Popen, url: str, log, timeout: float = 120.0) -> None:
    """The server answers ``/health`` once the model is loaded; an exit before that is a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"transformers serve not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(base_url, model name)`` of a running ``transformers serve`` pinned to the embedded model."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("`transformers serve` needs its serving extra (fastapi, uvicorn: pinned in requirements-test.txt)")
    model = str(embedded_model_dir())
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "transformers.cli.transformers", "serve", model,
                                 "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_healthy(proc, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def sent(monkeypatch):
    """The JSON bodies the backend's client puts on the wire (what the server received, rejected ones too)."""
    import httpx2

    bodies: list[dict] = []
    make_client = openai_backend.make_client

    def recording(*args, **kwargs):
        hooks = {"request": [lambda request: bodies.append(json.loads(request.content))]}
        return make_client(*args, **kwargs).with_options(http_client=httpx2.Client(event_hooks=hooks))

    monkeypatch.setattr(openai_backend, "make_client", recording)
    return bodies


def _generate(folder, base_url, *options):
    from shared_utils.cli import main

    folder.mkdir(exist_ok=True)
    problems = folder / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return main(["generate", "--backend", "openai", "--model", "smollm2-135m", "--base-url", base_url,
                 "--problems", str(problems), "--out", str(folder / "gen.json"), "--max-new-tokens", "24",
                 *options])


def test_cli_generate_n2_falls_back_per_sample_with_seeds_and_top_k(served, sent, tmp_path):
    """``--n 2`` against a server that answers one choice: two seeded samples per task, top-k honoured."""
    base_url, model = served
    assert _generate(tmp_path, base_url, "--served-model", model, "--n", "2", "--top-k", "20",
                     "--temperature", "1.0") == 0

    samples = read_paper_format(tmp_path / "gen.json")
    assert set(samples) == {11, 12} and all(len(texts) == 2 and all(texts) for texts in samples.values())
    # Sampling happened on the server (it is greedy unless asked to sample): some task got two different answers.
    assert any(len(set(texts)) == 2 for texts in samples.values())
    meta = json.loads((tmp_path / "gen.json.ckpt.jsonl.meta.json").read_text())
    assert meta["per_sample"] is True and meta["per_sample_fallbacks"] >= 1
    assert meta["top_k"] == 20 and meta["top_k_via"] == "generation_config"

    assert {body["model"] for body in sent} == {model}
    answered = [body for body in sent if "generation_config" in body]
    assert len(answered) >= 4 and all("top_k" not in body for body in answered)
    assert all(json.loads(body["generation_config"]) == {"do_sample": True, "top_k": 20} for body in answered)
    per_sample = [body for body in answered if body["n"] == 1]
    assert len(per_sample) == 4 and len({body["seed"] for body in per_sample}) == 4


def test_top_k_reaches_the_servers_sampling(served, tmp_path):
    """With top-k 1 the differently seeded samples, different at top-k 20 above, agree: the server applied it."""
    base_url, model = served
    assert _generate(tmp_path, base_url, "--served-model", model, "--n", "2", "--top-k", "1", "--temperature", "1.0",
                     "--limit", "1") == 0
    [texts] = read_paper_format(tmp_path / "gen.json").values()
    assert len(texts) == 2 and texts[0] == texts[1]


def test_served_model_must_name_the_model_the_server_knows(served, tmp_path):
    """The server is pinned to its folder: the registry name alone is refused, ``--served-model`` is what it knows."""
    from openai import BadRequestError

    base_url, _ = served
    for folder, options in (("registry-name", ()), ("other-name", ("--served-model", "some-other-name"))):
        with pytest.raises(BadRequestError) as refused:
            _generate(tmp_path / folder, base_url, "--n", "1", *options)
        assert "Server is pinned to" in str(refused.value.body)
