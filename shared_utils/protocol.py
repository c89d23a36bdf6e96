"""The paper's protocol or ours: one name for a set of switches, each available on its own.

``paper`` reproduces what the authors' code did, byte for byte where it produced data;
``corrected`` (the default) is what this repository does. Every difference is one field of
``Protocol``, so an ablation can mix them (``resolve("corrected", training_format="as_published")``).
The README's "The paper's protocol, switch by switch" table lists each with what it changes.
"""

from __future__ import annotations

import dataclasses

NAMES = ("corrected", "paper")
DEFAULT = "corrected"


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    signature: str  # "paper": the authors' regex; "corrected": also `def f (x)`, no trailing comment
    pair_prompt: str  # Stage 1a: "paper": Task_ID prompt, answers matched by the id they name; "corrected"
    pair_code: str  # Stage 1b/c: "raw": the generator's code as returned; "extracted": fences and blank ends removed
    pair_format: str  # stored pairs: "authors": prompt content as text parts, answers as strings; "chat": messages
    feedback: str  # Stage 2a rounds 2+: "paper": last failing raw answer of the latest round; "corrected"
    selfgen_extract: str  # Stage 2a pass/fail: an ``extraction`` mode
    selfgen_mi: str  # Stage 2a MI: "paper": backticks removed, "python" left in; "code": the extracted code
    stop_at_code_end: bool  # Stage 2a sampling: stop once the first code block closes; False: EOS or the limit
    generation_dtype: str  # Stage 2a weights: "float32" (the authors'); "model": the model's (bf16 on GPUs)
    local_answer: str  # Stage 2b chosen/rejected: "raw": the answer as generated, stripped; "fenced": the code re-fenced
    local_pairing: str  # Stage 2b: "argmax": first max vs first min MI; "distinct": distinct samples only
    namespace: str  # candidate globals: "exec": exec(code, {}) (__name__ is "builtins"); "main": a real __main__
    run_setup: bool  # MBPP's test_setup_code before the asserts
    training_dtype: str  # "float32": weights loaded in fp32 under bf16 autocast; "recipe": the recipe's dtype
    training_format: str  # "as_published": what TRL 0.23 made of the authors' rows; "conversational"

    def switches(self) -> dict:
        """Every switch by name, for provenance files and cards."""
        return dataclasses.asdict(self)


PROTOCOLS = {
    "corrected": Protocol(
        name="corrected", signature="corrected", pair_prompt="corrected", pair_code="extracted", pair_format="chat",
        feedback="corrected", selfgen_extract="fenced", selfgen_mi="code", stop_at_code_end=True,
        generation_dtype="model", local_answer="fenced", local_pairing="distinct", namespace="main", run_setup=True,
        training_dtype="recipe", training_format="conversational"),
    "paper": Protocol(
        name="paper", signature="paper", pair_prompt="paper", pair_code="raw", pair_format="authors",
        feedback="paper", selfgen_extract="paper", selfgen_mi="paper", stop_at_code_end=False,
        generation_dtype="float32", local_answer="raw", local_pairing="argmax", namespace="exec", run_setup=False,
        training_dtype="float32", training_format="as_published"),
}
CHOICES = {field.name: sorted({getattr(p, field.name) for p in PROTOCOLS.values()})
           for field in dataclasses.fields(Protocol) if field.name != "name"}


def resolve(protocol: "str | Protocol | dict | None" = None, **switches) -> Protocol:
    """A protocol by name (or as given, or a recipe's ``{name, switches}`` section), with individual
    switches overridden; the name says so."""
    if isinstance(protocol, dict):
        return resolve(protocol.get("name"), **{**(protocol.get("switches") or {}), **switches})
    if isinstance(protocol, Protocol):
        base = protocol
    else:
        name = protocol or DEFAULT
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}; expected one of {', '.join(NAMES)}")
        base = PROTOCOLS[name]
    switches = {key: value for key, value in switches.items() if value is not None}
    for key, value in switches.items():
        if key not in CHOICES:
            raise ValueError(f"unknown protocol switch {key!r}; expected one of {', '.join(CHOICES)}")
        if value not in CHOICES[key]:
            raise ValueError(f"protocol switch {key}={value!r}; expected one of {CHOICES[key]}")
    changed = {key: value for key, value in switches.items() if getattr(base, key) != value}
    if not changed:
        return base
    label = base.name.split("+")[0] + "+" + ",".join(f"{key}={value}" for key, value in sorted(changed.items()))
    return dataclasses.replace(base, name=label, **changed)


def recorded(switches: dict) -> Protocol:
    """The protocol an artifact's provenance records (``Protocol.switches``). A switch added after the
    artifact was made is missing from its record: it takes the value of the protocol the record names."""
    base = PROTOCOLS.get(str(switches.get("name", "")).split("+")[0])
    if base is None:
        raise ValueError(f"recorded protocol {switches.get('name')!r}; expected one of {', '.join(NAMES)}")
    unknown = set(switches) - {field.name for field in dataclasses.fields(Protocol)}
    if unknown:
        raise ValueError(f"recorded protocol has unknown switch(es) {', '.join(sorted(unknown))}")
    return dataclasses.replace(base, **switches)


def setup_code(problem: dict, protocol: Protocol) -> str:
    """The set-up code a candidate of ``problem`` runs with: MBPP's only when ``protocol.run_setup``.

    HumanEval's test-module prelude (``setup_is_test``) is part of its test and always runs.
    """
    return problem["test_setup_code"] if protocol.run_setup or problem.get("setup_is_test") else ""


def check_candidates(problems: dict, candidates: list[tuple], protocol=None, **check_options) -> list:
    """Sandbox outcomes of ``(task_id, code)`` candidates, in order, run as ``protocol`` runs them: its
    globals (``namespace``) and its set-up code (``setup_code``); ``check_options`` go to ``check_many``."""
    from shared_utils.sandbox import check_many

    protocol = resolve(protocol)
    jobs = [(code, problems[task_id]["test_list"], setup_code(problems[task_id], protocol)) for task_id, code in candidates]
    return check_many(jobs, namespace=protocol.namespace, **check_options)


def parse_overrides(items: "list[str] | None") -> dict:
    """``["training_format=as_published", "run_setup=false"]`` from the CLI's ``--switch`` into keyword arguments."""
    switches = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--switch {item!r}: expected NAME=VALUE (names: {', '.join(CHOICES)})")
        key = key.strip().replace("-", "_")
        value = value.strip()
        boolean = isinstance(getattr(PROTOCOLS[DEFAULT], key, None), bool)
        switches[key] = {"true": True, "false": False}.get(value.lower(), value) if boolean else value
    return switches
