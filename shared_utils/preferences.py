"""Preference pairs: Stage-1 global pairs from a strong generator and Stage-2 local pairs from
the model's own passing samples, both labelled by a code-quality key (MI by default).

Everything returns plain rows (lists of dicts); ``save_pairs`` writes them as a
``datasets`` folder in TRL's conversational preference format.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable


from shared_utils import data, files, prompts
from shared_utils.extraction import extract_code, wrap_code
from shared_utils.maintainability import mi_score, score

COMPONENTS = ("mi", "halstead_volume", "cyclomatic_complexity", "sloc", "comment_lines")

Key = Callable[[str], float]


@dataclasses.dataclass
class PairCounts:
    requested: int = 0
    answered: int = 0
    malformed: int = 0
    first_passes: int = 0
    second_passes: int = 0
    both: int = 0


def normalise(code: str) -> str:
    """Whitespace-insensitive form used to tell two solutions apart."""
    return " ".join(code.split())


def run_checks(problems: dict, candidates: list[tuple], *, timeout: float = 5.0, progress: bool = True,
               protocol=None) -> list[bool]:
    """Sandbox verdicts for ``(task_id, code)`` candidates, in order, run as ``protocol`` runs them."""
    from shared_utils.protocol import check_candidates

    return [outcome.passed
            for outcome in check_candidates(problems, candidates, protocol, timeout=timeout, progress=progress)]


def pair_code(code: str, protocol) -> str:
    """A generator's implementation as Stage 1b runs it and Stage 1c wraps it.

    ``raw`` (the paper): exactly as returned, fences and trailing newlines included;
    ``extracted``: the ``paper`` extraction (fence markers deleted, ends stripped).
    """
    return code if protocol.pair_code == "raw" else extract_code(code, "paper")


def check_pair_responses(problems: list[dict], responses: dict, *, generator: str, timeout: float = 5.0,
                         progress: bool = True, protocol=None) -> tuple[list[dict], PairCounts]:
    """Keep the tasks whose two implementations both pass their asserts (Stage 1b).

    ``responses`` maps task_id to an object with ``code_output_1``, ``code_output_2`` and
    ``error`` (``generation.PairResponse``). Tasks without a problem are an error, not skipped.
    """
    from shared_utils.protocol import resolve

    protocol = resolve(protocol)
    by_id = {problem["task_id"]: problem for problem in problems}
    unknown = sorted(set(responses) - set(by_id), key=str)
    if unknown:
        raise ValueError(f"responses for task_id(s) not in the problem set: {unknown[:10]}")
    counts = PairCounts(requested=len(problems))
    answered = [r for r in responses.values() if not r.error and r.code_output_1 and r.code_output_2]
    counts.answered = len(responses)
    counts.malformed = len(responses) - len(answered)
    candidates = [(r.task_id, pair_code(code, protocol)) for r in answered for code in (r.code_output_1, r.code_output_2)]
    verdicts = run_checks(by_id, candidates, timeout=timeout, progress=progress, protocol=protocol)
    rows = []
    for index, response in enumerate(answered):
        first, second = verdicts[2 * index], verdicts[2 * index + 1]
        counts.first_passes += first
        counts.second_passes += second
        if first and second:
            counts.both += 1
            problem = by_id[response.task_id]
            rows.append({**problem, "code_output_1": candidates[2 * index][1],
                         "code_output_2": candidates[2 * index + 1][1], "generator": generator})
    return rows, counts


def pairs_from_samples(problems: list[dict], samples: dict, *, generator: str, extract: str = "fenced",
                       timeout: float = 5.0, progress: bool = True, protocol=None) -> tuple[list[dict], PairCounts]:
    """Stage 1b for a generator that cannot follow the two-implementation JSON schema.

    It sampled several independent answers per task; the first two *different* passing
    ones (after whitespace normalisation) become the pair.
    """
    by_id = {problem["task_id"]: problem for problem in problems}
    candidates = [(task_id, extract_code(text, extract)) for task_id, texts in samples.items() for text in texts]
    verdicts = run_checks(by_id, candidates, timeout=timeout, progress=progress, protocol=protocol)
    passing: dict = {}
    for (task_id, code), ok in zip(candidates, verdicts):
        distinct = passing.setdefault(task_id, {})
        if ok and normalise(code) not in distinct:
            distinct[normalise(code)] = code
    counts = PairCounts(requested=len(problems), answered=len(samples))
    rows = []
    for task_id, distinct in passing.items():
        codes = list(distinct.values())
        counts.first_passes += len(codes) >= 1
        counts.second_passes += len(codes) >= 2
        if len(codes) >= 2:
            counts.both += 1
            rows.append({**by_id[task_id], "code_output_1": codes[0], "code_output_2": codes[1], "generator": generator})
    return rows, counts


def preference_row(problem: dict, chosen: str, rejected: str, keys: tuple[float, float],
                   pair_format: str = "chat", answers: tuple[str, str] | None = None) -> dict:
    """One preference example plus the scores that explain it.

    ``pair_format="chat"``: TRL's conversational format (the answers as assistant messages);
    ``"authors"``: the authors' rows, the prompt's contents as lists of text parts and the
    answers as plain strings (what TRL 0.23 then re-split, see ``training.formats``).
    ``keys``: the key values of ``chosen`` and ``rejected``, as the caller ranked them (the key may
    have been computed on other text than the code). ``answers``: the chosen and rejected texts
    trained on, when they are not the code in a python fence (the authors' local pairs stored the
    answers as generated).
    """
    if pair_format not in ("chat", "authors"):
        raise ValueError(f"pair_format must be 'chat' or 'authors', not {pair_format!r}")
    chat = pair_format == "chat"
    chosen_text, rejected_text = answers or (wrap_code(chosen), wrap_code(rejected))
    row = {
        "task_id": problem["task_id"],
        "prompt": prompts.messages(problem["text"]) if chat else [
            {"role": message["role"], "content": [{"type": "text", "text": message["content"]}]}
            for message in prompts.messages(problem["text"])],
        "chosen": [{"role": "assistant", "content": chosen_text}] if chat else chosen_text,
        "rejected": [{"role": "assistant", "content": rejected_text}] if chat else rejected_text,
        "chosen_code": chosen,
        "rejected_code": rejected,
        "key_chosen": keys[0],
        "key_rejected": keys[1],
    }
    for side, code in (("chosen", chosen), ("rejected", rejected)):
        components = score(code).as_dict()
        row.update({f"{side}_{name}": float(components[name]) for name in COMPONENTS})
    row["mi_gap"] = row["chosen_mi"] - row["rejected_mi"]
    return row


def label_global(pairs: list[dict], key: Key = mi_score, pair_format: str = "chat") -> list[dict]:
    """Stage 1c: the implementation with the higher key is chosen; ties keep the first, as the paper."""
    rows = []
    for pair in pairs:
        ranked = [(code, key(code)) for code in (pair["code_output_1"], pair["code_output_2"])]
        if not ranked[0][1] >= ranked[1][1]:  # a tie keeps the first
            ranked.reverse()
        (chosen, chosen_key), (rejected, rejected_key) = ranked
        rows.append(preference_row(pair, chosen, rejected, keys=(chosen_key, rejected_key),
                                   pair_format=pair_format))
    return rows


def label_local(problems: list[dict], passing: dict, *, key: Key = mi_score, min_gap: float = 0.0,
                pairing: str = "distinct", scored: dict | None = None, answers: dict | None = None,
                pair_format: str = "chat") -> list[dict]:
    """Stage 2b: best-key passing sample against worst-key passing sample, per task.

    ``pairing="distinct"``: samples whose code is the same once whitespace runs are collapsed count
    as identical (``a+b`` and ``a + b`` stay two), and tasks without two distinct passing samples, or
    whose gap is below ``min_gap`` (0 keeps an equal-key pair), are dropped.
    ``pairing="argmax"`` (the paper): the first sample with the highest key against the first
    with the lowest, over all passing samples; dropped only when the two are the same sample,
    which happens exactly when every key is equal. Under either, two samples that differ only in
    comments are a pair when their keys differ (radon's MI rewards comment lines).
    ``scored`` maps task_id to the texts the key is computed on, aligned with ``passing``
    (the paper's Stage 2a scored its answers with the fences' backticks removed); ``answers``
    to the texts stored as chosen/rejected (default: the code in a python fence).
    """
    if pairing not in ("distinct", "argmax"):
        raise ValueError(f"pairing must be 'distinct' or 'argmax', not {pairing!r}")
    by_id = {problem["task_id"]: problem for problem in problems}
    rows = []
    for task_id, codes in passing.items():
        samples = list(zip(codes, (scored or passing)[task_id], answers[task_id] if answers else codes))
        if pairing == "distinct":  # a later whitespace twin takes its first one's place
            samples = list({normalise(sample[0]): sample for sample in samples}.values())
        pair = _pair(samples, key, min_gap if pairing == "distinct" else None)
        if pair is not None:
            (chosen, _, chosen_answer), (rejected, _, rejected_answer), keys = pair
            rows.append(preference_row(by_id[task_id], chosen, rejected, keys=keys, pair_format=pair_format,
                                       answers=(chosen_answer, rejected_answer) if answers else None))
    return rows


def _pair(samples: list[tuple], key: Key, min_gap: float | None) -> tuple | None:
    """The highest-key sample against the lowest (``(code, scored text, answer)`` each, and their keys).

    ``min_gap=None`` is the paper's ``argmax``/``argmin``: first occurrence on ties, None only when they
    coincide; otherwise the first of the best against the last of the worst, None below ``min_gap``.
    """
    import numpy as np  # here, not at the top: the CLI imports this module for every verb

    keys = [key(text) for _, text, _ in samples]
    if min_gap is None:
        if not samples:
            return None
        best, worst = int(np.argmax(keys)), int(np.argmin(keys))
        if best == worst:
            return None
    else:
        if len(samples) < 2:
            return None
        order = sorted(range(len(samples)), key=lambda i: -keys[i])
        best, worst = order[0], order[-1]
        if math.isnan(keys[best] - keys[worst]) or keys[best] - keys[worst] < min_gap:
            return None
    return samples[best], samples[worst], (keys[best], keys[worst])


def save_pairs(rows: list[dict], out: str | Path, **provenance) -> Path:
    """Save pair rows as a ``datasets`` folder (atomically) with provenance and a content hash."""
    if not rows:
        raise ValueError(f"{out}: no pairs to save")
    return data.save_dataset(rows, Path(out), content_hash=files.content_hash(rows), **provenance)


def load_rows(path: str | Path) -> list[dict]:
    from datasets import load_from_disk

    return list(load_from_disk(str(path)))


def summary_frame(rows: list[dict]):
    """Chosen vs rejected MI components side by side, for tables and plots."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    return pd.DataFrame({
        name: {"chosen": frame[f"chosen_{name}"].mean(), "rejected": frame[f"rejected_{name}"].mean()}
        for name in COMPONENTS
    }).T.assign(difference=lambda f: f["chosen"] - f["rejected"])


def write_counts(counts: PairCounts, path: str | Path) -> Path:
    return files.write_json(path, dataclasses.asdict(counts))
