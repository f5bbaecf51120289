"""Compact text tables for the terminal (status, log, diff, scores): about 100 columns at most.

Pure: DataFrames in, lines out. A column that would push a line past ``width`` is cut with "…".

Usage::

    print("\\n".join(log_lines(project.log())))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

WIDTH = 100


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], width: int = WIDTH,
          flex: int = -1) -> list[str]:
    """Aligned columns (numbers to the right); column ``flex`` is cut so lines fit ``width``."""
    cells = [[str(c) for c in header], *[[_text(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    flex = flex % len(header)
    over = sum(widths) + 2 * (len(widths) - 1) - width
    if over > 0:
        widths[flex] = max(widths[flex] - over, 8)
    numeric = [all(_is_number(r[i]) or not r[i] for r in cells[1:]) for i in range(len(header))]
    out = []
    for r in cells:
        parts = [clip(c, w).rjust(w) if numeric[i] else clip(c, w).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append("  ".join(parts).rstrip())
    return out


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def _accuracy(value: Any) -> str:
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return ""


def _when(iso: Any, year: bool = True) -> str:
    """``2026-12-01T07:31:31+00:00`` -> ``2026-12-01 07:31`` (times are UTC)."""
    text = str(iso).replace("T", " ")[:16]
    return text if year else text[5:]


def log_lines(versions: pd.DataFrame, count_columns: Sequence[str]) -> list[str]:
    """One line per version: when, counts per split, the scores, what made it."""
    if not len(versions):
        return ["no versions yet"]
    counts = [c for c in count_columns if c in versions.columns]
    header = ["version", "when (UTC)", *counts, "val acc", "test acc", "what"]
    rows = [[f"v{r['version']}", _when(r["time"]), *[r[c] for c in counts],
             _accuracy(r.get("best_val_accuracy")), _accuracy(r.get("test_accuracy")),
             r["message"]] for _, r in versions.iterrows()]
    return table(header, rows)


# The image counts of a score row (sheetsync.inputs.score_row); the other fields (intervals,
# the val set's digest, the spread of repeats) are for the report and the sheet, not this table.
SCORE_COUNTS = ("train", "val", "test", "dropped", "derived")


def scores_lines(scores: pd.DataFrame) -> list[str]:
    """One line per training run, oldest first."""
    if not len(scores):
        return ["no score rows yet: run `sheetsync train`"]
    import pandas as pd

    # derived images: a column only once augment made some
    counts = [c for c in SCORE_COUNTS if c in scores.columns and (
        c != "derived" or pd.to_numeric(scores[c], errors="coerce").fillna(0).any())]
    header = ["version", "when (UTC)", *counts, "val acc", "test acc", "epochs", "best", "seed",
              "time"]
    rows = [[f"v{r['version']}", _when(r["time"], year=False), *[r[c] for c in counts],
             _accuracy(r["best_val_accuracy"]), _accuracy(r["test_accuracy"]), r["epochs"],
             r.get("best_epoch", ""), r["seed"], _seconds(r["seconds"])]
            for _, r in scores.iterrows()]
    return table(header, rows)


def _seconds(value: Any) -> str:
    from ._trainbars import duration

    try:
        return duration(float(value))
    except (TypeError, ValueError):
        return str(value)


def diff_lines(changes: pd.DataFrame, a: str, b: str,
               paths: Mapping[str, str] | None = None) -> list[str]:
    """One line per image: its path (in ``b``, from ``paths`` by id) and the fields that
    changed (``label i → ii``)."""
    if not len(changes):
        return [f"no differences between {a} and {b}"]
    rows: list[list[Any]] = []
    fields: dict[str, int] = {}
    for id_, group in changes.groupby("id", sort=False):
        rows.append([id_, _image_of(group, (paths or {}).get(str(id_), "")), _changed(group)])
        for f in group["field"]:
            key = f or group["change"].iloc[0]
            fields[key] = fields.get(key, 0) + 1
    summary = ", ".join(f"{n} {f}" for f, n in fields.items() if f != "path")
    head = f"{len(rows)} image(s) differ between {a} and {b}" + (f" ({summary})" if summary else "")
    return [head, *table(["id", "image", "changes"], rows)]


def _image_of(group: pd.DataFrame, known: str) -> str:
    moved = group[group["field"].isin(["path", ""])]
    if len(moved):
        r = moved.iloc[0]
        return str(r["after"] or r["before"])
    return known


def _changed(group: pd.DataFrame) -> str:
    change = group["change"].iloc[0]
    if change in ("added", "removed"):
        return change
    parts = []
    for _, r in group.iterrows():
        f = r["field"]
        if f == "path" and len(group) > 1:
            continue  # the move a label or split change made
        before, after = str(r["before"]), str(r["after"])
        if f == "hash":
            before, after = before[:8], after[:8]
        parts.append(f"{f} {clip(repr(before) if not before else before, 24)} → "
                     f"{clip(after if after else repr(after), 24)}")
    return "; ".join(parts)
