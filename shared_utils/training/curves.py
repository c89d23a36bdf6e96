"""Training curves saved as PNG next to the adapter."""

from __future__ import annotations

from pathlib import Path

PLOTS = {  # file stem: (log column, title)
    "loss": ("loss", "DPO loss"),
    "rewards_margins": ("rewards/margins", "Reward margin (chosen - rejected)"),
    "rewards_accuracies": ("rewards/accuracies", "Reward accuracy"),
    "kl_estimate": ("kl_estimate", "KL estimate: mean log pi/pi_ref on chosen"),
}


def plot_training(frame, folder: Path) -> list[Path]:
    """One PNG per curve the log holds; returns the files written.

    Uses ``Figure`` directly rather than pyplot, so a notebook's backend is left alone.
    """
    from matplotlib.figure import Figure

    written = []
    for stem, (column, title) in PLOTS.items():
        if column not in frame:
            continue
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ax.plot(frame["step"], frame[column], marker="o" if len(frame) < 30 else None)
        ax.set(title=title, xlabel="step", ylabel=column)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
