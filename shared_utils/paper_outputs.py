"""The paper's own outputs, re-scored: the authors' 50 published completion files under ``paper`` and ``corrected``.

Every file is scored as ``scoring.SCORINGS`` says (the paper's extraction; the paper's or the
corrected execution), and reduced to what the paper reports per run (solved tasks = pass@10 of 10
samples, average MI of solved tasks), which must equal the authors' own per-run numbers
(``authors_per_run_table.csv``). On top: pass@1, paired comparisons between the variants of each
model (``statistics``), and the tasks whose verdict changes from ``paper`` to ``corrected``.

Identical candidates recur across runs and variants (250,000 candidates, about 59,000 distinct
(task, program) pairs), so by default each distinct program runs once per task and protocol and its
verdict is reused for every copy (``reuse=False`` runs every candidate). A candidate whose verdict
depends on chance (timing, randomness) would get one verdict for all its copies instead of one
each; the results record which way they were made.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd

from shared_utils import files, inputs, paths, scoring, statistics
from shared_utils.layout import BASE, FURTHER, STAGE1
from shared_utils.readme_sections import difference_cell, replace_section

PROTOCOLS = ("paper", "corrected")
RESULTS_DIR = paths.REPO_ROOT / "results" / "paper-outputs"
EVALUATION_NOTEBOOK = paths.EVALUATION_DIR / "paper_outputs.ipynb"
MODELS = {"gemma_1b": "gemma3-1b", "gemma_4b": "gemma3-4b", "gemma_12b": "gemma3-12b", "qwen3_4b": "qwen3-4b"}
VARIANTS = {"baseline": BASE, "dpo_250": STAGE1, "dpo_250_further_250": FURTHER}
PAIRS = ((BASE, STAGE1), (STAGE1, FURTHER), (BASE, FURTHER))
KS = (1, 10)
FILE_NAME = re.compile(r"(?P<model>.+?)_(?P<variant>baseline|dpo_250_further_250|dpo_250)_model_output_run_(?P<run>\d+)"
                       r"\.json(?:\.xz)?$")
AUTHORS_TABLE = "authors_per_run_table.csv"
WORKERS_PER_CORE = 4  # most of the time goes to candidates that sleep to their timeout, not to the CPU


def describe(name: str) -> dict:
    """Model, variant and run of a published file, from its name."""
    match = FILE_NAME.match(name)
    if match is None or match["model"] not in MODELS:
        raise ValueError(f"{name}: not a published completion file (<model>_<variant>_model_output_run_<r>.json)")
    return {"file": name.removesuffix(".xz"), "model": MODELS[match["model"]], "variant": VARIANTS[match["variant"]],
            "run": int(match["run"])}


def completion_files(folder: Path) -> list[Path]:
    """The published completion files in ``folder``, in name order."""
    found = sorted(path for path in Path(folder).iterdir() if FILE_NAME.match(path.name))
    if not found:
        raise FileNotFoundError(f"{folder}: no published completion files (<model>_<variant>_model_output_run_<r>.json.xz)")
    return found


def candidates(paths_: list[Path]) -> pd.DataFrame:
    """One row per sample of every file: file, model, variant, run, task_id, sample, the extracted code."""
    from shared_utils.extraction import extract_code
    from shared_utils.generation import read_paper_format

    rows = []
    for path in paths_:
        about = describe(path.name)
        for task_id, texts in read_paper_format(path).items():
            rows.extend({**about, "task_id": task_id, "sample": index, "code": extract_code(text, "paper")}
                        for index, text in enumerate(texts))
    return pd.DataFrame(rows)


def score(frame: pd.DataFrame, problems: list[dict], *, protocols=PROTOCOLS, reuse: bool = True,
          workers: int | None = None, timeout: float = 5.0, progress: bool = True) -> pd.DataFrame:
    """``frame`` with ``mi`` and, per protocol, ``passed_<protocol>`` and ``status_<protocol>``.

    With ``reuse`` each distinct (task, program) runs once per protocol and every copy gets its
    verdict; without, every row runs. MI is radon's, computed once per distinct program.
    """
    from shared_utils.maintainability import mi_score
    from shared_utils.protocol import check_candidates
    from shared_utils.sandbox.api import isolation_mode, usable_cores

    by_id = {problem["task_id"]: problem for problem in problems}
    unknown = sorted(set(frame["task_id"]) - set(by_id))
    if unknown:
        raise ValueError(f"completions for task_id(s) not in the problem set: {unknown[:10]}")
    keys = frame[["task_id", "code"]]
    jobs = keys.drop_duplicates() if reuse else keys
    workers = workers or WORKERS_PER_CORE * usable_cores()
    scored = jobs.copy()
    for name in protocols:
        outcomes = check_candidates(by_id, list(jobs.itertuples(index=False, name=None)),
                                    scoring.SCORINGS[name].protocol, timeout=timeout, workers=workers, progress=progress)
        scored[f"passed_{name}"] = [outcome.passed for outcome in outcomes]
        scored[f"status_{name}"] = [outcome.status if outcome.passed else outcome.error for outcome in outcomes]
    passing = scored[[f"passed_{name}" for name in protocols]].any(axis=1)
    mi = {code: mi_score(code) for code in scored.loc[passing, "code"].unique()}
    scored["mi"] = scored["code"].map(mi)
    merged = frame.join(scored.set_index(["task_id", "code"]), on=["task_id", "code"]) if reuse else \
        pd.concat([frame, scored.drop(columns=["task_id", "code"]).set_index(frame.index)], axis=1)
    return merged.assign(sandbox=isolation_mode())


def per_task(samples: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """One row per (file, task): n, c and the mean MI of passing samples under ``protocol``."""
    passed = samples[f"passed_{protocol}"]
    grouped = samples.assign(passed=passed, mi_passing=samples["mi"].where(passed))
    return (grouped.groupby(["file", "model", "variant", "run", "task_id"], sort=False)
            .agg(n=("passed", "size"), c=("passed", "sum"), mi=("mi_passing", "mean")).reset_index())


def per_run(samples: pd.DataFrame) -> pd.DataFrame:
    """Per file and protocol: solved tasks, average MI of solved tasks, pass@1 and pass@10."""
    rows = []
    for protocol in PROTOCOLS:
        tasks = per_task(samples, protocol)
        for (file, model, variant, run), part in tasks.groupby(["file", "model", "variant", "run"], sort=False):
            cube = statistics.Cube.of(part.assign(seed=0), list(part["task_id"]), file)
            rows.append({"file": file, "model": model, "variant": variant, "run": run, "protocol": protocol,
                         "solved": int((part["c"] > 0).sum()), "avg_mi": cube.estimate("avg_mi"),
                         **{metric: cube.estimate(metric) for metric in statistics.metric_names(KS)[:-1]}})
    return pd.DataFrame(rows)


def authors_runs(folder: Path) -> pd.DataFrame:
    """The authors' per-run table (every run, the unpublished qwen3-4b ones included), described by file name."""
    table = pd.read_csv(Path(folder) / AUTHORS_TABLE)
    about = pd.DataFrame([describe(name) for name in table["file"]])
    return about.assign(authors_solved=table["solved"].astype(int), authors_avg_mi=table["avg_mi"])


def against_authors(runs: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    """Every per-run row beside the authors' numbers: ``matches`` when solved is equal and MI equal at 2 decimals
    (the authors' ran under ``paper``: the ``corrected`` rows show how far the corrected protocol moves them)."""
    joined = runs.merge(authors[["file", "authors_solved", "authors_avg_mi"]], on="file", how="left")
    return joined.assign(matches=(joined["solved"] == joined["authors_solved"])
                         & ((joined["avg_mi"] - joined["authors_avg_mi"]).abs() <= 0.005 + 1e-9))


def paper_table(runs: pd.DataFrame, authors: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over the five runs, per model, variant and protocol; the authors' runs where no raw files exist."""
    metrics = ["solved", "avg_mi", *statistics.metric_names(KS)[:-1]]
    ours = runs.groupby(["model", "variant", "protocol"], sort=False)[metrics].agg(["mean", "std"])
    ours.columns = [f"{metric}_{stat}" for metric, stat in ours.columns]
    ours = ours.reset_index().assign(source="re-scored")
    scored = set(zip(runs["model"], runs["variant"]))
    missing = authors[[(m, v) not in scored for m, v in zip(authors["model"], authors["variant"])]]
    published = (missing.groupby(["model", "variant"], sort=False)[["authors_solved", "authors_avg_mi"]]
                 .agg(["mean", "std"]))
    published.columns = [f"{metric.removeprefix('authors_')}_{stat}" for metric, stat in published.columns]
    published = published.reset_index().assign(protocol="paper", source="published means only")
    return _ordered(pd.concat([ours, published], ignore_index=True))


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by protocol (``paper`` first), model (as ``MODELS``) and variant (base, -dpo, -dpo-further)."""
    rank = (table["model"].map({model: index for index, model in enumerate(MODELS.values())}) * 10
            + table["variant"].map({BASE: 0, STAGE1: 1, FURTHER: 2}))
    if "protocol" in table:
        rank += table["protocol"].map({name: index for index, name in enumerate(PROTOCOLS)}) * 100
    return table.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)


def paired(samples: pd.DataFrame, *, n_boot: int = statistics.N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Per protocol, one Holm family: every model's base -> -dpo, -dpo -> -dpo-further, base -> -dpo-further."""
    tables = []
    for protocol in PROTOCOLS:
        tasks = per_task(samples, protocol).assign(seed=0)
        rows = []
        for model in MODELS.values():
            variants = {variant: rows_ for variant, rows_ in tasks[tasks["model"] == model].groupby("variant")}
            pairs = [(a, b) for a, b in PAIRS if a in variants and b in variants]
            rows += [{"protocol": protocol, "model": model, "from": a, "to": b, **row}
                     for a, b in pairs
                     for row in statistics.compare(variants[a], variants[b], statistics.metric_names(KS),
                                                   n_boot=n_boot, seed=seed, names=(a, b))]
        tables.append(statistics.adjust(pd.DataFrame(rows)))
    return pd.concat(tables, ignore_index=True)


def disagreements(samples: pd.DataFrame) -> pd.DataFrame:
    """Per model and variant: candidates and tasks whose verdict changes from ``paper`` to ``corrected``, and why."""
    changed = samples[samples["passed_paper"] != samples["passed_corrected"]]
    solved = {protocol: per_task(samples, protocol).set_index(["file", "task_id"])["c"] > 0 for protocol in PROTOCOLS}
    flips = (solved["paper"] != solved["corrected"]).rename("flipped").reset_index()
    flips = flips[flips["flipped"]].merge(samples[["file", "model", "variant"]].drop_duplicates(), on="file")
    rows = []
    for (model, variant), part in samples.groupby(["model", "variant"], sort=False):
        mine = changed[(changed["model"] == model) & (changed["variant"] == variant)]
        flipped = flips[(flips["model"] == model) & (flips["variant"] == variant)]
        reasons = mine.apply(lambda row: row["status_corrected"] if row["passed_paper"] else row["status_paper"], axis=1)
        rows.append({
            "model": model, "variant": variant, "candidates": len(part),
            "passed_paper": int(part["passed_paper"].sum()), "passed_corrected": int(part["passed_corrected"].sum()),
            "paper_only": int(mine["passed_paper"].sum()), "corrected_only": int(mine["passed_corrected"].sum()),
            "tasks_changed": int(mine["task_id"].nunique()),
            "solved_flips": len(flipped), "tasks_solved_flip": " ".join(map(str, sorted(flipped["task_id"].unique()))),
            "reasons": "; ".join(f"{reason} ({count})" for reason, count in
                                 reasons.map(_reason).value_counts().head(3).items()) if len(mine) else "",
        })
    return _ordered(pd.DataFrame(rows))


def _reason(error) -> str:
    """The exception type of a verdict's error (``"NameError: ..."`` -> ``NameError``)."""
    return str(error).split(":", 1)[0] if isinstance(error, str) and error else "?"


def load_problems() -> list[dict]:
    """MBPP's test split (tasks 11-510) from the local data folder's ``mbpp/``, else from the hub."""
    from shared_utils import data

    return data.load_mbpp(data.mbpp_source(), "test")


# The modules whose code decides a verdict or an MI: a cache made by other code is not reused.
JUDGING_CODE = ("sandbox", "extraction.py", "maintainability.py", "protocol.py", "scoring.py")


def judging_code(package: Path = Path(__file__).resolve().parent) -> str:
    """A hash of the sources that turn a completion into a verdict and an MI (the sandbox, extraction, scoring)."""
    import hashlib

    sources = sorted(path for name in JUDGING_CODE
                     for path in ((package / name).rglob("*.py") if (package / name).is_dir() else [package / name]))
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def scores_cache(found: list[Path], reuse: bool) -> Path:
    """Where the per-sample verdicts of these exact files are kept, so that tables and figure redo in seconds.

    The key holds the files' checksums, the protocols, the reuse setting and the judging code's hash,
    so a change to the sandbox, the extraction or the MI rescoring instead of reading old verdicts.
    """
    import hashlib

    key = hashlib.sha256(repr(([files.sha256_of(path) for path in found], PROTOCOLS, reuse,
                               judging_code())).encode()).hexdigest()
    return paths.cache_dir() / "paper-outputs" / f"samples-{key[:16]}.parquet"


def run(folder: Path | None = None, out: Path = RESULTS_DIR, *, reuse: bool = True, workers: int | None = None,
        n_boot: int = statistics.N_BOOT, progress: bool = True) -> dict:
    """Score every published file, write the results to ``out`` and return them by name.

    Written: ``per_run.csv`` (every file under both protocols, the authors' numbers beside),
    ``table.csv``, ``comparisons.csv``, ``disagreements.csv``, ``figure.png`` and
    ``provenance.json`` (settings, timings, versions, the input files' checksums).
    """
    from shared_utils import plots

    folder = Path(folder) if folder else inputs.group_dir("published")
    started = time.perf_counter()
    found = completion_files(folder)
    frame = candidates(found)
    cache = scores_cache(found, reuse)
    cached = cache.is_file()
    if cached:
        samples = pd.read_parquet(cache)
        print(f"scores reused from {cache} (same files, protocols, reuse setting and judging code)")
    else:
        samples = score(frame, load_problems(), reuse=reuse, workers=workers, progress=progress)
        with files.atomic_path(cache) as tmp:
            samples.to_parquet(tmp, index=False)
    scored_s = time.perf_counter() - started
    authors = authors_runs(folder)
    runs = against_authors(per_run(samples), authors)
    results = {"per_run": runs, "table": paper_table(runs, authors), "comparisons": paired(samples, n_boot=n_boot),
               "disagreements": disagreements(samples)}
    out = Path(out)
    for name, table in results.items():
        with files.atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    comparisons = results["comparisons"]
    figure = plots.paired_differences(
        comparisons[comparisons["protocol"] == "paper"], lambda row: f"{row['model']}: {row['from']} → {row['to']}",
        "The authors' published outputs re-scored (paper protocol): green better, red worse, grey no evidence (Holm)")
    figure.savefig(out / "figure.png", dpi=120, metadata={"Software": None})
    files.write_json(out / "provenance.json", files.provenance(
        inputs=str(folder), files=int(frame["file"].nunique()), candidates=len(frame),
        distinct=int(frame[["task_id", "code"]].drop_duplicates().shape[0]), reuse=reuse,
        reuse_rule="one run per distinct (task, program) and protocol, its verdict given to every copy" if reuse
        else "every candidate run", protocols=list(PROTOCOLS), timeout_per_assert=5.0,
        workers=workers or f"{WORKERS_PER_CORE} per core", n_boot=n_boot, commit=files.repository_commit() or "unknown",
        scores="read from the cache" if cached else f"scored in {scored_s:.0f} s",
        sandbox=scoring.sandbox_label(samples), family=family_note(results["comparisons"]),
        checksums={row: inputs.check(folder / Path(row).name, expected) or "ok"
                   for row, expected in inputs.manifest()["published"].items()}))
    return results


def mismatches(results: dict) -> pd.DataFrame:
    """The per-run rows under ``paper`` that do not reproduce the authors' numbers (empty when all do)."""
    runs = results["per_run"]
    paper = runs[runs["protocol"] == "paper"]
    return paper[~paper["matches"].astype(bool)]


README_START = "<!-- paper outputs: generated by `python -m shared_utils paper-outputs --update-readme` from results/paper-outputs -->"
README_END = "<!-- end of paper outputs -->"
METRIC_LABELS = {"pass@1": "pass@1 (points)", "pass@10": "pass@10 (points)", "avg_mi": "average MI"}


def readme_section(results: Path = RESULTS_DIR) -> str:
    """The README's section, from the committed result files alone."""
    from shared_utils.repository import notebook_link

    results = Path(results)
    table = pd.read_csv(results / "table.csv")
    comparisons = pd.read_csv(results / "comparisons.csv")
    runs = pd.read_csv(results / "per_run.csv")
    flips = pd.read_csv(results / "disagreements.csv", dtype={"tasks_solved_flip": str})
    paper_runs = runs[runs["protocol"] == "paper"]
    figure = (results / "figure.png").relative_to(paths.REPO_ROOT).as_posix()
    lines = [README_START, "",
             f"Regenerate: `python -m shared_utils paper-outputs --update-readme` (or {notebook_link(EVALUATION_NOTEBOOK)}).",
             f"Under `paper`, {int(paper_runs['matches'].sum())} of {len(paper_runs)} published files reproduce the "
             "authors' own per-run solved count and average MI. Mean ± sd over the five runs:", "",
             "| model | variant | protocol | solved (of 500) | average MI | pass@1 (%) | pass@10 (%) | source |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        rates = [f"{row[f'{m}_mean'] * 100:.2f} ± {row[f'{m}_std'] * 100:.2f}" if pd.notna(row.get(f"{m}_mean")) else "—"
                 for m in ("pass@1", "pass@10")]
        lines.append(f"| {row['model']} | {row['variant']} | {row['protocol']} | {row['solved_mean']:.1f} ± "
                     f"{row['solved_std']:.1f} | {row['avg_mi_mean']:.2f} ± {row['avg_mi_std']:.2f} | "
                     f"{' | '.join(rates)} | {row['source']} |")
    metrics = list(dict.fromkeys(comparisons["metric"]))
    for protocol, group in comparisons.groupby("protocol", sort=False):
        lines += ["", f"Paired differences under `{protocol}` (to - from; 95% interval; verdict):", "",
                  "| model | comparison | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        for (model, a, b), part in group.groupby(["model", "from", "to"], sort=False):
            cells = part.set_index("metric")
            lines.append(f"| {model} | {a} → {b} | " + " | ".join(difference_cell(cells.loc[m], m) for m in metrics) + " |")
    lines += ["", f"{family_note(comparisons)}. Tasks, and each variant's five runs, are resampled; average MI is "
                  f"{statistics.MI_NOTE.split(' (')[0]}, tasks resampled jointly. qwen3-4b's base and `-dpo` raw "
                  "completions were not published: their rows are the authors' per-run means, without comparisons.",
              "", "Where `paper` and `corrected` disagree (candidates whose verdict changes; tasks solved under one "
                  "only, summed over runs):", "",
              "| model | variant | passing only under paper | only under corrected | solved flips | tasks | error where it fails |",
              "|---|---|---|---|---|---|---|"]
    for row in flips.fillna("").to_dict("records"):
        lines.append(f"| {row['model']} | {row['variant']} | {row['paper_only']} | {row['corrected_only']} | "
                     f"{row['solved_flips']} | {row['tasks_solved_flip']} | {row['reasons']} |")
    lines += ["", f"![Paired differences with 95% intervals]({figure})", "", README_END]
    return "\n".join(lines)


def readme_with_section(text: str, results: Path = RESULTS_DIR) -> str:
    """The README's text with its paper-outputs section rendered afresh from ``results``."""
    return replace_section(text, README_START, README_END, readme_section(results))


def update_readme(results: Path = RESULTS_DIR) -> Path:
    """Rewrite the README's paper-outputs section from ``results`` (``render-notebooks`` does it from the committed ones)."""
    readme = paths.REPO_ROOT / "README.md"
    return files.write_text(readme, readme_with_section(readme.read_text(), results))


def family_note(comparisons: pd.DataFrame) -> str:
    """How the comparisons' multiplicity is handled: one Holm family per protocol."""
    return statistics.family_note(comparisons[comparisons["protocol"] == PROTOCOLS[0]]) + ", one family per protocol"


def summary_text(results: dict) -> str:
    """What the verb prints: reproduction, the table, the comparisons and the protocol differences."""
    bad = mismatches(results)
    head = ("every file reproduces the authors' per-run numbers under paper" if bad.empty
            else f"{len(bad)} file(s) differ from the authors' per-run numbers:\n{bad.to_string(index=False)}")
    comparisons = results["comparisons"]
    shown = comparisons[["protocol", "model", "from", "to", "metric", "a", "b", "diff", "low", "high", "p_holm",
                         "verdict"]]
    return "\n\n".join([head, results["table"].round(3).to_string(index=False), shown.round(4).to_string(index=False),
                        family_note(comparisons),
                        results["disagreements"].to_string(index=False)])
