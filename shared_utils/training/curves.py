"""Training curves saved as PNG next to the adapter."""

from __future__ import annotations

from pathlib import Path

PLOTS = {  # file stem: (log column or columns, title)
    "loss": ("loss", "DPO loss"),
    "rewards_margins": ("rewards/margins", "Reward margin (chosen - rejected)"),
    "rewards_accuracies": ("rewards/accuracies", "Reward accuracy"),
    "kl_estimate": ("kl_estimate", "KL estimate: mean log pi/pi_ref on chosen"),
}
GRPO_PLOTS = {
    "rewards": (("reward", "code/correctness", "code/maintainability"), "Reward and its components (step means)"),
    "kl": ("kl", "KL to the reference"),
    "completion_length": ("completions/mean_length", "Completion length (tokens, step mean)"),
    "mi": (("mi/written", "mi/scored"), "MI of passing samples: as written vs as rewarded"),
    "rejected": (("rejected/truncated", "rejected/format", "rejected/obfuscated"),
                 "Share of completions rejected (every reward 0)"),
}


def plot_training(frame, folder: Path, plots: dict = PLOTS) -> list[Path]:
    """One PNG per curve the log holds (a curve of several columns draws those it has); returns the files written.

    Uses ``Figure`` directly rather than pyplot, so a notebook's backend is left alone.
    """
    from matplotlib.figure import Figure

    written = []
    for stem, (columns, title) in plots.items():
        present = [column for column in ((columns,) if isinstance(columns, str) else columns) if column in frame]
        if not present:
            continue
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        for column in present:
            ax.plot(frame["step"], frame[column], marker="o" if len(frame) < 30 else None, label=column)
        ax.set(title=title, xlabel="step", ylabel=present[0] if len(present) == 1 else "")
        if len(present) > 1:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
