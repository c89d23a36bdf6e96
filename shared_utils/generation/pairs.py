"""Stage-1 pair generation: two different, correct implementations per task, JSON schema DPOPair.

``gemini`` (the paper's path): one inline batch job through ``google-genai`` with a response
schema. The job name is written to ``state_dir`` before polling, so a restarted notebook resumes
polling the same job instead of paying twice; the validated answers are saved to
``state_dir/pairs.jsonl`` (the paper's DPOPair lines) and a later call just replays them.
``openai``: chat completions with a JSON-schema response format, same schema; answers are
appended to ``state_dir/pairs.jsonl`` as they arrive, so a rerun asks only for missing tasks.
Malformed JSON or a missing field is recorded as a PairResponse with ``error``, never a crash.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from shared_utils import files, prompts
from shared_utils.generation.replay import PairResponse, parse_pair

STATE_FILE = "batch_job.json"
PAIRS_FILE = "pairs.jsonl"
DONE_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
JSON_SCHEMA = {
    "type": "object",
    "properties": {"task_id": {"type": "integer"}, "code_output_1": {"type": "string"},
                   "code_output_2": {"type": "string"}},
    "required": ["task_id", "code_output_1", "code_output_2"],
    "additionalProperties": False,
}


def dpo_pair_model():
    """The paper's pydantic response schema (google-genai turns it into the request's responseSchema)."""
    from pydantic import BaseModel

    class DPOPair(BaseModel):
        task_id: int
        code_output_1: str
        code_output_2: str

    return DPOPair


def pair_prompt(problem: dict) -> str:
    return prompts.global_pair_prompt(problem["text"])


def paper_pair_prompt(problem: dict) -> str:
    return prompts.paper_global_pair_prompt(problem["task_id"], problem["text"])


def request_pairs(problems: list[dict], *, backend: str = "gemini", model: str = "gemini-2.5-pro",
                  state_dir: str | os.PathLike, protocol=None, **opts) -> dict[int, PairResponse]:
    """Ask ``backend`` for two implementations per problem.

    ``protocol.pair_prompt="paper"``: the authors' prompt (the task id leads) for both remote
    backends, and Gemini's answers are matched by the task id they name, as the authors did;
    ``"corrected"``: no id in the prompt, answers matched by their request.
    """
    from shared_utils.protocol import resolve

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    paper = resolve(protocol).pair_prompt == "paper"
    if paper and backend in ("gemini", "openai"):
        opts = {"prompt_fn": paper_pair_prompt, **opts}
    if backend == "gemini":
        return gemini_pairs(problems, model=model, state_dir=state_dir, match_by_answer=paper, **opts)
    if backend == "openai":
        return openai_pairs(problems, model=model, state_dir=state_dir, **opts)
    if backend == "replay":
        from shared_utils.generation.replay import replay_pairs

        return replay_pairs(opts.get("source") or state_dir / PAIRS_FILE)
    raise ValueError(f"unknown pair backend {backend!r}; expected gemini, openai or replay")


def _save_pairs(path: Path, pairs: dict[int, PairResponse]) -> None:
    """The paper's DPOPair lines for the valid answers, plus ``.errors.jsonl`` for the failures."""
    good = [json.dumps({"task_id": p.task_id, "code_output_1": p.code_output_1, "code_output_2": p.code_output_2},
                       ensure_ascii=False) for p in pairs.values() if p.ok]
    bad = [json.dumps(p.as_dict(), ensure_ascii=False) for p in pairs.values() if not p.ok]
    files.write_text(path, "".join(line + "\n" for line in good))
    files.write_text(path.with_suffix(".errors.jsonl"), "".join(line + "\n" for line in bad))


def _load_saved(path: Path) -> dict[int, PairResponse]:
    from shared_utils.generation.replay import replay_pairs

    pairs = replay_pairs(path)
    errors = path.with_suffix(".errors.jsonl")
    if errors.is_file():
        for row in files.read_jsonl(errors):
            pairs[int(row["task_id"])] = PairResponse(**row)
    return pairs


# ------------------------------------------------------------------------------------------ gemini
def gemini_client(api_key: str | None = None, base_url: str | None = None, attempts: int = 6,
                  initial_delay: float = 1.0):
    """The google-genai client with the SDK's own retries (408, 429 and 5xx, exponential backoff with jitter)."""
    from google import genai
    from google.genai import types

    retry = types.HttpRetryOptions(attempts=attempts, initial_delay=initial_delay, max_delay=60.0, exp_base=2.0,
                                   http_status_codes=[408, 429, 500, 502, 503, 504])
    options = types.HttpOptions(retry_options=retry, **({"base_url": base_url} if base_url else {}))
    return genai.Client(api_key=api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"),
                        http_options=options)


def gemini_pairs(problems: list[dict], *, model: str, state_dir: Path, api_key: str | None = None,
                 base_url: str | None = None, client=None, poll_interval: float = 30.0, timeout: float | None = None,
                 temperature: float | None = None, display_name: str = "dpo-global-pairs",
                 prompt_fn: Callable[[dict], str] = pair_prompt, attempts: int = 6, initial_delay: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, match_by_answer: bool = False) -> dict[int, PairResponse]:
    from google.genai import types

    saved = state_dir / PAIRS_FILE
    state_file = state_dir / STATE_FILE
    task_ids = [int(p["task_id"]) for p in problems]
    state = json.loads(state_file.read_text()) if state_file.is_file() else None
    if state and state.get("task_ids") != task_ids:
        raise ValueError(f"{state_file}: a batch job for other tasks ({len(state['task_ids'])}) is recorded; "
                         "use another state_dir or delete it")
    if state and state.get("status") == "done" and saved.is_file():
        return _load_saved(saved)
    client = client or gemini_client(api_key, base_url, attempts, initial_delay)
    if not state:
        config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=dpo_pair_model(),
                                             **({"temperature": temperature} if temperature is not None else {}))
        inlined = [types.InlinedRequest(contents=prompt_fn(p), config=config, metadata={"task_id": str(p["task_id"])})
                   for p in problems]
        job = client.batches.create(model=model, src=inlined, config=types.CreateBatchJobConfig(display_name=display_name))
        state = {"job": job.name, "model": model, "task_ids": task_ids, "created": files.now(), "status": "submitted"}
        files.write_json(state_file, state)  # before any polling: a restart resumes this job
    started = time.monotonic()
    while True:
        job = client.batches.get(name=state["job"])
        name = getattr(job.state, "name", None) or str(job.state)
        if name in DONE_STATES:
            break
        if timeout is not None and time.monotonic() - started > timeout:
            raise TimeoutError(f"batch job {state['job']} still {name} after {timeout:.0f} s; call again to resume")
        sleep(poll_interval)
    if name != "JOB_STATE_SUCCEEDED":
        files.write_json(state_file, {**state, "status": name, "error": str(getattr(job, "error", ""))})
        raise RuntimeError(f"batch job {state['job']} ended {name}: {getattr(job, 'error', '')}; "
                           f"delete {state_file} to submit a new job")
    responses = list(getattr(job.dest, "inlined_responses", None) or [])
    pairs = _parse_inlined(responses, task_ids, match_by_answer)
    _save_pairs(saved, pairs)
    files.write_json(state_file, {**state, "status": "done", "finished": files.now(),
                               "valid": sum(p.ok for p in pairs.values()), "failed": sum(not p.ok for p in pairs.values())})
    return pairs


def _parse_inlined(responses: list, task_ids: list[int], match_by_answer: bool = False) -> dict[int, PairResponse]:
    """Validated answers by task id: the request's (its metadata, else its position), or with
    ``match_by_answer`` the id the answer itself names (a later answer naming the same id wins)."""
    pairs: dict[int, PairResponse] = {}
    for position, item in enumerate(responses):
        metadata = getattr(item, "metadata", None) or {}
        try:
            task_id = int(metadata["task_id"]) if "task_id" in metadata else task_ids[position]
        except (ValueError, IndexError):
            continue
        where = f"batch response {position} (task_id={task_id})"
        if getattr(item, "error", None):
            pairs[task_id] = PairResponse(task_id, None, None, f"{where}: {item.error}")
            continue
        try:
            text = item.response.text
        except Exception as exc:  # noqa: BLE001 - the SDK raises on odd candidates
            text, exc_text = None, str(exc)
        else:
            exc_text = "no text in the response"
        if not text:
            pairs[task_id] = PairResponse(task_id, None, None, f"{where}: {exc_text}")
            continue
        pair = parse_pair(text, task_id=None if match_by_answer else task_id, where=where)
        if match_by_answer and pair.task_id is None:
            pair = PairResponse(task_id, None, None, f"{where}: the answer names no task_id")
        pairs[pair.task_id] = pair
    for task_id in task_ids:  # answers naming a task not asked are left out of the return
        pairs.setdefault(task_id, PairResponse(task_id, None, None, "no response in the batch results"))
    return {task_id: pairs[task_id] for task_id in task_ids}


# ------------------------------------------------------------------------------------------ openai
def openai_pairs(problems: list[dict], *, model: str, state_dir: Path, base_url: str | None = None,
                 api_key: str | None = None, client=None, concurrency: int = 4, attempts: int = 6,
                 temperature: float | None = None,
                 prompt_fn: Callable[[dict], str] = pair_prompt) -> dict[int, PairResponse]:
    import threading

    from shared_utils.generation.openai_backend import make_client

    client = client or make_client(base_url, api_key, attempts=attempts)
    log = state_dir / "openai_responses.jsonl"
    pairs: dict[int, PairResponse] = {}
    if log.is_file():
        for row in files.read_jsonl(log):
            pairs[int(row["task_id"])] = PairResponse(**row)
    lock = threading.Lock()
    response_format = {"type": "json_schema", "json_schema": {"name": "DPOPair", "schema": JSON_SCHEMA, "strict": True}}

    def ask(problem: dict) -> None:
        task_id = int(problem["task_id"])
        kwargs = dict(model=model, messages=[{"role": "user", "content": prompt_fn(problem)}],
                      response_format=response_format)
        if temperature is not None:
            kwargs["temperature"] = temperature
        try:
            response = client.chat.completions.create(**kwargs)
            text = response.choices[0].message.content
            pair = parse_pair(text or "", task_id=task_id, where=f"task {task_id}")
        except Exception as exc:  # noqa: BLE001 - a failed task is recorded, the others go on
            pair = PairResponse(task_id, None, None, f"task {task_id}: {type(exc).__name__}: {exc}")
        with lock:
            pairs[task_id] = pair
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(pair.as_dict(), ensure_ascii=False) + "\n")

    todo = [p for p in problems if int(p["task_id"]) not in pairs or not pairs[int(p["task_id"])].ok]
    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        list(pool.map(ask, todo))
    result = {int(p["task_id"]): pairs[int(p["task_id"])] for p in problems}
    _save_pairs(state_dir / PAIRS_FILE, result)
    return result
