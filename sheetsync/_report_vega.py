"""The report's charts as Vega-Lite specs (dicts), built with altair.

Each function takes a small tidy frame and returns a spec; :mod:`sheetsync.report` embeds them
in one HTML page with the Vega libraries inlined. altair is imported inside the functions: it is
part of the optional ``report`` extra.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLOUR_BY = {"label": "class", "split": "split", "suggested": "suggestion (as in the sheet)",
             "issue_band": "issue score"}
MAP_SIZE = 620


def _alt() -> Any:
    import altair as alt

    alt.data_transformers.disable_max_rows()  # sampling is decided (and stated) by the report
    return alt


# The sheet's suggestion cells in groups (sheetsync.report.suggested).
SUGGESTIONS = {"no suggestion": "#c7c7c7", "relabel": "#d62728", "drop?": "#111111",
               "none: model cannot support one": "#9ecae1"}
ISSUE_BANDS = {"0-0.25": "#fcbba1", "0.25-0.5": "#fb6a4a", "0.5-0.75": "#cb181d",
               "0.75-1": "#67000d", "not scored": "#bdbdbd"}
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2",
           "#ff9da6", "#9d755d", "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#7f7f7f"]
SPLIT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


def map_colours(points: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, dict[str, list[tuple[str, str]]]]:
    """A colour column per colouring (``c_label``, ``c_split``, ...) and the legend of each.

    Colours are chosen here rather than by Vega scales so that each colouring keeps its own
    palette (keep grey, issue bands light to dark red) on one layer of points."""
    splits = list(dict.fromkeys(sorted(points["split"].unique(), key=lambda v: (v != "train", v))))
    maps = {
        "label": {c: PALETTE[k % len(PALETTE)] for k, c in enumerate(classes)},
        "split": {v: SPLIT_COLOURS[k % len(SPLIT_COLOURS)] for k, v in enumerate(splits)},
        "suggested": SUGGESTIONS,
        "issue_band": ISSUE_BANDS,
    }
    out = points.copy()
    legends = {}
    for key, colours in maps.items():
        out[f"c_{key}"] = out[key].map(colours).fillna("#7f7f7f")
        present = set(out[key])
        legends[key] = [(name, colour) for name, colour in colours.items() if name in present]
    return out, legends


def map_spec(points: pd.DataFrame, gaps: pd.DataFrame) -> dict[str, Any]:
    """The embedding map: points coloured by a chosen field, thumbnail tooltips, a brush.

    ``points``: map_x, map_y, id, label, split, predicted, issue_score, suggestion, cluster,
    image (a data: URI) and the colour columns of :func:`map_colours`. ``gaps``: x, y, name
    (the regions val does not cover). The page draws the legend of the chosen colouring."""
    alt = _alt()
    colour_by = alt.param(name="colour_by", value="label", bind=alt.binding_select(
        options=list(COLOUR_BY), labels=list(COLOUR_BY.values()), name="colour by "))
    brush = alt.selection_interval(name="brush", encodings=["x", "y"])
    expr = " : ".join(f"colour_by == '{k}' ? datum.c_{k}" for k in list(COLOUR_BY)[:-1])
    expr += f" : datum.c_{list(COLOUR_BY)[-1]}"
    dots = alt.Chart(points).mark_circle(size=28, opacity=0.8).encode(
        x=alt.X("map_x:Q", title="UMAP 1", scale=alt.Scale(zero=False)),
        y=alt.Y("map_y:Q", title="UMAP 2", scale=alt.Scale(zero=False)),
        color=alt.Color("colour:N", scale=None),  # the colour columns hold the colours
        tooltip=[alt.Tooltip("image:N", title="image"), alt.Tooltip("id:N"),
                 alt.Tooltip("label:N"), alt.Tooltip("split:N"), alt.Tooltip("predicted:N"),
                 alt.Tooltip("issue_score:Q", format=".2f"), alt.Tooltip("suggestion:N"),
                 alt.Tooltip("cluster:N"), alt.Tooltip("path:N")],
    ).transform_calculate(colour=expr).add_params(colour_by, brush)
    layers = [dots]
    if len(gaps):
        ring = alt.Chart(gaps).mark_point(shape="circle", size=2500, filled=False, color="#d62728",
                                          strokeWidth=2.5, strokeDash=[6, 3])
        layers.append(ring.encode(x="x:Q", y="y:Q"))
        layers.append(alt.Chart(gaps).mark_text(color="#d62728", fontWeight="bold", dy=-32,
                                                fontSize=12).encode(x="x:Q", y="y:Q", text="name:N"))
    return alt.layer(*layers).properties(width=MAP_SIZE, height=MAP_SIZE).to_dict()


def counts_spec(counts: pd.DataFrame) -> dict[str, Any]:
    """Images per class and split (``counts``: label, split, images)."""
    alt = _alt()
    order = list(dict.fromkeys(counts["label"]))
    chart = alt.Chart(counts).mark_bar().encode(
        x=alt.X("label:N", sort=order, title="class"),
        xOffset="split:N",
        y=alt.Y("images:Q", title="images"),
        color=alt.Color("split:N"),
        tooltip=["label", "split", "images"],
    ).properties(width=420, height=220)
    return chart.to_dict()


def confusion_spec(cm: pd.DataFrame, title: str) -> dict[str, Any]:
    """A confusion-matrix heatmap (``cm``: label, predicted, images, share of the label's row)."""
    alt = _alt()
    order = list(dict.fromkeys(cm["label"]))
    base = alt.Chart(cm).encode(
        x=alt.X("predicted:N", sort=order, title="the model's class"),
        y=alt.Y("label:N", sort=order, title="label"),
    )
    share = alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share")
    cells = base.mark_rect(stroke="#eee").encode(
        color=alt.condition("datum.images == 0", alt.value("white"), share),  # empty cells blank
        tooltip=["label", "predicted", "images", alt.Tooltip("share:Q", format=".0%")])
    text = base.mark_text(fontSize=10).encode(
        text=alt.condition("datum.images > 0", "images:Q", alt.value("")),
        color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")))
    return (cells + text).properties(width=300, height=300, title=title).to_dict()


def per_class_spec(acc: pd.DataFrame) -> dict[str, Any]:
    """Per-class accuracy version by version (``acc``: version, label, set, accuracy, images)."""
    alt = _alt()
    order = list(dict.fromkeys(acc["label"]))
    chart = alt.Chart(acc).mark_line(point=True).encode(
        x=alt.X("version:O", title="dataset version"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("label:N", sort=order, title="class"),
        strokeDash=alt.StrokeDash("set:N"),
        tooltip=["version", "label", "set", alt.Tooltip("accuracy:Q", format=".2f"), "images"],
    ).properties(width=420, height=240)
    return chart.to_dict()


def scores_spec(scores: pd.DataFrame, changed: pd.DataFrame) -> dict[str, Any]:
    """Accuracy per score row with its bootstrap interval; marks where the val set changed.

    ``scores``: run, order, set, accuracy, low, high. ``changed``: run (rows whose validation set
    differs from the row before)."""
    alt = _alt()
    runs = list(dict.fromkeys(scores.sort_values("order")["run"]))
    x = alt.X("run:N", sort=runs, title="score row (dataset version #row, epochs, seed)")
    base = alt.Chart(scores).encode(x=x, xOffset="set:N", color=alt.Color("set:N"))
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("low:Q", title="accuracy (95% interval)",
                                                        scale=alt.Scale(domain=[0, 1])), y2="high:Q")
    dots = base.mark_point(filled=True, size=60).encode(
        y="accuracy:Q",
        tooltip=["run", "set", alt.Tooltip("model:N", title="trained"),
                 alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f")])
    layers = [bars, dots]
    if len(changed):
        marks = alt.Chart(changed).mark_rule(color="#999", strokeDash=[4, 4]).encode(x=x)
        label = alt.Chart(changed).mark_text(angle=270, align="left", dx=4, dy=-6, fontSize=10,
                                             color="#555").encode(
            x=x, y=alt.value(0), text=alt.value("val set changed"))
        layers += [marks, label]
    width = max(300, 70 * len(runs))
    return alt.layer(*layers).properties(width=width, height=260).to_dict()
