"""The figures the notebooks show: what the preference data is made of and how variants compare."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from shared_utils.preferences import COMPONENTS  # noqa: E402


def preference_overview(rows: list[dict], title: str = ""):
    """MI of chosen vs rejected, the MI gap, and the mean of each MI component per side."""
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].hist([frame["chosen_mi"], frame["rejected_mi"]], bins=20, label=["chosen", "rejected"])
    axes[0].set(title="MI", xlabel="Maintainability Index", ylabel="pairs")
    axes[0].legend()
    axes[1].hist(frame["mi_gap"], bins=20, color="tab:green")
    axes[1].set(title="MI gap (chosen - rejected)", xlabel="MI points")
    means = pd.DataFrame({side: [frame[f"{side}_{c}"].mean() for c in COMPONENTS[1:]]
                          for side in ("chosen", "rejected")}, index=list(COMPONENTS[1:]))
    means.plot.bar(ax=axes[2], rot=20, title="MI components (mean)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def rounds(table):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(table["round"], table["tasks_with_enough"], marker="o", label="tasks with 2+ passing")
    ax2 = ax.twinx()
    ax2.plot(table["round"], table["pass_rate"], marker="s", color="tab:orange", label="sample pass rate")
    ax.set(xlabel="round", ylabel="tasks")
    ax2.set(ylabel="pass rate")
    fig.legend(loc="lower right")
    fig.tight_layout()
    return fig


def evaluation_overview(report):
    """pass@k per variant, MI of passing samples per variant, per-problem MI change, MI components."""
    from shared_utils.scoring import per_task

    per_run = report.per_run[report.per_run["scoring"] == "paper"]
    pass_cols = [c for c in per_run.columns if c.startswith("pass@")]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    per_run.groupby("variant", sort=False)[pass_cols].mean().plot.bar(ax=axes[0], rot=0, title="pass@k (paper scoring)")
    paper = {variant: frame for (variant, mode), frame in report.samples.items() if mode == "paper"}
    passing = {variant: frame.loc[frame["passed"], "mi"] for variant, frame in paper.items()}
    if any(len(values) for values in passing.values()):
        axes[1].boxplot([values.dropna() for values in passing.values()], tick_labels=list(passing))
    axes[1].set(title="MI of passing samples")
    if "base" in paper:
        base = per_task(paper["base"])["mi_passing"]
        changes = {variant: (per_task(frame)["mi_passing"] - base).dropna()
                   for variant, frame in paper.items() if variant != "base"}
        changes = {variant: values for variant, values in changes.items() if len(values)}
        if changes:
            axes[2].hist(list(changes.values()), bins=15, label=list(changes))
            axes[2].axvline(0, color="black", linewidth=0.8)
            axes[2].legend()
    axes[2].set(title="Per-problem MI change vs base", xlabel="MI points (problems solved by both)")
    components = pd.DataFrame({variant: frame.loc[frame["passed"], list(COMPONENTS[1:])].mean()
                               for variant, frame in paper.items()})
    if not components.empty:
        components.plot.bar(ax=axes[3], rot=20, title="MI components of passing samples (mean)")
    fig.tight_layout()
    return fig


def mi_per_task(values: dict, title: str):
    """Per variant, the distribution of its per-task MI (mean MI of a solved task's passing samples); n per box."""
    fig, ax = plt.subplots(figsize=(1.6 * len(values) + 2, 4))
    shown = {name: series.dropna() for name, series in values.items()}
    ax.boxplot([series if len(series) else [float("nan")] for series in shown.values()],
               tick_labels=[f"{name}\n({len(series)} tasks)" for name, series in shown.items()])
    ax.set(title=title, ylabel="MI of passing code, per task")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def training_curves(log, panels, title: str = ""):
    """One panel per (columns, title) of ``panels`` that the log (one row per logged step) holds, against the step."""
    present = [(columns, name) for columns, name in panels
               if any(column in log for column in ((columns,) if isinstance(columns, str) else columns))]
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(5 * max(len(present), 1), 3.5), squeeze=False)
    for ax, (columns, name) in zip(axes[0], present):
        columns = [c for c in ((columns,) if isinstance(columns, str) else columns) if c in log]
        for column in columns:
            ax.plot(log["step"], log[column], marker="o" if len(log) < 30 else None, label=column)
        ax.set(title=name, xlabel="step")
        if len(columns) > 1:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


GRPO_PANELS = (  # (log columns, title): what GRPO's notebook shows per step
    (("reward", "code/correctness", "code/maintainability"), "Reward and its components"),
    (("kl",), "KL to the starting policy"),
    (("completions/mean_length",), "Completion length (tokens)"),
    (("rejected/truncated", "rejected/format", "rejected/obfuscated"), "Rejected (share; every reward 0)"),
)


def grpo_training(log):
    """GRPO per step: the reward and its components, the KL to the reference, the completion length, the rejections."""
    return training_curves(log, GRPO_PANELS)


def paired_differences(table, label, title: str):
    """Paired differences with their 95% intervals, one panel per metric; ``label(row)`` names each row's comparison.

    ``table`` holds ``metric``, ``diff``, ``low``, ``high`` and ``verdict`` (``statistics.comparisons``); a row whose
    interval is NaN (a comparison not made) is left out.
    """
    table = table.dropna(subset=["low", "high"])
    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 0.45 * table.groupby("metric").size().max() + 1.5),
                             sharey=True, squeeze=False)
    colours = {"better": "tab:green", "worse": "tab:red", "no evidence": "tab:gray"}
    for ax, metric in zip(axes[0], metrics):
        rows = table[table["metric"] == metric].reset_index(drop=True)
        for y, row in rows.iterrows():
            ax.errorbar(row["diff"], y, xerr=[[row["diff"] - row["low"]], [row["high"] - row["diff"]]], fmt="o",
                        color=colours[row["verdict"]], capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(rows)), [label(row) for _, row in rows.iterrows()])
        ax.invert_yaxis()
        ax.set(title=metric, xlabel="difference (to - from), 95% interval")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
