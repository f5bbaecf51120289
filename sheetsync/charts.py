"""Charts people would rather see than read: scores over versions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def scores_chart(scores: pd.DataFrame, path: Path) -> Path | None:
    """Best validation and test accuracy per score row, by version; None when nothing to plot."""
    if scores is None or not len(scores):
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display here, and never open a window from a CLI
    import matplotlib.pyplot as plt

    df = scores.copy()
    x = [f"v{v}\n#{i + 1}" for i, v in enumerate(df["version"])]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(df) + 2), 3.2))
    for column, style in (("best_val_accuracy", "o-"), ("test_accuracy", "s--")):
        if column in df.columns:
            y = pd.to_numeric(df[column], errors="coerce")
            if y.notna().any():
                ax.plot(x, y, style, label=column.replace("_", " "))
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("dataset version / score row")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("sheetsync: scores over versions")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
