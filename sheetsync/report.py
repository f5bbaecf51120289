"""``sheetsync report``: the dataset in one self-contained HTML page.

The page opens offline (the Vega, Vega-Lite and vega-embed JavaScript and every thumbnail are
inlined) and holds:

* the embedding map: the fixed model's 256-d pooled features of the latest trained version,
  projected to 2-D with UMAP (seeded, cached per version), coloured by class, split, suggested
  action or issue score; hover a point for its thumbnail and id; drag a box to list the images
  inside it;
* split coverage: images per class and split, and whether the validation split covers the
  training data (:mod:`sheetsync._coverage`), with the regions it misses ringed on the map;
* a dataset summary (:mod:`sheetsync._summary`) with links to the rows;
* the confusion matrix of the latest trained version and per-class accuracy version by version;
* the score history with 95% bootstrap intervals, marking where the validation set changed.

Every statistic uses every image; at most ``max_points`` images are drawn on the map (a sample
stratified by split and class that keeps the flagged images), and the page says so. The map's
coordinates and cluster ids are also kept in the state folder (``StateStore.save_map``), and the
next ``push`` adds them to the sheet as ``map_x``, ``map_y`` and ``cluster``.

Usage::

    result = Project.open(".").report()          # results.ReportResult(path=..., coverage=...)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from . import _report_vega as charts
from ._confusion import confusion, per_class_accuracy
from ._coverage import Coverage, clusters_of, split_coverage
from ._quiet import quiet_tensorflow
from ._reviewsheet import ModelInfo, gated_suggestions, model_text, uncounted
from ._summary import Finding, summarise
from .dataset import safe_join
from .errors import ReportError
from .inputs import items_of, judged_current, model_behind, review_inputs, with_map
from .results import ReportResult

if TYPE_CHECKING:  # pragma: no cover
    from .project import Project
    from .store import StateStore
    from .versions import VersionInfo

INSTALL_HINT = "the report needs its optional extra: pip install 'sheetsync[report]'"
MAX_POINTS = 5000
THUMB = 40
ROWS_SHOWN = 200  # rows listed per summary line; the sheet holds them all
UMAP_FIT_MAX = 20000  # above this UMAP is fitted on a sample and the rest is transformed
UMAP_PARAMS = {"n_neighbors": 15, "min_dist": 0.1, "metric": "euclidean"}


@dataclass
class ReportInputs:
    """Everything the page is made of; :func:`gather` reads it from a project."""

    classes: list[str]
    version: int
    items: pd.DataFrame  # id, split, label, action, path, file (one row per mapped image)
    embeddings: np.ndarray  # rows in items order
    signals: pd.DataFrame  # review signals, index = id
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    versions: list[dict[str, Any]] = field(default_factory=list)
    per_version: dict[int, dict[str, pd.DataFrame]] = field(default_factory=dict)
    title: str = "sheetsync report"
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    # The model behind the predictions, as the sheet's info line says it (None: not known).
    model: ModelInfo | None = None


# ---------------------------------------------------------------------------------------------
# The extra


def require_extra() -> None:
    """Raise ReportError with the one-line install hint when the report's extra is missing."""
    import importlib.util

    missing = [m for m in ("umap", "altair", "vl_convert") if importlib.util.find_spec(m) is None]
    if missing:
        raise ReportError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


# ---------------------------------------------------------------------------------------------
# Reading a project


def gather(project: Project, manifest: pd.DataFrame, info: VersionInfo) -> ReportInputs:
    """The inputs of the page for the latest trained version of ``project``."""
    store = project.store
    version = store.trained_version(info.version)
    if version is None:
        raise ReportError("nothing trained yet: run `sheetsync train` first")
    emb_ids, all_embeddings = _read_embeddings(store.embeddings_path(version))
    vmanifest = project.versions.load(version)
    classes = list(project.config.classes)
    items = items_of(vmanifest, project.config.root).assign(
        path=vmanifest["path"].astype(str).to_numpy())
    items = _current_files(project.config.root, items, manifest)
    pos = {i: k for k, i in enumerate(emb_ids)}
    items = items[items["id"].isin(pos)].reset_index(drop=True)
    embeddings = all_embeddings[[pos[i] for i in items["id"]]]
    # The mapped images (readable when trained), where they are now. The predictions are
    # push's (the freshest for the current data, predict's out-of-sample ones first), so the
    # page and the sheet say the same model line and the same suggestion for each row.
    stored = store.latest_predictions(info.version)
    judged = project.versions.load(stored.version) if stored is not None else None
    current = judged_current(stored, judged, manifest, info.version)
    signals, source = review_inputs(items.drop(columns="path"), classes, stored, current,
                                    oos_dir=store.oos_dir)
    model = model_behind(stored, manifest, current, project.scores.read(), store.oos_dir)
    signals = gated_suggestions(signals, model)
    if source.kind is not None:
        signals = with_map(signals, store.latest_map(version))
    notes = [f"embeddings: v{version}; model: {model_text(model)}"]
    if version != info.version:
        notes.append(f"the data is now {info.name}; the map shows v{version}, the latest trained "
                     f"version (run `sheetsync train` for a map of {info.name})")
    return ReportInputs(
        classes=classes, version=version, items=items,
        embeddings=embeddings, signals=signals, scores=project.scores.read(),
        versions=[dict(v.__dict__) for v in project.versions.list()],
        per_version=_per_version(project), title=f"sheetsync report: {project.config.root.name}",
        seed=project.config.train.seed, notes=notes, model=model)


def _read_embeddings(path: Path) -> tuple[list[str], np.ndarray]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(i) for i in z["ids"]], np.asarray(z["embeddings"], np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ReportError(f"cannot read the embeddings in {path} ({e}): run `sheetsync train` "
                          "again") from None


def _current_files(root: Path, items: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Thumbnails come from where the images are now (a pull may have moved them since)."""
    now = dict(zip(manifest["id"].astype(str), manifest["path"].astype(str), strict=True))
    files = [str(safe_join(root, now.get(i, p)))
             for i, p in zip(items["id"], items["path"], strict=True)]
    return items.assign(file=files)


def _per_version(project: Project) -> dict[int, dict[str, pd.DataFrame]]:
    """For every trained version: labels and predictions of its val images (and of the test set)."""
    out: dict[int, dict[str, pd.DataFrame]] = {}
    classes = np.asarray(project.config.classes)
    for info in project.versions.list():
        v = info.version
        probs = project.store.read_predictions(v, "insample")
        if probs is None:
            continue
        m = project.versions.load(v)
        val = m[(m["split"] == "val") & (m["action"] == "keep") & m["id"].isin(probs.index)]
        pred = classes[probs.loc[val["id"], list(classes)].to_numpy().argmax(axis=1)]
        sets = {"val": pd.DataFrame({"label": val["label"].to_numpy(), "predicted": pred})}
        test = project.store.read_test_predictions(v)
        if test is not None:
            sets["test"] = test
        out[v] = sets
    return out


# ---------------------------------------------------------------------------------------------
# The map


def umap_coords(embeddings: np.ndarray, seed: int, cache_dir: Path | None = None,
                fit_max: int = UMAP_FIT_MAX) -> np.ndarray:
    """2-D UMAP of ``embeddings`` (seeded); cached by content under ``cache_dir``."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    cache = _umap_cache(x, seed, cache_dir, fit_max) if cache_dir is not None else None
    if cache is not None and cache.exists():
        return np.load(cache, allow_pickle=False)
    coords = _umap(x, seed, fit_max)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npy")
        np.save(tmp, coords, allow_pickle=False)
        os.replace(tmp, cache)
    return coords


def _umap_cache(embeddings: np.ndarray, seed: int, cache_dir: Path,
                fit_max: int = UMAP_FIT_MAX) -> Path:
    """Where the map of these embeddings is cached (keyed by their content and the settings)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    key = hashlib.sha256(x.tobytes() + json.dumps([seed, fit_max, UMAP_PARAMS]).encode())
    return cache_dir / f"umap-{key.hexdigest()[:16]}.npy"


def _umap(x: np.ndarray, seed: int, fit_max: int) -> np.ndarray:
    n = len(x)
    if n < 4:  # too few for a neighbour graph: lay them on a line
        return np.c_[np.arange(n, dtype=np.float32), np.zeros(n, np.float32)]
    # umap imports TensorFlow (for its parametric variant): without its start-up lines.
    quiet_tensorflow()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", numba notices
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed, n_jobs=1,
                            **{**UMAP_PARAMS, "n_neighbors": min(15, n - 1)})
        if n <= fit_max:
            return np.asarray(reducer.fit_transform(x), np.float32)
        fit = np.sort(np.random.default_rng(seed).choice(n, fit_max, replace=False))
        reducer.fit(x[fit])
        coords = np.asarray(reducer.transform(x), np.float32)
        coords[fit] = reducer.embedding_
        return coords


def map_table(ids: list[str], coords: np.ndarray, clusters: np.ndarray) -> pd.DataFrame:
    """id, map_x, map_y, cluster: the sheet's map columns (StateStore.save_map keeps them)."""
    return pd.DataFrame({"id": ids, "map_x": np.round(coords[:, 0], 3),
                         "map_y": np.round(coords[:, 1], 3), "cluster": clusters.astype(int)})


# ---------------------------------------------------------------------------------------------
# Building the page


@dataclass(frozen=True)
class ReportStep:
    """A long step of the report about to start (the command line shows it as progress)."""

    step: Literal["map", "thumbnails", "page"]
    images: int
    cached: bool = False  # "map": the coordinates come from the cache (no UMAP fit)


def report(project: Project, *, out: Path | None = None, max_points: int | None = None,
           on_step: Callable[[ReportStep], None] | None = None) -> ReportResult:
    """`sheetsync report` (``Project.report``): the page of :func:`build_report` under the
    project's lock; ``on_step`` hears of each long step (:class:`ReportStep`)."""
    require_extra()  # before the lock and the scan: a missing extra is a one-line answer
    with project.locked():
        manifest, info, _ = project.refresh()
        result = build_report(project, manifest, info, out=out,
                              max_points=max_points or MAX_POINTS, on_step=on_step)
        result.recovered, result.skipped = project.recovered, project.skipped
        return result


def build_report(project: Project, manifest: pd.DataFrame, info: VersionInfo, *,
                 out: Path | None = None, max_points: int = MAX_POINTS,
                 on_step: Callable[[ReportStep], None] | None = None) -> ReportResult:
    """Gather, compute and write the page for ``project`` (the caller holds its lock)."""
    require_extra()
    inputs = gather(project, manifest, info)
    out = Path(out) if out is not None else project.config.project_dir / "sheetsync-report.html"
    return write_report(inputs, out, max_points=max_points, store=project.store, on_step=on_step)


def write_report(inputs: ReportInputs, out: Path, *, max_points: int = MAX_POINTS,
                 store: StateStore | None = None,
                 on_step: Callable[[ReportStep], None] | None = None) -> ReportResult:
    """Compute the map and the checks for ``inputs`` and write the page to ``out``; with a
    ``store``, UMAP is cached there and the map columns are kept for the next push.
    ``on_step`` hears of each long step as it starts."""
    say = on_step or (lambda step: None)
    start = time.perf_counter()
    cache = store.report_cache if store is not None else None
    say(ReportStep("map", len(inputs.embeddings),
                   cached=cache is not None and _umap_cache(inputs.embeddings, inputs.seed, cache).exists()))
    coords = umap_coords(inputs.embeddings, inputs.seed, cache)
    clusters = clusters_of(coords, seed=inputs.seed)
    items = inputs.items
    is_val = (items["split"] == "val").to_numpy()
    in_play = ((items["action"] == "keep") & items["split"].isin(["train", "val"])).to_numpy()
    coverage = split_coverage(inputs.embeddings[in_play], coords[in_play], is_val[in_play],
                              clusters[in_play], items["label"].to_numpy()[in_play], inputs.seed)
    weak = inputs.model.weak if inputs.model is not None else ""
    if weak:
        # A near-chance model's embedding space says nothing about coverage: no verdict, no rings.
        coverage = dataclasses.replace(coverage, withheld=weak, gaps=[])
    map_csv = (store.save_map(inputs.version, map_table(list(items["id"]), coords, clusters))
               if store is not None else None)
    points = _points(inputs, coords, clusters)
    shown = sample_points(points, max_points, inputs.seed)
    say(ReportStep("thumbnails", len(shown)))
    unreadable = _thumbnails(shown)
    untold = uncounted(inputs.model) if inputs.model is not None else ""
    findings = summarise(items, inputs.signals, unreadable, weak=bool(weak), uncounted=untold)
    say(ReportStep("page", len(points)))
    page = render_page(inputs, shown, len(points), coverage, findings, coords, clusters)
    _write_atomic(out, page)
    return ReportResult(out, inputs.version, len(points), len(shown), coverage, findings,
                        time.perf_counter() - start, out.stat().st_size, map_csv,
                        uncounted=untold, weak=bool(weak))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def suggestion(sig: pd.DataFrame) -> pd.Series:
    """The sheet's ``suggestion`` cell of each image (empty where the sheet's is empty)."""
    if "suggestion" not in sig.columns:
        return pd.Series("", index=sig.index, dtype=object)
    return sig["suggestion"].fillna("").astype(str)


def suggested(cells: pd.Series) -> pd.Series:
    """The map's colour group of each ``suggestion`` cell: relabel, drop?, none (the model
    cannot support one: the cell says why) or no suggestion (an empty cell)."""
    out = pd.Series("no suggestion", index=cells.index, dtype=object)
    out[cells.str.startswith("relabel").to_numpy()] = "relabel"
    out[(cells == "drop?").to_numpy()] = "drop?"
    out[cells.str.startswith("none:").to_numpy()] = "none: model cannot support one"
    return out


def _issue_band(score: pd.Series) -> pd.Series:
    s = pd.to_numeric(score, errors="coerce")
    bands = pd.cut(s, [-0.01, 0.25, 0.5, 0.75, 1.01],
                   labels=["0-0.25", "0.25-0.5", "0.5-0.75", "0.75-1"])
    return bands.astype(object).where(s.notna(), "not scored")


def _points(inputs: ReportInputs, coords: np.ndarray, clusters: np.ndarray) -> pd.DataFrame:
    it = inputs.items
    sig = inputs.signals.reindex(it["id"].astype(str))
    return pd.DataFrame({
        "id": it["id"].astype(str).to_numpy(), "map_x": np.round(coords[:, 0], 3),
        "map_y": np.round(coords[:, 1], 3), "cluster": clusters.astype(int),
        "label": it["label"].astype(str).to_numpy(), "split": it["split"].astype(str).to_numpy(),
        "action": it["action"].astype(str).to_numpy(),
        "predicted": sig["predicted"].fillna("").astype(str).to_numpy(),
        "issue_score": pd.to_numeric(sig["issue_score"], errors="coerce").round(3).to_numpy(),
        "suggestion": suggestion(sig).to_numpy(), "suggested": suggested(suggestion(sig)).to_numpy(),
        "issue_band": _issue_band(sig["issue_score"]).to_numpy(),
        "path": it["path"].astype(str).to_numpy(), "file": it["file"].astype(str).to_numpy(),
    })


def sample_points(points: pd.DataFrame, max_points: int, seed: int) -> pd.DataFrame:
    """All points when they fit; else every point with a suggestion (up to a quarter of the
    budget) and
    a random sample of the rest stratified by split and class, seeded."""
    if len(points) <= max_points:
        return points.reset_index(drop=True)
    cells = points["suggestion"].fillna("").astype(str)
    flagged = points[(cells != "") & ~cells.str.startswith("none:")]  # "none: …": no advice
    flagged = flagged.sample(min(len(flagged), max_points // 4), random_state=seed)
    rest = points.drop(flagged.index)
    frac = (max_points - len(flagged)) / len(rest)
    picked = rest.groupby(["split", "label"], group_keys=False).sample(frac=frac, random_state=seed)
    return pd.concat([flagged, picked]).sort_index().reset_index(drop=True)


def thumbnail_uri(path: str, size: int = THUMB) -> str | None:
    """A small PNG of the image as a data: URI; None when the file cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert("L" if opened.mode in ("L", "1", "P", "LA") else "RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnails(points: pd.DataFrame) -> list[str]:
    """Adds the ``image`` column in place; returns the ids whose file could not be read."""
    uris = [thumbnail_uri(f) for f in points["file"]]
    points["image"] = [u or "" for u in uris]
    return [i for i, u in zip(points["id"], uris, strict=True) if u is None]


# ---------------------------------------------------------------------------------------------
# Tables behind the charts


def counts_frame(items: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    keep = items[items["action"] == "keep"]
    table = pd.crosstab(keep["label"], keep["split"]).reindex(index=classes, fill_value=0)
    long = table.reset_index().melt(id_vars="label", var_name="split", value_name="images")
    return long.astype({"images": int})


def confusion_frame(sets: dict[str, pd.DataFrame], which: str, classes: list[str]) -> pd.DataFrame:
    df = sets[which]
    cm = confusion(df["label"], df["predicted"], classes)
    share = cm.div(cm.sum(axis=1).where(cm.sum(axis=1) > 0), axis=0).fillna(0)
    long = cm.stack().rename("images").reset_index()  # type: ignore[call-overload]
    long["share"] = share.stack().to_numpy().round(3)
    return long


def per_class_frame(per_version: dict[int, dict[str, pd.DataFrame]], classes: list[str]) -> pd.DataFrame:
    rows = []
    for v, sets in sorted(per_version.items()):
        for name, df in sets.items():
            cm = confusion(df["label"], df["predicted"], classes)
            acc = per_class_accuracy(cm)
            for c in classes:
                rows.append({"version": v, "label": c, "set": name, "accuracy": acc[c],
                             "images": int(cm.loc[c].to_numpy().sum())})
    return pd.DataFrame(rows).dropna(subset=["accuracy"]) if rows else pd.DataFrame()


def _trained_with(row: Mapping[Any, Any]) -> str:
    """How a score row's model was trained, e.g. "4 epochs, seed 123" ("" when unknown): a
    score is only comparable with one trained as long."""
    epochs = pd.to_numeric(row.get("epochs", ""), errors="coerce")
    seed = str(row.get("seed", "")).strip()
    parts = [] if pd.isna(epochs) else [f"{int(epochs)} epoch{'s' if int(epochs) != 1 else ''}"]
    repeats = pd.to_numeric(row.get("repeats", ""), errors="coerce")
    if not pd.isna(repeats) and repeats > 1:
        parts.append(f"{int(repeats)} seeds from {seed}" if seed else f"{int(repeats)} seeds")
    elif seed and seed != "nan":
        parts.append(f"seed {seed}")
    return ", ".join(parts)


def scores_frame(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(points with intervals, rows where the val set changed, sentences about comparability)."""
    rows, changed, said = [], [], []
    previous: tuple[str, str] | None = None
    for k, r in enumerate(scores.to_dict("records")):
        run = f"v{r.get('version', '?')} #{k + 1}"
        model = _trained_with(r)
        for name, col in (("val", "best_val_accuracy"), ("test", "test_accuracy")):
            acc = pd.to_numeric(r.get(col, ""), errors="coerce")
            if pd.isna(acc):
                continue
            low = pd.to_numeric(r.get(f"{name}_ci_low", ""), errors="coerce")
            high = pd.to_numeric(r.get(f"{name}_ci_high", ""), errors="coerce")
            rows.append({"run": f"{run} ({model})" if model else run, "order": k, "set": name,
                         "model": model, "accuracy": float(acc),
                         "low": float(acc if pd.isna(low) else low),
                         "high": float(acc if pd.isna(high) else high),
                         "interval": not pd.isna(low)})
        digest = str(r.get("val_set", ""))
        if digest and previous is not None and previous[1] and digest != previous[1]:
            changed.append({"run": f"{run} ({model})" if model else run})
            said.append(f"{previous[0]} and {run} were validated on different images: their "
                        "validation scores are not comparable (compare test scores).")
        previous = (run, digest)
    return pd.DataFrame(rows), pd.DataFrame(changed, columns=["run"]), said


# ---------------------------------------------------------------------------------------------
# HTML


def _js_bundle() -> str:
    import altair as alt
    import vl_convert

    major, minor = alt.SCHEMA_VERSION.lstrip("v").split(".")[:2]
    # The snippet makes the libraries globals for the page script, as the default one does.
    snippet = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"
    return str(vl_convert.javascript_bundle(snippet, vl_version=f"{major}.{minor}"))


def _esc(value: object) -> str:
    return html.escape(str(value))


def render_page(inputs: ReportInputs, shown: pd.DataFrame, n_total: int, coverage: Coverage,
                findings: list[Finding], coords: np.ndarray, clusters: np.ndarray) -> str:
    """The whole page as one string: specs as JSON, the Vega bundle and page script inlined."""
    gaps = pd.DataFrame([{"x": g.x, "y": g.y, "name": f"#{g.cluster}: no val"}
                         for g in coverage.gaps], columns=["x", "y", "name"])
    points, legends = charts.map_colours(shown.drop(columns=["file"]), inputs.classes)
    points = points.drop(columns=["issue_band", "action", "suggested"])  # only the colours are drawn
    specs: dict[str, Any] = {"map": charts.map_spec(points, gaps),
                             "counts": charts.counts_spec(counts_frame(inputs.items, inputs.classes))}
    latest = inputs.per_version.get(inputs.version, {})
    for name in ("val", "test"):
        if name in latest:
            specs[f"cm-{name}"] = charts.confusion_spec(
                confusion_frame(latest, name, inputs.classes),
                f"v{inputs.version}, {name} images ({len(latest[name])})")
    per_class = per_class_frame(inputs.per_version, inputs.classes)
    if len(per_class):
        specs["per-class"] = charts.per_class_spec(per_class)
    score_points, changed, comparability = scores_frame(inputs.scores)
    if len(score_points):
        specs["scores"] = charts.scores_spec(score_points, changed)
    map_data = next(iter(specs["map"].get("datasets", {})), "")
    body = _body(inputs, n_total, len(shown), coverage, findings, comparability, shown,
                 set(specs), score_points)
    payload = json.dumps({"specs": specs, "mapData": map_data, "legends": legends,
                          "titles": charts.COLOUR_BY}).replace("</", "<\\/")
    return PAGE.format(title=_esc(inputs.title), css=CSS, body=body, payload=payload,
                       bundle=_js_bundle().replace("</script", "<\\/script"), script=SCRIPT)


def _body(inputs: ReportInputs, n_total: int, n_shown: int, coverage: Coverage,
          findings: list[Finding], comparability: list[str], shown: pd.DataFrame,
          charts_present: set[str], score_points: pd.DataFrame) -> str:
    parts = [f"<h1>{_esc(inputs.title)}</h1>",
             "<p class=meta>" + "<br>".join(_esc(n) for n in inputs.notes) + "</p>"]
    sampling = (f"All {n_total:,} images are drawn." if n_shown == n_total else
                f"The map draws {n_shown:,} of {n_total:,} images: every flagged image (up to a "
                f"quarter of the points) and a random sample of the rest, stratified by split "
                f"and class (seed {inputs.seed}). Every statistic on this page uses all "
                f"{n_total:,} images.")
    verdict_class = "none" if coverage.withheld else "ok" if coverage.covers else "bad"
    weak = inputs.model.weak if inputs.model is not None else ""
    untold = uncounted(inputs.model) if inputs.model is not None else ""
    withheld = ("<p class='verdict none'>Likely label errors and outliers are not counted: the "
                f"model is too weak: {_esc(weak)}.</p>" if weak else
                f"<p class='verdict none'>Likely label errors are not counted: {_esc(untold)}"
                ".</p>" if untold else "")
    parts += [
        "<h2 id=map-section>Embedding map</h2>",
        f"<p>UMAP of the fixed model's 256-d pooled features (v{inputs.version}), seed "
        f"{inputs.seed}. Hover a point for its thumbnail; drag a box to list the images inside "
        f"it. {_esc(sampling)} Red rings: regions the validation split does not cover. The "
        "sheet gets the same coordinates as <code>map_x</code>, <code>map_y</code> and "
        "<code>cluster</code> after the next push.</p>",
        "<div class=row><div id=map></div><div id=map-legend></div><div id=selection-box><h3 id=selection-count>"
        "No selection: drag a box on the map</h3><div id=selection></div></div></div>",
        "<h2 id=coverage>Split coverage</h2>",
        f"<p class='verdict {verdict_class}'>{_esc(coverage.verdict)}</p>",
        _gaps_table(coverage),
        "<p class=meta>The embeddings come from the model trained on the train split, so train "
        "images may sit closer to their class than val images; that alone raises the AUC a "
        "little. Regions with (almost) no val images are the stronger evidence. All three "
        "checks use every kept train and val image.</p>",
        "<div id=counts></div>",
        "<h2 id=summary>Dataset summary</h2>", withheld, _summary_table(findings),
        "<h2 id=errors>Errors per class</h2><div class=row>",
        *(f"<div id={k}></div>" for k in ("cm-val", "cm-test") if k in charts_present),
        "</div>",
        "<h3>Per-class accuracy, version by version</h3>",
        "<div id=per-class></div>" if "per-class" in charts_present else "<p>No predictions yet.</p>",
        "<h2 id=score-history>Score history</h2>",
        "<p>Points: accuracy; bars: 95% bootstrap interval over the images scored (2,000 "
        "resamples). Overlapping intervals mean the difference may be noise.</p>",
        "<div class=row>" + ("<div id=scores></div>" if "scores" in charts_present else
                             "<p>No score rows yet.</p>") + _versions_table(inputs.versions) + "</div>",
        "".join(f"<p class=warn>{_esc(s)}</p>" for s in comparability),
        _no_interval_note(score_points),
        "<h2>Rows</h2>", _row_lists(findings, inputs.items, shown),
    ]
    return "\n".join(parts)


def _no_interval_note(score_points: pd.DataFrame) -> str:
    if not len(score_points) or score_points["interval"].all():
        return ""
    return ("<p class=meta>Score rows written before intervals were recorded are drawn as "
            "points without a bar.</p>")


def _gaps_table(coverage: Coverage) -> str:
    if not coverage.gaps:
        return ""
    rows = "".join(f"<tr><td>#{g.cluster}</td><td>{g.n_train}</td><td>{g.n_val}</td>"
                   f"<td>{g.expected_val:.0f}</td><td>{_esc(g.top_labels)}</td></tr>"
                   for g in coverage.gaps)
    return ("<table class=gaps><tr><th>region (sheet column <code>cluster</code>)</th><th>train</th>"
            "<th>val</th><th>val expected</th><th>commonest labels</th></tr>" + rows + "</table>")


def _summary_table(findings: list[Finding]) -> str:
    rows = "".join(
        f"<tr><td>{_esc(f.title)}</td><td class=num>"
        + (f"<a href='#rows-{f.key}'>{f.count}</a>" if f.ids else str(f.count))
        + f"</td><td>{_esc(f.detail)}</td><td>{_esc(f.sheet_hint)}</td></tr>" for f in findings)
    return ("<table class=summary id=summary-table><tr><th>issue</th><th>images</th><th>what</th>"
            "<th>in the sheet</th></tr>" + rows + "</table>")


def _row_lists(findings: list[Finding], items: pd.DataFrame, shown: pd.DataFrame) -> str:
    it = items.set_index(items["id"].astype(str))
    thumbs = dict(zip(shown["id"], shown["image"], strict=True))
    out = []
    for f in findings:
        if not f.ids:
            continue
        ids = f.ids[:ROWS_SHOWN]
        more = f" (the first {ROWS_SHOWN} of {len(f.ids)}; the sheet has them all)" if len(f.ids) > len(ids) else ""
        rows = []
        for i in ids:
            uri = thumbs.get(i) or thumbnail_uri(str(it.at[i, "file"])) or ""
            img = f"<img src='{uri}' alt=''>" if uri else ""
            link = Path(str(it.at[i, "file"])).resolve().as_uri()
            rows.append(f"<tr><td>{img}</td><td>{_esc(i)}</td><td>{_esc(it.at[i, 'split'])}</td>"
                        f"<td>{_esc(it.at[i, 'label'])}</td><td><a href='{_esc(link)}'>"
                        f"{_esc(it.at[i, 'path'])}</a></td></tr>")
        out.append(f"<details id='rows-{f.key}'><summary>{_esc(f.title)}: {len(f.ids)} image(s)"
                   f"{_esc(more)}</summary><table class=rows><tr><th></th><th>id</th><th>split</th>"
                   f"<th>label</th><th>path</th></tr>{''.join(rows)}</table></details>")
    return "\n".join(out)


def _versions_table(versions: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>v{v['version']}</td><td>{_esc(v['time'][:16].replace('T', ' '))}</td>"
        f"<td>{_esc(v['message'])}</td><td>{_esc(', '.join(f'{k} {n}' for k, n in v['counts'].items()))}</td></tr>"
        for v in versions)
    return ("<table class=versions><tr><th>version</th><th>time</th><th>what changed</th>"
            "<th>images</th></tr>" + rows + "</table>")


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:22px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:12px}.row{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
#selection-box{flex:1;min-width:280px;max-height:700px;overflow:auto}
#selection{display:flex;flex-wrap:wrap;gap:6px}
#selection figure{margin:0;width:64px;font-size:10px;text-align:center;word-break:break-all}
#selection img{width:48px;height:48px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
.verdict{font-size:16px;padding:10px 14px;border-radius:4px}.ok{background:#e7f6e7}.bad{background:#fdeaea}
.none{background:#eeeeee}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f5f5f5;text-align:left}.num{text-align:right}.warn{color:#a15c00}
table.rows img{width:40px;height:40px;object-fit:contain;image-rendering:pixelated}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
#map-legend{font-size:12px;min-width:120px}#map-legend div{margin:2px 0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px}
#vg-tooltip-element img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated}
"""

PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>{title}</title><style>{css}</style></head>
<body>
{body}
<script type=application/json id=payload>{payload}</script>
<script>{bundle}</script>
<script>{script}</script>
</body></html>
"""

# The page's own script: embed every chart, then list the brushed images beside the map.
SCRIPT = """
(function () {
  const payload = JSON.parse(document.getElementById('payload').textContent);
  const opts = {renderer: 'svg', actions: false};
  const points = (payload.specs.map.datasets || {})[payload.mapData] || [];
  const LIMIT = 300;
  function esc(s) { return String(s).replace(/[&<>"']/g, c => '&#' + c.charCodeAt(0) + ';'); }
  function show(range) {
    const box = document.getElementById('selection');
    const count = document.getElementById('selection-count');
    if (!range || !range.map_x || !range.map_y) {
      box.innerHTML = ''; count.textContent = 'No selection: drag a box on the map'; return;
    }
    const [x0, x1] = range.map_x.slice().sort((a, b) => a - b);
    const [y0, y1] = range.map_y.slice().sort((a, b) => a - b);
    const inside = points.filter(p => p.map_x >= x0 && p.map_x <= x1 && p.map_y >= y0 && p.map_y <= y1);
    count.textContent = inside.length + ' image(s) selected' +
      (inside.length > LIMIT ? ' (showing the first ' + LIMIT + ')' : '');
    box.innerHTML = inside.slice(0, LIMIT).map(p =>
      '<figure data-id="' + esc(p.id) + '"><img src="' + p.image + '" alt=""><figcaption>' +
      esc(p.id) + '<br>' + esc(p.label) + ' / ' + esc(p.split) + '</figcaption></figure>').join('');
  }
  function legend(key) {
    const rows = (payload.legends[key] || []).map(([name, colour]) =>
      '<div><span class=swatch style="background:' + colour + '"></span>' + esc(name) + '</div>');
    document.getElementById('map-legend').innerHTML =
      '<b>' + esc(payload.titles[key] || key) + '</b>' + rows.join('');
  }
  legend('label');
  const views = {};
  const jobs = Object.entries(payload.specs).map(([id, spec]) =>
    vegaEmbed('#' + id, spec, opts).then(r => { views[id] = r.view; }));
  Promise.all(jobs).then(() => {
    views.map.addSignalListener('brush', (name, value) => show(value));
    views.map.addSignalListener('colour_by', (name, value) => legend(value));
    window.sheetsyncReport = {views: views, ready: true};
  }).catch(err => { console.error(err); window.sheetsyncReport = {error: String(err)}; });
})();
"""
