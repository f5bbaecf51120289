"""``sheetsync augment``: derived images the team can see and veto in the sheet.

Each derived image is a row of its own: ``source_id`` (the image it was made from) and
``transform`` (a spec, see :mod:`sheetsync._transforms`) say how to rebuild it byte for byte.
The planner here is pure; :func:`build_png` is the only image I/O, and
:func:`sheetsync.augment_run.augment_project` (``Project.augment``) writes the files through the
journal (staged first, then renamed into the class folders in one batch).

The class table (``[augment.transforms]`` in sheetsync.toml) says, per transform family, which
class an image of each class becomes: ``"all"`` keeps every class, a table maps classes
(classes missing from it are never given that transform)::

    [augment.transforms]
    hflip = { i = "i", ii = "ii", iii = "iii", iv = "vi", v = "v", vi = "iv", x = "x" }
    vflip = { i = "i", ii = "ii", iii = "iii", ix = "ix", x = "x" }
    rotate = "all"        # also shift, zoom, blur, noise
    compose = true        # Roman numerals: erase strokes (viii -> iii, ii, i, vii, vi, v)

With no table at all, only the families that keep every class (rotate, shift, zoom, blur,
noise) are used. ``sheetsync init`` writes :data:`ROMAN_TABLE` when the classes are Roman numerals.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._compose import glyphs, targets_of
from ._transforms import (
    CONTINUOUS,
    FAMILIES,
    FLIPS,
    apply_spec,
    parse_spec,
    sample_spec,
    variant_rng,
)
from .dataset import new_id, order_classes, safe_join
from .errors import AugmentError, ConfigError
from .journal import plan_moves

if TYPE_CHECKING:
    from .config import Config
    from .journal import Move

ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
ROMAN_TABLE: dict[str, Any] = {
    "hflip": {"i": "i", "ii": "ii", "iii": "iii", "iv": "vi", "v": "v", "vi": "iv", "x": "x"},
    "vflip": {"i": "i", "ii": "ii", "iii": "iii", "ix": "ix", "x": "x"},
    **{f: "all" for f in CONTINUOUS},
    "compose": True,
}
# Two training images this similar (cosine, fixed-model embeddings) are near-duplicates.
NEAR_DUPLICATE = 0.995


def default_table(classes: Sequence[str]) -> dict[str, Any]:
    """The table ``init`` writes: Roman numerals get theirs, other datasets none."""
    if not set(classes) <= set(ROMAN):
        return {}
    have = set(classes)
    return {f: ({k: v for k, v in m.items() if k in have and v in have} if isinstance(m, dict) else m)
            for f, m in ROMAN_TABLE.items()}


@dataclass(frozen=True)
class ClassTable:
    """family -> {class: class it becomes}; ``compose`` says whether strokes are recombined."""

    maps: dict[str, dict[str, str]]
    compose: bool

    def target(self, family: str, label: str) -> str | None:
        return self.maps.get(family, {}).get(label)


def class_table(raw: Mapping[str, Any], classes: Sequence[str]) -> ClassTable:
    """Validate ``[augment.transforms]``; an empty table means class-preserving families only."""
    if not raw:
        return ClassTable({f: {c: c for c in classes} for f in CONTINUOUS}, False)
    maps: dict[str, dict[str, str]] = {}
    compose = False
    for family, value in raw.items():
        if family not in FAMILIES:
            raise ConfigError(f"[augment.transforms] {family!r} is not a transform "
                              f"(one of: {', '.join(FAMILIES)})")
        if family == "compose":
            if not isinstance(value, bool):
                raise ConfigError("[augment.transforms] compose must be true or false")
            compose = value
        elif value == "all":
            maps[family] = {c: c for c in classes}
        elif isinstance(value, dict):
            bad = [f"{k} = {v!r}" for k, v in value.items() if k not in classes or v not in classes]
            if bad:
                raise ConfigError(f"[augment.transforms] {family}: {', '.join(bad)}: not classes "
                                  f"(one of: {', '.join(classes)})")
            maps[family] = {str(k): str(v) for k, v in value.items()}
        else:
            raise ConfigError(f"[augment.transforms] {family} must be \"all\" or a table "
                              f"{{class = class}}, not {value!r}")
    return ClassTable(maps, compose)


@dataclass(frozen=True)
class Variant:
    """One derived image to make: ``spec`` applied to ``source_id`` shows ``label``."""

    source_id: str
    spec: str
    label: str
    split: str

    @property
    def family(self) -> str:
        return parse_spec(self.spec)[0]


@dataclass(frozen=True)
class Priorities:
    """What the last trained model says about the sources (all optional)."""

    class_accuracy: dict[str, float] = field(default_factory=dict)
    weight: dict[str, float] = field(default_factory=dict)  # per source id; 0 = near-duplicate
    kind: str = ""  # the predictions they come from: "oos", "insample", or "" (none yet: all weigh the same)
    version: int | None = None  # the version those predictions were made for
    # Images never used as a source, and why (id -> reason; see :func:`unfit_sources`).
    excluded: dict[str, str] = field(default_factory=dict)
    # Why the model's priorities are not used ("" when they are, or when there is no model):
    # every class and every fit source then weighs the same.
    uniform: str = ""

    def notes(self) -> list[str]:
        """What the plan says about its sources, for people."""
        out = []
        if self.uniform:
            out.append(f"class-uniform sampling: {self.uniform}")
        if self.excluded:
            counts = pd.Series(list(self.excluded.values())).map(lambda r: r.split(":")[0])
            parts = ", ".join(f"{n} {why}" for why, n in counts.value_counts().sort_index().items())
            out.append(f"never a source: {len(self.excluded)} image(s) ({parts})")
        return out


@dataclass(frozen=True)
class Shortfall:
    """A class that got fewer derived images than its share (not enough sources)."""

    label: str
    planned: int
    wanted: int


@dataclass
class AugmentPlan:
    budget: int
    variants: list[Variant]
    priorities: Priorities
    short: list[Shortfall] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """Derived images planned per class (rows) and transform family (columns)."""
        if not self.variants:
            return pd.DataFrame()
        df = pd.DataFrame({"class": [v.label for v in self.variants],
                           "family": [v.family for v in self.variants]})
        out = pd.crosstab(df["class"], df["family"])
        out = out.loc[order_classes(out.index), [f for f in FAMILIES if f in out.columns]]
        out["total"] = out.sum(axis=1)
        out.loc["total"] = out.sum()
        return out


def check_settings(cap: int, max_side: int, seed: int, splits: Sequence[str],
                   known_splits: Sequence[str]) -> None:
    """ConfigError for ``[augment]`` values (or options) that cannot work."""
    for name, value, low in (("cap", cap, 0), ("max_side", max_side, 8), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"[augment] {name} must be a whole number >= {low}, not {value!r}")
    unknown = [s for s in splits if s not in known_splits]
    if not splits or unknown:
        raise ConfigError(f"[augment] splits {unknown or list(splits)}: must be some of "
                          f"{', '.join(known_splits)}")


def budget_for(manifest: pd.DataFrame, cap: int, budget: int | None, splits: Sequence[str]) -> int:
    """How many derived images fit: the cap minus the kept train+val images, or ``budget``."""
    kept = manifest[(manifest["action"] == "keep") & manifest["split"].isin(list(splits))]
    room = max(0, cap - len(kept))
    return room if budget is None else max(0, min(budget, room))


def existing_keys(manifest: pd.DataFrame) -> set[tuple[str, str]]:
    """(source_id, transform) of every derived row, kept or dropped: never made twice."""
    if "source_id" not in manifest.columns:
        return set()
    d = manifest[manifest["source_id"].astype(str) != ""]
    return set(zip(d["source_id"].astype(str), d["transform"].astype(str), strict=True))


def restrict(table: ClassTable, families: Sequence[str] | None) -> ClassTable:
    """The table with only ``families`` (for ablations); None keeps all."""
    if families is None:
        return table
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ConfigError(f"unknown transform famil(ies): {', '.join(sorted(unknown))} "
                          f"(one of: {', '.join(FAMILIES)})")
    return ClassTable({f: m for f, m in table.maps.items() if f in families},
                      table.compose and "compose" in families)


def plan_augment(
    manifest: pd.DataFrame,
    table: ClassTable,
    classes: Sequence[str],
    *,
    budget: int,
    seed: int,
    splits: Sequence[str] = ("train",),
    priorities: Priorities | None = None,
    spelled: Mapping[str, str] | None = None,
) -> AugmentPlan:
    """The derived images to make (pure). ``spelled``: id -> glyphs read (for composition)."""
    prio = priorities or Priorities()
    taken = existing_keys(manifest)
    sources = _sources(manifest, splits)
    per_class = _apportion(budget, {c: _class_weight(prio, c) for c in classes})
    variants: list[Variant] = []
    short: list[Shortfall] = []
    for c in classes:
        got = _plan_class(c, per_class[c], sources, table, prio, seed, taken, spelled or {})
        if len(got) < per_class[c]:
            short.append(Shortfall(c, len(got), per_class[c]))
        variants += got
    return AugmentPlan(budget, _sheet_order(variants), prio, short)


def _sources(manifest: pd.DataFrame, splits: Sequence[str]) -> pd.DataFrame:
    """Kept originals of the augmented splits (derived images are never sources)."""
    m = manifest
    original = m["source_id"].astype(str) == "" if "source_id" in m.columns else True
    out = m[(m["action"] == "keep") & m["split"].isin(list(splits)) & original]
    return out.sort_values("id", kind="stable")


def _class_weight(prio: Priorities, c: str) -> float:
    # Classes the model gets wrong more often get a bigger share of the budget.
    acc = prio.class_accuracy.get(c)
    return 1.0 if acc is None else 1.0 + 2.0 * (1.0 - acc)


def _apportion(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``total`` by ``weights`` (largest remainder; ties by key order: deterministic)."""
    keys = list(weights)
    w = np.array([max(0.0, weights[k]) for k in keys], dtype=np.float64)
    if total <= 0 or not len(keys) or w.sum() == 0:
        return dict.fromkeys(keys, 0)
    share = total * w / w.sum()
    out = np.floor(share).astype(int)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: total - out.sum()]] += 1
    return {k: int(n) for k, n in zip(keys, out, strict=True)}


def _families_for(label: str, target: str, table: ClassTable, spelled: str | None) -> list[str]:
    fams = []
    if table.compose and spelled == label and target in targets_of(label):
        fams.append("compose")
    fams += [f for f in (*FLIPS, *CONTINUOUS) if table.target(f, label) == target]
    return fams


def _plan_class(c: str, n: int, sources: pd.DataFrame, table: ClassTable, prio: Priorities,
                seed: int, taken: set[tuple[str, str]], spelled: Mapping[str, str]) -> list[Variant]:
    if n <= 0:
        return []
    options = {}
    for id_, label, split in zip(sources["id"], sources["label"], sources["split"], strict=True):
        fams = _families_for(str(label), c, table, spelled.get(str(id_)))
        if fams and prio.weight.get(str(id_), 1.0) > 0 and str(id_) not in prio.excluded:
            options[str(id_)] = (fams, str(split))
    quota = _quotas(n, {i: prio.weight.get(i, 1.0) for i in options},
                    {i: _capacity(i, c, f, taken) for i, (f, _) in options.items()})
    out = []
    for id_, q in quota.items():
        fams, split = options[id_]
        for spec in _specs(id_, c, fams, q, seed, taken):
            out.append(Variant(id_, spec, c, split))
    return out


def _capacity(source_id: str, target: str, fams: list[str], taken: set[tuple[str, str]]) -> int:
    """How many new variants a source still has for ``target`` (flips, composition: one each)."""
    if set(fams) & set(CONTINUOUS):
        return 10**6
    specs = [f"compose({target})" if f == "compose" else f for f in fams]
    return sum((source_id, s) not in taken for s in specs)


def _quotas(n: int, weight: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """``n`` split by weight, no source above its capacity (excess goes to the others)."""
    quota = dict.fromkeys(weight, 0)
    open_ = [k for k in weight if capacity[k] > 0]
    left = n
    while left > 0 and open_:
        share = _apportion(left, {k: weight[k] for k in open_})
        for k in open_:
            add = min(share[k], capacity[k] - quota[k])
            quota[k] += add
            left -= add
        open_ = [k for k in open_ if quota[k] < capacity[k]]
        if all(share[k] == 0 for k in open_):
            break
    return {k: q for k, q in quota.items() if q}


def _specs(source_id: str, target: str, fams: list[str], q: int, seed: int,
           taken: set[tuple[str, str]]) -> list[str]:
    """``q`` specs for one source, in rounds over its families (order rotated per source, so a
    small quota still spreads over every family); flips and composition have one variant."""
    start = zlib.crc32(source_id.encode()) % len(fams)
    order = fams[start:] + fams[:start]
    out: list[str] = []
    k = 0
    while len(out) < q and k < 1000:
        for f in order:
            if f in CONTINUOUS:
                spec = sample_spec(f, variant_rng(seed, source_id, f, k))
            elif k == 0:
                # Composition records the class it should show: the spec alone rebuilds it.
                spec = f"compose({target})" if f == "compose" else f
            else:
                continue
            if len(out) < q and (source_id, spec) not in taken:
                out.append(spec)
        if not set(order) & set(CONTINUOUS):
            break
        k += 1
    return out


def _sheet_order(variants: list[Variant]) -> list[Variant]:
    # Composed images need a human eye most: they come first among the derived rows.
    return sorted(variants, key=lambda v: (v.family != "compose", v.label, v.source_id, v.spec))


def derived_name(source_id: str, spec: str) -> str:
    family = parse_spec(spec)[0]
    return f"aug-{source_id}-{family}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}.png"


def derived_path(variant: Variant) -> str:
    return PurePosixPath(variant.split, variant.label,
                         derived_name(variant.source_id, variant.spec)).as_posix()


def build_png(source_pixels: np.ndarray, spec: str) -> bytes:
    """The PNG bytes of a derived image: same pixels and spec, same bytes."""
    from PIL import Image

    out = apply_spec(source_pixels, spec)
    buf = io.BytesIO()
    # Level 1: ~3x faster to write than the default, files a little bigger; still lossless.
    Image.fromarray(out).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def load_source(path: Any, max_side: int) -> np.ndarray:
    """Pixels of a source image, shrunk so its longer side is at most ``max_side``."""
    from PIL import Image

    with Image.open(path) as opened:
        opened.load()
        img: Image.Image = opened
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        scale = max_side / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(img, dtype=np.uint8)


# ---- priorities from the last model ------------------------------------------------------------

def unfit_sources(signals: pd.DataFrame, unreadable: Sequence[str] = (), *,
                  model_doubts: bool = True) -> dict[str, str]:
    """Images that must not be copied into training (id -> why): blank, unreadable, the same
    picture under another label, a row with a suggestion (a relabel or a drop?, also where
    the sheet withholds it because the predictions are in-sample or stale) or a label
    cleanlab flags. A derived image would multiply whatever is wrong with them. ``signals``:
    push's review signals, index = id, the suggestions as the review made them; below the
    "too weak" line as the sheet shows them (sheetsync._reviewsheet.gated_suggestions), with
    ``model_doubts=False``, which keeps only what the pixels say (blank, unreadable, a copy
    under another label, a picture with no numeral)."""
    def col(name: str, default: object) -> pd.Series:
        return signals[name] if name in signals.columns else pd.Series(default, index=signals.index)

    out: dict[str, str] = {}
    suggestion = col("suggestion", "").fillna("").astype(str)
    # A "none: …" cell says why the model gives no advice, on every row: not a doubt.
    suggestion = suggestion.where(~suggestion.str.startswith("none:"), "")
    suspected = col("suspected", "").fillna("").astype(str)
    if not model_doubts:
        # What is left of the suggestions then comes from the pixels (a drop? of a blank or
        # dotted picture); the model's doubts are noise.
        suspected = pd.Series("", index=suspected.index)
    for i in suspected[suspected != ""].index:
        out[str(i)] = f"cleanlab flag: suspected {suspected[i]}"
    for i in suggestion[suggestion != ""].index:
        out[str(i)] = f"suggestion: {suggestion[i]}"
    for i in col("duplicate_conflict", False).fillna(False).astype(bool).loc[lambda s: s].index:
        out[str(i)] = "copy under another label"
    for i in col("blank", False).fillna(False).astype(bool).loc[lambda s: s].index:
        out[str(i)] = "blank"
    for i in unreadable:
        out[str(i)] = "unreadable"
    return out


def priorities_from(manifest: pd.DataFrame, classes: Sequence[str], probs: pd.DataFrame,
                    distance: pd.DataFrame | None, embeddings: pd.DataFrame | None,
                    kind: str, version: int) -> Priorities:
    """Class accuracy on val; per source: near the boundary or far out weighs more, duplicates 0."""
    m = manifest.set_index("id", drop=False)
    ids = m.index.intersection(probs.index)
    labels = m.loc[ids, "label"].astype(str)
    p = probs.loc[ids, list(classes)].to_numpy(dtype=np.float64)
    col = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    own = p[np.arange(len(ids)), col]
    other = np.where(np.eye(len(classes), dtype=bool)[col], -np.inf, p).max(axis=1)
    margin = own - other
    val = (m.loc[ids, "split"] == "val").to_numpy()
    pred = np.asarray(classes)[p.argmax(axis=1)]
    acc = {c: float((pred[val & (labels == c).to_numpy()] == c).mean())
           for c in classes if (val & (labels == c).to_numpy()).any()}
    # Near the decision boundary (|margin| small): up to twice the weight.
    weight = 1.0 + (1.0 - np.abs(margin))
    if distance is not None:
        d = distance.reindex(ids)[list(classes)].to_numpy(dtype=np.float64)[np.arange(len(ids)), col]
        typical = pd.Series(d).groupby(labels.to_numpy()).transform("median").to_numpy()
        # Far from the class centre: up to one more.
        weight += np.clip(np.nan_to_num(d / np.maximum(typical, 1e-9) - 1.0), 0.0, 1.0)
    out = dict(zip(map(str, ids), weight.round(4).tolist(), strict=True))
    for id_ in near_duplicates(manifest, embeddings):
        out[id_] = 0.0
    return Priorities(acc, out, kind, version)


def near_duplicates(manifest: pd.DataFrame, embeddings: pd.DataFrame | None,
                    threshold: float = NEAR_DUPLICATE) -> list[str]:
    """The later id of each same-class training pair with cosine similarity above ``threshold``."""
    if embeddings is None or not len(embeddings):
        return []
    train = manifest[(manifest["split"] == "train") & (manifest["action"] == "keep")]
    out: list[str] = []
    for _, group in train.groupby("label"):
        ids = sorted(set(group["id"].astype(str)) & set(embeddings.index))
        e = embeddings.loc[ids].to_numpy(dtype=np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        sim = np.triu(e @ e.T, k=1)
        later = np.nonzero((sim > threshold).any(axis=0))[0]
        out += [ids[j] for j in later]
    return out


# ---- derived rows follow their source on pull -------------------------------------------------

@dataclass(frozen=True)
class Followed:
    """A derived row that followed its edited source in a pull; ``note``: what its note cell
    now says about it (the sheet shows it to the team)."""

    id: str
    source_id: str
    transform: str
    action: str  # the derived row's action and label now
    label: str
    note: str


def follow_sources(before: pd.DataFrame, merged: pd.DataFrame, edited: Sequence[str],
                   table: ClassTable) -> tuple[pd.DataFrame, list[Followed]]:
    """Derived rows of relabelled or dropped sources follow them (pure), and which did.

    A derived row people edited themselves in the same pull keeps their edit.
    """
    if "source_id" not in merged.columns:
        return merged, []
    out = merged.set_index("id", drop=False)
    old = before.set_index("id")
    human = set(edited)
    said: list[Followed] = []
    derived = out[(out["source_id"].astype(str) != "") & ~out.index.isin(list(human))]
    for id_, src, spec in zip(derived.index, derived["source_id"], derived["transform"], strict=True):
        if src not in out.index or src not in old.index or src not in human:
            continue
        now, was = out.loc[src], old.loc[src]
        why = _follow(now, was, str(spec), table, str(out.at[id_, "label"]))
        if why is None:
            continue
        action, label, text = why
        if action == out.at[id_, "action"] and label == out.at[id_, "label"]:
            continue
        out.at[id_, "action"], out.at[id_, "label"] = action, label
        note = str(out.at[id_, "note"])
        out.at[id_, "note"] = f"{note} [{text}]".strip()
        said.append(Followed(str(id_), str(src), str(spec), action, label, text))
    return out.reset_index(drop=True), said


def _follow(now: pd.Series, was: pd.Series, spec: str, table: ClassTable,
            label: str) -> tuple[str, str, str] | None:
    src = now["id"]
    if now["action"] == "drop" and was["action"] != "drop":
        return "drop", label, f"source {src} dropped: dropped too"
    if now["label"] == was["label"]:
        return None
    family = parse_spec(spec)[0]
    if family == "compose":
        # The strokes were cut for the old class; they mean nothing for the new one.
        return "drop", label, f"source {src} relabelled {was['label']}→{now['label']}: dropped"
    target = table.target(family, str(now["label"]))
    if target is None:
        return "drop", label, (f"source {src} relabelled {was['label']}→{now['label']}: "
                               f"{family} does not keep {now['label']}, dropped")
    return "keep" if now["action"] == "keep" else "drop", target, (
        f"source {src} relabelled {was['label']}→{now['label']}: now {target}")


def derived_last(order: Sequence[str], manifest: pd.DataFrame) -> list[str]:
    """Review order with derived rows after the originals, composed ones first among them."""
    if "source_id" not in manifest.columns:
        return list(order)
    m = manifest.set_index("id")
    src = m["source_id"].astype(str).reindex(list(order)).fillna("")
    spec = m["transform"].astype(str).reindex(list(order)).fillna("")
    originals = [i for i in order if src[i] == ""]
    rank = {i: k for k, i in enumerate(originals)}
    derived = [i for i in order if src[i] != ""]
    derived.sort(key=lambda i: (not spec[i].startswith("compose"), rank.get(src[i], len(rank)), spec[i]))
    return originals + derived


# ---- making the files --------------------------------------------------------------------------

NEW_FILES = "new"  # under the journal's staging folder: outside the tree until the batch commits


@dataclass(frozen=True)
class Unbuilt:
    """A derived image augment could not make: ``reason`` "source_gone" or "bytes_differ" (a
    lost file to rebuild), or "unreadable" (``detail``: the error, naming the file)."""

    source_id: str
    transform: str
    reason: str
    id: str = ""  # the derived id, for a lost one to rebuild
    detail: str = ""


@dataclass(frozen=True)
class NewFile:
    """A derived image staged under the journal's staging folder, and its manifest row."""

    staged: str  # relative to the root
    row: dict[str, str]


def lost_rows(history: Sequence[pd.DataFrame], manifest: pd.DataFrame) -> pd.DataFrame:
    """Derived rows of past versions whose file is gone from the current manifest (to rebuild)."""
    frames = [h[h["source_id"].astype(str) != ""] for h in history if "source_id" in h.columns]
    if not frames:
        return pd.DataFrame(columns=["id", "source_id", "transform"])
    seen = pd.concat(frames, ignore_index=True).drop_duplicates("id", keep="last")
    return seen[~seen["id"].isin(manifest["id"])].reset_index(drop=True)


def stage_variant(root: Any, pixels: np.ndarray, variant: Variant, taken_ids: set[str],
                  staging: Any) -> NewFile:
    """Write one derived image into ``staging`` (outside the tree) and return its row."""
    data = build_png(pixels, variant.spec)
    digest = hashlib.sha256(data).hexdigest()
    path = derived_path(variant)
    id_ = new_id(digest, path, taken_ids)
    _write(staging / f"{id_}.png", data)
    return NewFile(f"{staging.relative_to(root).as_posix()}/{id_}.png", {
        "id": id_, "hash": digest, "path": path, "split": variant.split, "label": variant.label,
        "action": "keep", "note": "", "source_id": variant.source_id, "transform": variant.spec})


def stage_rebuild(root: Any, pixels: np.ndarray, row: Mapping[str, Any],
                  staging: Any) -> NewFile | Unbuilt:
    """Rebuild a lost derived file; why not when the bytes would differ."""
    data = build_png(pixels, str(row["transform"]))
    if hashlib.sha256(data).hexdigest() != row["hash"]:
        return Unbuilt(str(row["source_id"]), str(row["transform"]), "bytes_differ", str(row["id"]))
    _write(staging / f"{row['id']}.png", data)
    keep = {k: str(v) for k, v in row.items()}
    return NewFile(f"{staging.relative_to(root).as_posix()}/{row['id']}.png", keep)


def _write(path: Any, data: bytes) -> None:
    import os

    with open(path, "wb") as f:
        f.write(data)
    fault = int(os.environ.get("SHEETSYNC_FAULT_AFTER_WRITES", "0") or 0)
    if fault and len(os.listdir(path.parent)) >= fault:
        # Fault injection for the crash tests: die as `kill -9` would, while staging.
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class PixelCache:
    """Source pixels by id, decoded (and shrunk) once per run."""

    def __init__(self, root: Any, paths: Mapping[str, str], max_side: int):
        self.root, self.paths, self.max_side = root, paths, max_side
        self._pixels: dict[str, np.ndarray] = {}

    def __contains__(self, id_: str) -> bool:
        return id_ in self.paths

    def get(self, id_: str) -> np.ndarray:
        if id_ not in self._pixels:
            from PIL import UnidentifiedImageError

            try:
                self._pixels[id_] = load_source(safe_join(self.root, self.paths[id_]), self.max_side)
            except (OSError, ValueError, UnidentifiedImageError) as e:
                raise AugmentError(f"{self.paths[id_]}: cannot read the image ({e})") from None
        return self._pixels[id_]


def spell_sources(manifest: pd.DataFrame, table: ClassTable, pixels: PixelCache,
                  splits: Sequence[str]) -> dict[str, str]:
    """id -> the glyphs read in each source that composition could use."""
    if not table.compose:
        return {}
    src = _sources(manifest, splits)
    out = {}
    for id_, label in zip(src["id"].astype(str), src["label"].astype(str), strict=True):
        if targets_of(label):
            try:
                out[id_] = "".join(k for k, _, _ in glyphs(pixels.get(id_)))
            except AugmentError:
                continue  # unreadable: stage_all names it when a variant needs it
    return out


def stage_all(root: Any, staging: Any, plan: AugmentPlan, lost: pd.DataFrame, pixels: PixelCache,
              taken_ids: set[str]) -> tuple[list[NewFile], list[Unbuilt]]:
    """Every planned and lost derived image, written under ``staging``; and those skipped."""
    import shutil

    shutil.rmtree(staging, ignore_errors=True)  # leftovers of a run killed while staging
    staging.mkdir(parents=True)
    taken = set(taken_ids) | set(lost["id"].astype(str)) if len(lost) else set(taken_ids)
    files: list[NewFile] = []
    skipped: list[Unbuilt] = []
    for row in (dict(zip(map(str, r), r.values(), strict=True)) for r in lost.to_dict("records")):
        if str(row["source_id"]) not in pixels:
            skipped.append(Unbuilt(str(row["source_id"]), str(row["transform"]), "source_gone",
                                   str(row["id"])))
            continue
        got = stage_rebuild(root, pixels.get(str(row["source_id"])), row, staging)
        (skipped.append(got) if isinstance(got, Unbuilt) else files.append(got))
    for v in plan.variants:
        try:
            files.append(stage_variant(root, pixels.get(v.source_id), v, taken, staging))
        except AugmentError as e:
            skipped.append(Unbuilt(v.source_id, v.spec, "unreadable", detail=str(e)))
    return files, skipped


def clean_staging(staging: Any) -> None:
    """Remove the (now empty) staging folders."""
    for folder in (staging / NEW_FILES, staging):
        try:
            folder.rmdir()
        except OSError:
            pass


# ---- one run, for Project.augment ----------------------------------------------------------------

@dataclass
class Prepared:
    """What one ``augment`` run plans: the plan, the lost derived rows to rebuild, the pixels."""

    plan: AugmentPlan
    lost: pd.DataFrame
    pixels: PixelCache


def prepare(config: Config, manifest: pd.DataFrame, history: Sequence[pd.DataFrame], *,
            budget: int | None, seed: int | None, splits: Sequence[str] | None,
            families: Sequence[str] | None, priorities: Priorities | None) -> Prepared:
    """Check the settings and plan the run (reads the source pixels composition needs)."""
    cfg = config.augment
    seed = cfg.seed if seed is None else seed
    splits = list(splits or cfg.splits)
    check_settings(cfg.cap, cfg.max_side, seed, splits, config.splits)
    if budget is not None and budget < 0:
        raise ConfigError(f"--budget must be 0 or more, not {budget}")
    table = restrict(class_table(cfg.transforms, config.classes), families)
    lost = lost_rows(history, manifest)
    paths = dict(zip(manifest["id"].astype(str), manifest["path"].astype(str), strict=True))
    pixels = PixelCache(config.root, paths, cfg.max_side)
    room = budget_for(manifest, cfg.cap, budget, config.splits)
    if len(lost):
        room -= int(((lost["action"] == "keep") & lost["split"].isin(config.splits)).sum())
    plan = plan_augment(manifest, table, config.classes, budget=max(0, room), seed=seed,
                        splits=splits, priorities=priorities,
                        spelled=spell_sources(manifest, table, pixels, splits))
    return Prepared(plan, lost, pixels)


def plan_commit(manifest: pd.DataFrame, files: Sequence[NewFile],
                exists: Callable[[str], bool]) -> tuple[list[Move], pd.DataFrame]:
    """The moves from the staging folder to each file's place, and the manifest with the new
    rows (pure)."""
    # Derived paths are built from config names and hex ids: plain.
    moves = plan_moves([(f.row["id"], f.staged, f.row["path"], f.row["hash"]) for f in files],
                       list(manifest["path"]), exists=exists)
    dst = {m.id: m.dst for m in moves}
    rows = pd.DataFrame([{**f.row, "path": dst[f.row["id"]]} for f in files])
    return moves, pd.concat([manifest, rows], ignore_index=True).fillna("").astype(object)


def discard_staged(staging: Any) -> None:
    """Remove the new files of a run refused before its journal was written."""
    import shutil

    shutil.rmtree(staging / NEW_FILES, ignore_errors=True)
    clean_staging(staging)
