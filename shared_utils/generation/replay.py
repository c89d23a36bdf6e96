"""Replaying earlier outputs: the paper's DPOPair JSON lines, our paper-format files and checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared_utils.generation.core import Batch, Completion, Request, SamplingConfig, plan_per_request

PAIR_FIELDS = ("task_id", "code_output_1", "code_output_2")


@dataclasses.dataclass(frozen=True)
class PairResponse:
    """One Stage-1 answer: two implementations of a task. ``error`` set: malformed or missing."""

    task_id: int
    code_output_1: str | None
    code_output_2: str | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_pair(text_or_obj, *, task_id: int | None = None, where: str = "") -> PairResponse:
    """Validate one answer in the DPOPair schema; any defect becomes a PairResponse with ``error``."""
    prefix = f"{where}: " if where else ""
    obj = text_or_obj
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            return PairResponse(task_id, None, None, f"{prefix}malformed JSON ({exc.msg} at char {exc.pos})")
    if not isinstance(obj, dict):
        return PairResponse(task_id, None, None, f"{prefix}expected a JSON object, got {type(obj).__name__}")
    answered = obj.get("task_id")
    try:
        answered = int(answered) if answered is not None else None
    except (TypeError, ValueError):
        return PairResponse(task_id, None, None, f"{prefix}task_id {answered!r} is not an integer")
    tid = task_id if task_id is not None else answered
    missing = [f for f in PAIR_FIELDS if f not in obj]
    if missing:
        return PairResponse(tid, obj.get("code_output_1"), obj.get("code_output_2"),
                            f"{prefix}missing field(s) {', '.join(missing)}")
    bad = [f for f in PAIR_FIELDS[1:] if not isinstance(obj[f], str) or not obj[f].strip()]
    if bad:
        return PairResponse(tid, None, None, f"{prefix}empty or non-string {', '.join(bad)}")
    if task_id is not None and answered != task_id:
        return PairResponse(tid, obj["code_output_1"], obj["code_output_2"],
                            f"{prefix}answer names task_id {answered}, request was {task_id}")
    return PairResponse(tid, obj["code_output_1"], obj["code_output_2"])


def replay_pairs(path) -> dict[int, PairResponse]:
    """The paper's DPOPair JSON lines as ``{task_id: PairResponse}``; a bad line becomes an error naming it."""
    path = Path(path)
    out: dict[int, PairResponse] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path.name}: line {number}"
            pair = parse_pair(line, where=where)
            if pair.task_id is None:
                key = -number  # unknown task: keep the failure, keyed by its (negated) line number
                pair = dataclasses.replace(pair, task_id=key)
            out[pair.task_id] = pair
    return out


def load_outputs(path) -> dict:
    """``{(task_id, round, sample): text}`` from a checkpoint JSONL, or ``{(task_id, None, i): text}`` from paper format."""
    from shared_utils.generation.checkpoint import read_checkpoint
    from shared_utils.generation.paper_format import read_paper_format

    path = Path(path)
    if path.suffix == ".jsonl":
        return {c.key: c.text for c in read_checkpoint(path)}
    return {(task_id, None, i): text for task_id, texts in read_paper_format(path).items()
            for i, text in enumerate(texts)}


class ReplayBackend:
    """``generate(backend="replay", source=PATH)``: answers from an earlier run, no model."""

    name = "replay"

    def __init__(self, model=None, adapter=None, *, source=None, **_ignored):
        source = source or model
        if source is None:
            raise ValueError("the replay backend needs source= (a paper-format .json or a checkpoint .jsonl)")
        self.source = Path(source)
        self.outputs = load_outputs(self.source)
        self.by_str = {(str(k[0]), k[1], k[2]): v for k, v in self.outputs.items()}

    def default_batch_size(self, requests, sampling) -> int:
        return 64

    def plan(self, requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
        return plan_per_request(requests, sampling, batch_size)

    def describe(self, sampling) -> dict:
        return {"source": str(self.source)}

    def run_batch(self, requests, batch: Batch, sampling: SamplingConfig, on_sample=None) -> list[Completion]:
        out = []
        for unit in batch.units:
            request = requests[unit.request]
            text = None
            for key in ((request.task_id, request.round, unit.sample), (request.task_id, None, unit.sample)):
                text = self.outputs.get(key, self.by_str.get((str(key[0]), key[1], key[2])))
                if text is not None:
                    break
            if text is None:
                raise KeyError(f"{self.source}: no output for task_id={request.task_id!r} round={request.round} "
                               f"sample={unit.sample}")
            out.append(Completion(request.task_id, request.round, unit.sample, text, 0))
            if on_sample:
                on_sample(0)
        return out
