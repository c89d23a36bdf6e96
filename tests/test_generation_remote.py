"""Remote backends against a local HTTP server that speaks their wire formats (no network)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared_utils import prompts
from shared_utils.generation import Request, SamplingConfig, generate, request_pairs

PAIR = {"task_id": 1, "code_output_1": "def f(x):\n    return x", "code_output_2": "def f(x):\n    y = x\n    return y"}


class Server:
    """A scripted HTTP server: ``failures`` (status codes, or (status, headers)) are answered first, then ``handle``."""

    def __init__(self, handle, failures=()):
        self.log: list[tuple[str, str, dict]] = []
        self.times: list[float] = []
        self.failures = list(failures)
        self.handle = handle
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status, body, headers=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in dict(headers).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                outer.log.append((method, self.path, body))
                outer.times.append(time.monotonic())
                if outer.failures:
                    failure = outer.failures.pop(0)
                    status, headers = failure if isinstance(failure, tuple) else (failure, {})
                    return self._reply(status, {"error": {"code": status, "message": "scripted failure",
                                                          "status": "UNAVAILABLE"}}, headers)
                status, reply = outer.handle(method, self.path, body)
                return self._reply(status, reply)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_completion(body, contents):
    return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        for i, text in enumerate(contents)],
            "usage": {"prompt_tokens": 10, "completion_tokens": 6 * len(contents), "total_tokens": 10 + 6 * len(contents)}}


def test_openai_backend_retries_429_and_500_then_samples(tmp_path):
    def handle(method, path, body):
        assert path == "/v1/chat/completions" and method == "POST"
        task = body["messages"][-1]["content"]
        return 200, chat_completion(body, [f"```python\n# {task} {i}\n```\ntrailing prose" for i in range(body["n"])])

    server = Server(handle, failures=[429, 500])
    try:
        reqs = [Request(1, prompts.messages("one")), Request(2, prompts.messages("two"))]
        out = generate(reqs, backend="openai", model="served", base_url=server.url + "/v1", api_key="k",
                       concurrency=1, sampling=SamplingConfig(n=3, seed=2), progress=False,
                       checkpoint=tmp_path / "c.jsonl")
    finally:
        server.close()
    assert [c.key for c in out] == [(1, 0, s) for s in range(3)] + [(2, 0, s) for s in range(3)]
    assert out[0].text == "```python\n# one 0\n```" and out[5].text == "```python\n# two 2\n```"
    posts = [body for method, _, body in server.log]
    assert len(posts) == 4  # 429, 500, then one call per request
    assert posts[-1]["n"] == 3 and posts[-1]["temperature"] == 0.6 and posts[-1]["top_p"] == 0.9
    assert posts[-1]["model"] == "served" and "seed" in posts[-1]


def test_openai_backend_waits_as_long_as_the_servers_retry_after(tmp_path):
    """The SDK's own retries honour ``Retry-After``; a home-made backoff would come back at once."""
    server = Server(lambda method, path, body: (200, chat_completion(body, ["```python\nx = 1\n```"])),
                    failures=[(429, {"Retry-After": "2"})])
    try:
        generate([Request(1, prompts.messages("one"))], backend="openai", model="served", base_url=server.url + "/v1",
                 api_key="k", sampling=SamplingConfig(n=1), progress=False)
    finally:
        server.close()
    assert len(server.times) == 2 and server.times[1] - server.times[0] >= 1.9


def test_openai_backend_falls_back_to_one_request_per_sample_when_the_server_ignores_n(tmp_path):
    """Like ``transformers serve``: one choice whatever ``n`` asks; each sample then gets its own seed."""
    def handle(method, path, body):
        return 200, chat_completion(body, [f"```python\n# seed {body['seed']}\n```"])

    server = Server(handle)
    try:
        reqs = [Request(1, prompts.messages("one")), Request(2, prompts.messages("two"))]
        out = generate(reqs, backend="openai", model="unused", served_model="my-lora", adapter="/tmp/adapter",
                       base_url=server.url + "/v1", api_key="k", concurrency=1,
                       sampling=SamplingConfig(n=3, top_k=20), progress=False, checkpoint=tmp_path / "c.jsonl")
    finally:
        server.close()
    posts = [body for _, _, body in server.log]
    assert [body["n"] for body in posts] == [3, 1, 1, 1, 1, 1, 1]  # the second request goes per sample at once
    assert {body["model"] for body in posts} == {"my-lora"} and {body["top_k"] for body in posts} == {20}
    assert len({c.text for c in out}) == 6 and len({body["seed"] for body in posts[1:]}) == 6
    meta = json.loads((tmp_path / "c.jsonl.meta.json").read_text())
    assert meta["per_sample_fallbacks"] == 1 and meta["per_sample"] is True and meta["top_k"] == 20


def test_openai_backend_resends_top_k_in_generation_config_when_the_server_refuses_the_field(tmp_path):
    """Like ``transformers serve``: a top-level ``top_k`` is a 422; its ``generation_config`` JSON takes it."""
    def handle(method, path, body):
        if "top_k" in body:
            return 422, {"detail": "Unexpected fields in the request: {'top_k'}"}
        return 200, chat_completion(body, [f"# {body['generation_config']}"])

    server = Server(handle)
    try:
        reqs = [Request(1, prompts.messages("one")), Request(2, prompts.messages("two"))]
        out = generate(reqs, backend="openai", model="served", base_url=server.url + "/v1", api_key="k",
                       concurrency=1, sampling=SamplingConfig(n=1, top_k=20), progress=False,
                       checkpoint=tmp_path / "c.jsonl")
    finally:
        server.close()
    posts = [body for _, _, body in server.log]
    assert ["top_k" in body for body in posts] == [True, False, False]  # refused once, then never sent again
    assert {json.loads(body["generation_config"])["top_k"] for body in posts[1:]} == {20} and len(out) == 2
    assert json.loads((tmp_path / "c.jsonl.meta.json").read_text())["top_k_via"] == "generation_config"


def test_cli_generate_openai_per_sample_and_served_name(tmp_path):
    from shared_utils.cli import main

    server = Server(lambda method, path, body: (200, chat_completion(body, [f"# {body['seed']}"] * body["n"])))
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": 7, "text": "Add.", "code": "", "test_list": ["assert True"]}) + "\n")
    try:
        assert main(["generate", "--backend", "openai", "--model", "hub/model", "--served-model", "served",
                     "--per-sample", "--top-k", "20", "--base-url", server.url + "/v1", "--problems", str(problems),
                     "--n", "2", "--out", str(tmp_path / "gen.json")]) == 0
    finally:
        server.close()
    posts = [body for _, _, body in server.log]
    assert [(body["n"], body["model"], body["top_k"]) for body in posts] == [(1, "served", 20)] * 2
    assert posts[0]["seed"] != posts[1]["seed"]


def test_openai_pairs_validate_answers(tmp_path):
    def handle(method, path, body):
        text = body["messages"][0]["content"]
        assert body["response_format"]["type"] == "json_schema"
        if "task two" in text:
            return 200, chat_completion(body, ['{"task_id": 2, "code_output_1": "def f(): pass", "code_out'])
        return 200, chat_completion(body, [json.dumps(PAIR)])

    server = Server(handle, failures=[429, 503])
    try:
        problems = [{"task_id": 1, "text": "task one"}, {"task_id": 2, "text": "task two"}]
        pairs = request_pairs(problems, backend="openai", model="m", state_dir=tmp_path, base_url=server.url + "/v1",
                              api_key="k", concurrency=1)
    finally:
        server.close()
    assert pairs[1].ok and pairs[1].code_output_2 == PAIR["code_output_2"]
    assert not pairs[2].ok and "malformed JSON" in pairs[2].error
    assert (tmp_path / "pairs.jsonl").read_text().count("\n") == 1


class GeminiBatchAPI:
    """The Gemini Developer API batch endpoints as google-genai calls them (v1beta, inline requests)."""

    def __init__(self, answers, running_polls=1):
        self.answers, self.running_polls, self.created, self.polls = answers, running_polls, [], 0

    def __call__(self, method, path, body):
        path = re.sub(r"^/v1(beta)?/", "/API/", path)  # the SDK picks the API version
        if method == "POST" and path.startswith("/API/models/gemini-2.5-pro:batchGenerateContent"):
            requests = body["batch"]["inputConfig"]["requests"]["requests"]
            self.created.append(requests)
            return 200, {"name": "batches/job-1", "metadata": {"name": "batches/job-1", "state": "BATCH_STATE_PENDING",
                                                               "model": "models/gemini-2.5-pro"}}
        if method == "GET" and path.startswith("/API/batches/job-1"):
            self.polls += 1
            if self.polls <= self.running_polls:
                return 200, {"name": "batches/job-1", "metadata": {"state": "BATCH_STATE_RUNNING"}}
            requests = self.created[-1]
            inlined = []
            for item in requests:
                task_id = int(item["metadata"]["task_id"])
                inlined.append({"metadata": item["metadata"], "response": {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": self.answers[task_id]}]},
                                    "finishReason": "STOP"}]}})
            return 200, {"name": "batches/job-1", "metadata": {
                "state": "BATCH_STATE_SUCCEEDED", "output": {"inlinedResponses": {"inlinedResponses": inlined}}}}
        return 404, {"error": {"code": 404, "message": f"unexpected {method} {path}", "status": "NOT_FOUND"}}


def test_gemini_batch_pairs_resume_polling_and_validate(tmp_path):
    answers = {1: json.dumps(PAIR), 2: '{"task_id": 2, "code_output_1": "x"}', 3: "{not json"}
    api = GeminiBatchAPI(answers, running_polls=2)
    server = Server(api, failures=[429, 500])
    problems = [{"task_id": t, "text": f"task {t}"} for t in (1, 2, 3)]
    options = dict(backend="gemini", state_dir=tmp_path, base_url=server.url, api_key="k", poll_interval=0.01,
                   initial_delay=0.01)
    try:
        with pytest.raises(TimeoutError):  # the notebook dies while the job is running
            request_pairs(problems, timeout=0.0, **options)
        state = json.loads((tmp_path / "batch_job.json").read_text())
        assert state["job"] == "batches/job-1" and state["status"] == "submitted"
        pairs = request_pairs(problems, **options)  # restarted: polls the same job, pays once
        assert len(api.created) == 1
        sent = api.created[0][0]["request"]
        assert sent["generationConfig"]["responseMimeType"] == "application/json"
        assert "responseSchema" in sent["generationConfig"] or "responseJsonSchema" in sent["generationConfig"]
        assert "Create 2 different implementations" in sent["contents"][0]["parts"][0]["text"]
        again = request_pairs(problems, **options)  # done: replayed from state_dir, no call
    finally:
        server.close()
    assert pairs[1].ok and pairs[1].code_output_1 == PAIR["code_output_1"]
    assert not pairs[2].ok and "code_output_2" in pairs[2].error
    assert not pairs[3].ok and "malformed JSON" in pairs[3].error
    assert again == pairs
    assert [m for m, _, _ in server.log].count("POST") == 3  # 429, 500, then the one create
