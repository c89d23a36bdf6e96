"""The data types every backend shares, deterministic batch plans and seeds, the code-end stop rule."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Iterable

Key = tuple  # (task_id, round, sample)
RECIPE_KEYS = ("temperature", "top_p", "top_k", "max_new_tokens")  # with ``samples``: a sampling stage's recipe keys


@dataclasses.dataclass
class SamplingConfig:
    """How to sample. Defaults are the paper's: 10 samples, temperature 0.6, top_p 0.9, 1024 new tokens.

    The pipeline's stages take theirs from their recipe section (``from_recipe``); these defaults
    serve direct calls. ``stop_at_code_end`` stops a sample once its first fenced code block has
    closed (the corrected protocol's Stage 2a, local global pairs); ``False`` runs to EOS or the
    limit, as the authors' generation did (evaluation; Stage 2a under ``protocol.stop_at_code_end``).
    ``top_k=None`` keeps the model's own ``generation_config.top_k``, as the paper's
    ``model.generate`` call did; 0 disables it.
    """

    n: int = 10
    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 1024
    seed: int = 0
    stop_at_code_end: bool = True
    batch_size: int | None = None
    top_k: int | None = None

    @classmethod
    def from_recipe(cls, section: dict, **fields) -> "SamplingConfig":
        """A stage's sampling from its recipe section (``samples``, ``temperature``, ``top_p``, ``top_k``,
        ``max_new_tokens``); ``fields`` set the rest (seed, code-end stop, batch size)."""
        return cls(n=section["samples"], **{key: section[key] for key in RECIPE_KEYS}, **fields)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The fields that change what is generated (batch_size only changes speed... and float noise)."""
        return {k: v for k, v in self.as_dict().items() if k != "batch_size"}


@dataclasses.dataclass(frozen=True)
class LocalEngine:
    """How the local backend samples on this machine: a sampling stage's recipe key ``local_engine``.

    These buy speed on a CPU (continuous batching with many rows in flight, bfloat16 weights, the
    adapter folded into them) at a price: for a fixed seed the texts are not the default loop's
    (continuous batching draws per sample; bfloat16 and a merged adapter round differently), so every
    option is recorded with the samples and a checkpoint is never resumed under others. The paper's
    recipe leaves them all off. vLLM (GPU) has its own batching and ignores them.
    """

    batch_size: int | None = None  # rows per batch, or in flight with refill (None: the backend's default)
    refill: bool = False  # continuous batching: a finished row takes the next pending sample at once
    merge_adapter: bool = False  # sample from a copy with the LoRA weights folded in
    dtype: str | None = None  # the weights' dtype for sampling (None: float32 on a CPU, the model's on a GPU)

    @classmethod
    def from_recipe(cls, section: dict, where: str) -> "LocalEngine":
        """``section["local_engine"]`` (absent or null: the defaults); an unknown key is refused naming ``where``."""
        values = section.get("local_engine") or {}
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in known]
        if unknown:
            raise ValueError(f"{where}.local_engine: unknown key(s) {', '.join(unknown)}; "
                             f"local_engine takes {', '.join(known)}")
        if values.get("dtype") not in (None, "float32", "bfloat16", "float16"):
            raise ValueError(f"{where}.local_engine.dtype: {values['dtype']!r} is not float32, bfloat16 or float16")
        return cls(**values)

    def identity(self) -> dict:
        """What a stage's identity records: nothing while every option is off (so artifacts made before these
        options existed keep their identity), else every option."""
        return {} if self == LocalEngine() else {"local_engine": dataclasses.asdict(self)}

    def generate_options(self) -> dict:
        """The options ``generate`` passes to the local backend (``batch_size`` goes into the sampling)."""
        return {"refill": self.refill, "merge_adapter": self.merge_adapter}


@dataclasses.dataclass(frozen=True)
class Request:
    task_id: int | str
    messages: list[dict]
    round: int = 0
    n: int | None = None  # None -> sampling.n

    def samples(self, sampling: SamplingConfig) -> int:
        return sampling.n if self.n is None else self.n


@dataclasses.dataclass(frozen=True)
class Completion:
    task_id: int | str
    round: int
    sample: int
    text: str
    tokens: int = 0

    @property
    def key(self) -> Key:
        return (self.task_id, self.round, self.sample)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One sample to produce: request ``request`` (index into the request list), sample number ``sample``."""

    request: int
    sample: int


@dataclasses.dataclass(frozen=True)
class Batch:
    units: tuple[Unit, ...]
    seed: int

    def keys(self, requests: list[Request]) -> list[Key]:
        return [unit_key(requests, u) for u in self.units]


def unit_key(requests: list[Request], unit: Unit) -> Key:
    request = requests[unit.request]
    return (request.task_id, request.round, unit.sample)


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed from the user's seed and anything identifying a batch, stable across runs and machines."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def check_unique(requests: list[Request]) -> None:
    seen = set()
    for request in requests:
        key = (request.task_id, request.round)
        if key in seen:
            raise ValueError(f"duplicate request for task_id={request.task_id!r} round={request.round}")
        seen.add(key)


def plan_batches(requests: list[Request], sampling: SamplingConfig, batch_size: int) -> list[Batch]:
    """Split all samples into batches of at most ``batch_size`` sequences, in request then sample order.

    The plan depends only on the requests, ``n`` and ``batch_size``; each batch's seed only on the
    user's seed and its first key. A resumed run therefore reruns a half-finished batch exactly.
    """
    units = [Unit(i, s) for i, request in enumerate(requests) for s in range(request.samples(sampling))]
    batches = []
    for start in range(0, len(units), max(1, batch_size)):
        chunk = tuple(units[start:start + max(1, batch_size)])
        batches.append(Batch(chunk, derive_seed(sampling.seed, unit_key(requests, chunk[0]))))
    return batches


def plan_per_request(requests: list[Request], sampling: SamplingConfig, group: int = 1) -> list[Batch]:
    """One batch per ``group`` requests (remote backends: a request carries its own ``n``)."""
    batches = []
    for start in range(0, len(requests), max(1, group)):
        units = tuple(Unit(i, s) for i in range(start, min(len(requests), start + group))
                      for s in range(requests[i].samples(sampling)))
        if units:
            batches.append(Batch(units, derive_seed(sampling.seed, unit_key(requests, units[0]))))
    return batches


def effective_top_k(sampling: SamplingConfig, generation_config) -> int:
    """The top-k every backend samples with: ``sampling.top_k``, else the model's ``generation_config.top_k``
    (64 for Gemma 3, 20 for Qwen3-2507), as ``model.generate`` would; 0 is no top-k."""
    if sampling.top_k is not None:
        return int(sampling.top_k)
    return int(getattr(generation_config, "top_k", None) or 0)


# ---------------------------------------------------------------- the code-end stop rule
_CLOSED_BLOCK = re.compile(r"```[^\n`]*\n.*?```", re.DOTALL)


def code_end(text: str) -> int | None:
    """Index just past the closing fence of the first fenced code block, or None while it is open."""
    match = _CLOSED_BLOCK.search(text)
    return match.end() if match else None


def truncate_at_code_end(text: str) -> str:
    end = code_end(text)
    return text if end is None else text[:end]


def ordered(completions: Iterable[Completion], requests: list[Request] | None = None) -> list[Completion]:
    """Completions in request order (or first-seen task order) then round then sample order."""
    completions = list(completions)
    if requests is not None:
        rank = {(r.task_id, r.round): i for i, r in enumerate(requests)}
    else:
        rank = {}
        for c in completions:
            rank.setdefault((c.task_id, c.round), len(rank))
    return sorted(completions, key=lambda c: (rank.get((c.task_id, c.round), len(rank)), c.sample))
