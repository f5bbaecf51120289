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


def embedding_map(embeddings: pd.DataFrame, labels: pd.Series, flagged: pd.Series | None,
                  path: Path, title: str = "") -> Path | None:
    """The 256-d embeddings in 2-D (PCA), coloured by label; flagged images ringed in red."""
    if embeddings is None or len(embeddings) < 3:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.decomposition import PCA

    ids = embeddings.index.intersection(labels.index)
    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings.loc[ids].to_numpy())
    lab = labels.loc[ids].astype(str).to_numpy()
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(set(lab)) <= 10 else "tab20")
    for k, name in enumerate(dict.fromkeys(sorted(set(lab), key=list(labels.unique()).index))):
        sel = lab == name
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=cmap(k % cmap.N), label=name, alpha=0.7)
    if flagged is not None:
        sel = np.asarray(flagged.reindex(ids).fillna(False), dtype=bool)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=40, facecolors="none", edgecolors="red",
                   linewidths=0.8, label="likely wrong")
    ax.legend(loc="best", fontsize=7, markerscale=1.5, ncol=2)
    ax.set_title(title or "embedding map (PCA of the 256-d pooled features)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
