"""What the review sheet says about itself (pure): the model behind it, what it flags, a summary.

``push`` calls these with the review signals (:func:`sheetsync.review.review_signals`) and the
table it writes; nothing here touches a file or a sheet.

Usage::

    model = model_info("in-sample", 3, probs, labels, version=3, current=3, epochs=5,
                       val_accuracy=0.21)
    summary = summarise(signals, manifest, unreadable=["train/i/bad.png"])
    rows = flagged_rows(table, signals, weak=model.weak)     # 0-based positions to highlight
    info = info_line("v3", "2026-12-01T08:00:00Z", model, summary)

The texts here are the sheet's own (its info line and ``why`` notes); what a command prints is
worded in :mod:`sheetsync.cli`, which says the model and the summary in the info line's words
(:func:`model_text`, :func:`summary_text`).

**Highlight rule** (the info line says the same): a row is flagged when the review suggests an
action for it from out-of-sample predictions (``relabel → c`` or ``drop?``,
:mod:`sheetsync._evidence`; after ``sheetsync predict``), or cleanlab flags its
label as likely wrong (confident learning: it then names a ``suspected`` class), or the image is
blank, unreadable, or the same picture appears under another label. When the model is too weak
(:func:`weakness`), only the last three flag a row: a near-chance model's doubts are noise.
cleanlab's flags are *counted* as likely label errors (the summary) only from out-of-sample
predictions of the current data (:func:`uncounted`); otherwise they highlight, but the
summary says why they are not counted.
On the competition data against its human review (bench/bench_review_human, three fold seeds),
cleanlab's flags alone highlighted 105 rows, 64% of them real problems, 18% of the problems;
with the suggestions (the rule of issue 23), 316 rows, 62% real problems, 52% of the problems
(481, 56% and 71% with the rule before, which gave drop? to about 400 rows). In-sample predictions
(no ``predict`` yet) keep cleanlab's flags only: on the 381 demo rows after 8 epochs the
suggestions would have flagged 73 rows for 6 planted wrong labels, cleanlab 10 (a threshold of
0.5 on the priority, 135).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._imagecheck import ImageChecks
from ._picture import DOTTED

FAR = 2.5  # outlier distance from which an image is far from its class (as in review.py)
# A model is "too weak" when its accuracy, or its typical top probability, is less than a
# quarter of the way from chance (1/classes) to certainty.
WEAK_FRACTION = 0.25


@dataclass(frozen=True)
class ModelInfo:
    """The model behind the sheet's columns: where its probabilities come from, how good it is."""

    kind: str  # "in-sample", "out-of-sample" or "none"
    version: int | None = None  # the version the predictions were computed for
    current: int | None = None  # the version pushed
    epochs: int | None = None
    val_accuracy: float | None = None  # best validation accuracy (in-sample) or OOS accuracy
    median_top_probability: float | None = None
    classes: int = 0
    weak: str = ""  # why the ranking means little; "" when the model is good enough

    @property
    def stale(self) -> bool:
        return self.version is not None and self.current is not None and self.version != self.current


@dataclass(frozen=True)
class PushSummary:
    """What people would otherwise count by hand in the pushed sheet."""

    rows: int
    likely_label_errors: int  # rows cleanlab flags (a class is suspected)
    duplicates: int  # rows showing the same picture as another row
    duplicates_across_splits: int  # ... of which a copy sits in another split (leakage)
    conflicting_duplicates: int  # ... of which a copy carries another label
    blank: int
    unreadable: int
    outliers: int  # rows farther than FAR from their class
    flagged: int  # rows highlighted in the sheet
    unreadable_paths: tuple[str, ...] = field(default=())
    checked: int = 0  # rows people checked (ticked, relabelled or dropped; sheetsync.rerank)
    checked_problems: int = 0  # ... of which were relabelled or dropped
    # The model is too weak: its label errors and outliers are noise, and are not stated.
    model_too_weak: bool = False
    # Why cleanlab's flags are not counted as likely label errors ("" when they are:
    # :func:`uncounted`); in-sample, stale or no predictions are no evidence of one.
    uncounted: str = ""


def weakness(accuracy: float | None, median_top: float | None, classes: int) -> str:
    """Why a model's ranking means little ("" when it is good enough)."""
    if classes < 2:
        return ""
    chance = 1.0 / classes
    bar = chance + WEAK_FRACTION * (1.0 - chance)
    if accuracy is not None and accuracy < bar:
        return (f"accuracy {accuracy:.0%} is near chance ({chance:.0%} for {classes} classes; "
                f"below {bar:.0%})")
    if median_top is not None and median_top < bar:
        return (f"its probabilities are near uniform (median top probability {median_top:.2f}, "
                f"chance {chance:.2f})")
    return ""


def model_info(kind: str, version: int | None, probs: pd.DataFrame | None, labels: pd.Series,
               *, current: int, epochs: int | None = None,
               val_accuracy: float | None = None) -> ModelInfo:
    """The model behind ``probs`` (index = id, columns = classes); OOS accuracy from ``labels``."""
    if probs is None or not len(probs):
        return ModelInfo("none", current=current)
    p = probs.astype(float)
    top = float(np.median(p.to_numpy().max(axis=1)))
    if val_accuracy is None:
        given = labels.astype(str).reindex(p.index)
        known = given.isin(p.columns)
        if known.any():
            val_accuracy = float((p[known].idxmax(axis=1) == given[known]).mean())
    classes = p.shape[1]
    return ModelInfo(kind, version, current, epochs, val_accuracy, top, classes,
                     weakness(val_accuracy, top, classes))


def _column(signals: pd.DataFrame, name: str, default: object) -> pd.Series:
    if name in signals.columns:
        return signals[name]
    return pd.Series(default, index=signals.index)


def summarise(signals: pd.DataFrame, manifest: pd.DataFrame, *, flagged: int = 0,
              unreadable: Sequence[str] = (), checked: tuple[int, int] = (0, 0),
              weak: bool = False, uncounted: str = "") -> PushSummary:
    """Counts over the pushed rows; ``signals`` and ``manifest`` are indexed / keyed by id;
    ``uncounted``: why the likely label errors are not stated (:func:`uncounted`)."""
    m = manifest.set_index("id", drop=False)
    s = signals.reindex(m.index)
    dup = _column(s, "duplicate_of", "").fillna("").astype(str)
    split: dict[str, str] = dict(zip(m["id"].astype(str), m["split"].astype(str), strict=True))
    across = sum(1 for i, others in zip(dup.index.astype(str), dup, strict=True) if others
                 and any(split.get(o, split[i]) != split[i] for o in others.split()))
    outlier = pd.to_numeric(_column(s, "outlier", np.nan), errors="coerce")
    return PushSummary(
        rows=len(m),
        likely_label_errors=int((_column(s, "suspected", "").fillna("").astype(str) != "").sum()),
        duplicates=int((dup != "").sum()),
        duplicates_across_splits=across,
        conflicting_duplicates=int(_column(s, "duplicate_conflict", False).fillna(False).astype(bool).sum()),
        blank=int(_column(s, "blank", False).fillna(False).astype(bool).sum()),
        unreadable=len(unreadable),
        outliers=int((outlier >= FAR).sum()),
        flagged=flagged,
        unreadable_paths=tuple(unreadable),
        checked=checked[0], checked_problems=checked[1],
        model_too_weak=weak, uncounted=uncounted,
    )


def flagged_rows(table: pd.DataFrame, signals: pd.DataFrame, *, weak: bool,
                 unreadable_ids: Sequence[str] = (), out_of_sample: bool = True) -> tuple[int, ...]:
    """0-based positions of ``table`` rows to highlight (see the module's highlight rule);
    suggestions count only for ``out_of_sample`` predictions."""
    s = signals.reindex(table["id"].astype(str))
    sure = (_column(s, "blank", False).fillna(False).astype(bool)
            | _column(s, "duplicate_conflict", False).fillna(False).astype(bool)
            | s.index.isin(list(unreadable_ids)))
    if weak:
        flag = sure
    else:
        doubted = _column(s, "suspected", "").fillna("").astype(str) != ""
        if out_of_sample:
            text = _column(s, "suggestion", "").fillna("").astype(str)
            doubted |= (text != "") & ~text.isin(list(NO_SUGGESTION.values()))
        flag = sure | doubted
    flag = _inherited(table, flag)
    return tuple(int(i) for i in np.flatnonzero(flag.to_numpy()))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _inherited(table: pd.DataFrame, flag: pd.Series) -> pd.Series:
    """A derived row (sheetsync augment) is highlighted when its source is: a derived image
    copies its source's label, so a doubt about the source is a doubt about it."""
    if "source_id" not in table.columns:
        return flag
    by_id = dict(zip(table["id"].astype(str), flag.to_numpy(dtype=bool), strict=True))
    source = table["source_id"].fillna("").astype(str)
    inherited = np.array([bool(by_id.get(s, False)) for s in source], dtype=bool)
    return pd.Series(flag.to_numpy() | inherited, index=flag.index)


def summary_text(summary: PushSummary) -> str:
    """One line for people: the counts that matter (a too-weak model's label errors and
    outliers are not counted: they are noise; nor are label errors without out-of-sample
    predictions of the current data: :func:`uncounted`)."""
    # Without a model there are no embeddings either: no outlier distances to count.
    no_model = summary.uncounted == NO_PREDICTIONS
    model = ("label errors and outliers not counted (model too weak)" if summary.model_too_weak
             else f"label errors and outliers not counted ({NO_PREDICTIONS})" if no_model
             else f"label errors not counted ({summary.uncounted})" if summary.uncounted
             else _count(summary.likely_label_errors, "likely label error", "likely label errors"))
    outliers = ("" if summary.model_too_weak or no_model
                else f"; {_count(summary.outliers, 'outlier', 'outliers')}")
    return (f"{_count(summary.flagged, 'row', 'rows')} highlighted; {model}; "
            f"{_count(summary.duplicates, 'duplicate', 'duplicates')} "
            f"({summary.duplicates_across_splits} across splits, "
            f"{summary.conflicting_duplicates} under another label); {summary.blank} "
            f"blank, {summary.unreadable} unreadable{outliers}; "
            f"{checked_text(summary.checked, summary.checked_problems)}")


def checked_text(checked: int, problems: int) -> str:
    """How far the review got: rows checked, and the problems (relabels, drops) among them."""
    return (f"{_count(checked, 'row', 'rows')} checked ({problems} relabelled or dropped, "
            f"{checked - problems} right)")


def model_text(model: ModelInfo) -> str:
    """The model behind the columns, in words, with what to run when it is weak or stale."""
    if model.kind == "none":
        return "no model yet: run `sheetsync train` (then `sheetsync predict`)"
    parts = [f"{model.kind} predictions of v{model.version}"]
    if model.epochs:
        parts.append(f"{model.epochs} epoch{'' if model.epochs == 1 else 's'}")
    if model.val_accuracy is not None:
        what = "val accuracy" if model.kind == "in-sample" else "out-of-sample accuracy"
        parts.append(f"{what} {model.val_accuracy:.0%}")
    text = ", ".join(parts)
    if model.stale:
        text += f"; STALE (the data is now v{model.current})"
    if model.weak:
        text += (f"; MODEL TOO WEAK to rank labels: {model.weak}; run `sheetsync train "
                 f"--epochs 30` or `sheetsync predict` before trusting the order")
    return text


NO_PREDICTIONS = "no predictions yet"  # why nothing the model says is counted: there is none

# What the suggestion cell says when the model cannot support a suggestion (sheet and report).
NO_SUGGESTION = {"in-sample": "none: in-sample", "stale": "none: stale model",
                 "weak": "none: model too weak"}


def withheld_because(model: ModelInfo) -> str:
    """Why the model's suggestions are withheld ("" when they stand): they need out-of-sample
    predictions of the current data from a model above the "too weak" line."""
    if model.kind == "none":
        return ""
    if model.weak:
        return "weak"
    if model.kind != "out-of-sample":
        return "in-sample"
    return "stale" if model.stale else ""


def uncounted(model: ModelInfo) -> str:
    """Why cleanlab's flags are not counted as likely label errors ("" when they are): a
    count is a claim, and only out-of-sample predictions of the current data from a model
    above the "too weak" line support it (a model scores the labels it learned, wrong ones
    included). The push summary, the info line and the report say it in these words."""
    if model.kind == "none":
        return NO_PREDICTIONS
    return {"weak": "model too weak",
            "in-sample": "in-sample predictions: run `sheetsync predict`",
            "stale": "stale predictions: run `sheetsync predict` again"}.get(withheld_because(model), "")


def gated_suggestions(signals: pd.DataFrame, model: ModelInfo) -> pd.DataFrame:
    """``signals`` with the model's suggestions replaced by why there is none
    (:data:`NO_SUGGESTION`) when the model cannot support them (:func:`withheld_because`).

    Then every row says why, not only the rows the model would have advised on: which rows
    those are is itself in-sample (or stale, or near-chance) advice, and an empty cell beside
    a "none: …" one reads as "nothing to do here" (seen on the demo's in-sample push). A row
    the model never scored (new since a stale model ran) says the model is stale. A ``drop?``
    from the pixels alone (a blank picture, one drawn in dots or dashes) stands whatever the
    model: it does not come from the model."""
    reason = withheld_because(model)
    if not reason or not len(signals):
        return signals
    picture = _column(signals, "blank", False).fillna(False).astype(bool)
    piece = pd.to_numeric(_column(signals, "largest_piece", np.nan), errors="coerce")
    picture |= (piece < DOTTED).fillna(False)
    why = pd.Series(NO_SUGGESTION[reason], index=signals.index, dtype=object)
    if model.stale and reason != "weak":
        unscored = pd.to_numeric(_column(signals, "confidence", 0.0), errors="coerce").isna()
        why[unscored] = NO_SUGGESTION["stale"]
    suggested = _column(signals, "suggestion", "").fillna("").astype(str)
    out = signals.copy()
    out["suggestion"] = suggested.where(picture & (suggested != ""), why)
    return out


def info_line(version: str, pushed_at: str, model: ModelInfo, summary: PushSummary) -> str:
    """The info row above the header: version, when, which model, what the sheet holds."""
    rest = "blank, unreadable, or a copy under another label"
    if model.weak:
        highlight = rest
    elif model.kind == "out-of-sample" and not model.stale:
        highlight = f"a suggested relabel or drop, labels cleanlab flags as likely wrong, {rest}"
    else:  # cleanlab's flags still highlight a row, but are not counted as label errors
        highlight = f"labels cleanlab doubts, {rest}"
    return (f"sheetsync · {version} pushed {pushed_at}\nmodel: {model_text(model)}\n"
            f"{summary_text(summary)} (highlighted: {highlight})")


@dataclass(frozen=True)
class ReviewSheet:
    """Everything ``push`` adds to the plain table: the model, the summary, the highlight."""

    model: ModelInfo
    summary: PushSummary
    flagged: tuple[int, ...]
    info: str


def review_sheet(table: pd.DataFrame, signals: pd.DataFrame, manifest: pd.DataFrame,
                 model: ModelInfo, *, version: str, pushed_at: str,
                 unreadable: Sequence[str] = (), checked: tuple[int, int] = (0, 0)) -> ReviewSheet:
    """The info line, highlighted rows and summary for ``table`` (``unreadable`` = paths)."""
    paths = manifest.set_index("path")["id"].astype(str) if len(manifest) else pd.Series(dtype=str)
    bad_ids = [paths[p] for p in unreadable if p in paths.index]
    rows = flagged_rows(table, signals, weak=bool(model.weak), unreadable_ids=bad_ids,
                        out_of_sample=model.kind == "out-of-sample" and not withheld_because(model))
    summary = summarise(signals, manifest, flagged=len(rows), unreadable=unreadable,
                        checked=checked, weak=bool(model.weak), uncounted=uncounted(model))
    return ReviewSheet(model, summary, rows, info_line(version, pushed_at, model, summary))


def with_derived_notes(table: pd.DataFrame) -> pd.DataFrame:
    """``why`` of a derived row (sheetsync augment) starts with what it is: "hflip of <id>"."""
    if not len(table) or "source_id" not in table.columns:
        return table
    source = table["source_id"].fillna("").astype(str)
    derived = source != ""
    if not derived.any():
        return table
    what = table["transform"].fillna("").astype(str) + " of " + source
    why = table["why"].fillna("").astype(str)
    table = table.copy()
    table.loc[derived, "why"] = [f"{w}; {o}" if o else w
                                 for w, o in zip(what[derived], why[derived], strict=True)]
    return table


def with_image_notes(table: pd.DataFrame, checks: ImageChecks) -> pd.DataFrame:
    """``why`` says what is wrong with unreadable files and what the model sees of odd ones."""
    if not len(table):
        return table
    extra = table["path"].astype(str).map(checks.why)
    why = table["why"].fillna("").astype(str)
    table = table.copy()
    table["why"] = [f"{e}; {w}" if e and w else e or w for e, w in zip(extra, why, strict=True)]
    return table
