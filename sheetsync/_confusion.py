"""Confusion matrices and per-class accuracy from labels and predictions (pure).

Usage::

    cm = confusion(["i", "ii"], ["i", "i"], classes=["i", "ii"])   # rows: label, columns: predicted
    per_class_accuracy(cm)                                          # i 1.0, ii 0.0
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def confusion(labels: Iterable[object], predicted: Iterable[object],
              classes: Iterable[str]) -> pd.DataFrame:
    """Counts: row = the given label, column = the model's class, both in ``classes`` order.

    Labels or predictions that are not classes are an error, not silently dropped."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    lab, pred = list(map(str, labels)), list(map(str, predicted))
    if len(lab) != len(pred):
        raise ValueError(f"{len(lab)} labels but {len(pred)} predictions")
    unknown = sorted({v for v in (*lab, *pred) if v not in index})
    if unknown:
        raise ValueError(f"not classes: {', '.join(unknown)}")
    m = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(m, ([index[v] for v in lab], [index[v] for v in pred]), 1)
    return pd.DataFrame(m, index=pd.Index(list(classes), name="label"),
                        columns=pd.Index(list(classes), name="predicted"))


def per_class_accuracy(cm: pd.DataFrame) -> pd.Series:
    """Share of each class's images the model got right (recall); NaN for an empty class."""
    totals = cm.sum(axis=1).astype(float)
    right = pd.Series(np.diag(cm.to_numpy()), index=cm.index, dtype=float)
    return (right / totals.where(totals > 0)).rename("accuracy")
