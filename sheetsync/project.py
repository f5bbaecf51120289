"""A sheetsync project: the dataset folder, its versions, the sheet and the model, in step.

This is the library behind every CLI command; each public method is one command::

    project = Project.init(Path("data"))       # writes sheetsync.toml, records v1
    project.train(epochs=3)                     # score row for v1
    project.push()                              # rows, most-likely-wrong first
    project.pull()                              # validated edits -> v2 + folders rearranged
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import journal as jr
from ._progress import Progress, tqdm_progress
from .config import CONFIG_NAME, Config
from .dataset import (
    HashCache,
    ScanResult,
    detect_layout,
    location,
    order_classes,
    safe_join,
    scan,
)
from .errors import (
    BackendError,
    ConfigError,
    DatasetError,
    JournalError,
    SheetsyncError,
    SheetValidationError,
    TrainingError,
    UnpulledEditsError,
)
from .rows import EDITABLE, build_table, extra_columns, layout
from .sheets import Backend, open_backend
from .sync import normalise_choice, plan_pull, unpulled_edits
from .versions import (
    ScoreHistory,
    VersionInfo,
    VersionStore,
    counts_of,
    diff_manifests,
    now_iso,
    read_csv_text,
    write_csv_atomic,
)


@dataclass
class Report:
    """What a command did, as lines for people; ``data`` holds the same for programs."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join(self.lines)


class Project:
    def __init__(self, config: Config, progress: Progress = tqdm_progress,
                 backend: Backend | None = None):
        self.config = config
        self.progress = progress
        self._backend = backend
        self.state = config.state_dir
        self.versions = VersionStore(self.state)
        self.scores = ScoreHistory(self.state)

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, project_dir: Path | str = ".", **kwargs: Any) -> Project:
        return cls(Config.load(Path(project_dir)), **kwargs)

    @classmethod
    def init(
        cls,
        data_root: Path | str,
        project_dir: Path | str = ".",
        *,
        backend: str = "local",
        classes: list[str] | None = None,
        splits: list[str] | None = None,
        test_dir: str | None = None,
        force: bool = False,
        **kwargs: Any,
    ) -> tuple[Project, Report]:
        project_dir = Path(project_dir).resolve()
        root = Path(data_root).resolve()
        if (project_dir / CONFIG_NAME).exists() and not force:
            raise ConfigError(f"{project_dir / CONFIG_NAME} exists already (use --force to redo it)")
        found_splits, found_classes, found_test = detect_layout(root)
        raw: dict[str, Any] = {
            "root": os.path.relpath(root, project_dir) if root.is_relative_to(project_dir) else str(root),
            "backend": backend,
            "classes": classes or found_classes,
            "splits": splits or found_splits,
        }
        test = test_dir if test_dir is not None else found_test
        if test:
            raw["test_dir"] = test
        from .augment import default_table

        raw["augment"] = {"transforms": default_table(raw["classes"])}
        config = Config.from_dict(raw, project_dir)
        missing = set(found_classes) - set(config.classes)
        if missing:
            raise ConfigError(f"folders {sorted(missing)} are not among --classes")
        project_dir.mkdir(parents=True, exist_ok=True)
        config.save()
        project = cls(config, **kwargs)
        with project._locked():
            manifest, info, result = project._refresh()
        report = Report([f"wrote {config.path}",
                         f"dataset {config.root}: {len(manifest)} images, classes "
                         f"{', '.join(config.classes)}, splits {', '.join(config.splits)}"
                         + (f", test folder {config.test_dir.name}" if config.test_dir else ""),
                         f"recorded {info.name}" if info else "no change"])
        return project, report

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = open_backend(self.config)
        return self._backend

    # ---- state -----------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One sheetsync command at a time per project; finishes interrupted moves first."""
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / "lock").open("w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SheetsyncError("another sheetsync command is running on this project") from None
            self.recovered = self._recover()
            yield

    def _new_report(self) -> Report:
        """A report that starts by saying what recovery did, if anything."""
        return Report(warnings=[self.recovered] if self.recovered else [])

    @property
    def _journal(self) -> jr.Journal:
        return jr.Journal(self.state / "journal.json", self.config.root)

    def _recover(self) -> str | None:
        """Complete (or, failing that, roll back) a move batch a crash interrupted."""
        journal = self._journal
        if not journal.pending:
            return None
        after = journal.after()
        try:
            jr.complete(journal)
        except JournalError as e:
            try:
                jr.roll_back(journal)
            except JournalError as again:
                # Neither way works: keep the journal so that nothing is forgotten.
                raise JournalError(f"an interrupted pull can be neither completed ({e}) nor "
                                   f"rolled back ({again}); see {journal.path}") from None
            self.versions.dir.joinpath(f"v{after['version']:04d}.pending.csv").unlink(missing_ok=True)
            journal.finish()
            return f"an interrupted pull was rolled back ({e}); pull again"
        self._after_moves(after)
        journal.finish()
        return f"completed an interrupted pull (v{after['version']})"

    def _after_moves(self, after: dict[str, Any]) -> VersionInfo:
        info = self.versions.commit(int(after["version"]), str(after["message"]))
        pending = Path(after["published"]) if after.get("published") else None
        if pending is not None and pending.exists():
            os.replace(pending, self.state / "published.csv")
        return info

    def _hash_cache(self) -> HashCache:
        return HashCache(self.state / "hashes.json")

    def _refresh(self) -> tuple[pd.DataFrame, VersionInfo | None, ScanResult]:
        """Scan the folders; record a version when they changed outside sheetsync."""
        latest = self.versions.latest()
        previous = self.versions.load(latest.version) if latest else None
        cache = self._hash_cache()
        result = scan(self.config.root, self.config.splits, self.config.classes, previous, cache,
                      progress=lambda items: self.progress(items, "scanning"))
        cache.save()
        info = latest
        if latest is None or result.changed:
            message = "init" if latest is None else f"scan: {result.summary()}"
            info = self.versions.record(result.manifest, message)
        return result.manifest, info, result

    def _published(self) -> pd.DataFrame | None:
        path = self.state / "published.csv"
        return read_csv_text(path) if path.exists() else None

    # ---- push ------------------------------------------------------------------------------

    def push(self, *, force: bool = False, order: str | None = None) -> Report:
        with self._locked():
            manifest, info, scanned = self._refresh()
            report = self._new_report()
            sheet = self.backend.read_table()
            published = self._published()
            edits = self._pending_edits(sheet, published)
            if edits and not force:
                raise UnpulledEditsError(
                    f"the sheet has {len(edits)} edit(s) that were never pulled, e.g.:\n  "
                    + "\n  ".join(edits[:10])
                    + "\nrun `sheetsync pull` first, or `sheetsync push --force` to overwrite "
                      "them (the sheet is backed up first)")
            if sheet is not None and len(sheet) and (edits or force):
                report.lines.append(f"backed up the sheet to {self._backup(sheet)}")
                copy = self.backup_workbook()
                if copy is not None:
                    report.lines.append(f"backed up the workbook to {copy}")
            signals, source = self._signals(manifest, info)
            ids = self._review_order(signals, manifest, order)
            table = build_table(manifest, signals, self._url_for, ids)
            self.backend.write_table(table, layout(self.config.classes, self.config.splits,
                                                   extra_columns(manifest)))
            self._save_published(table, info)
            report.lines.append(f"pushed {len(table)} rows of {info.name} to {self.backend.describe()}")
            report.lines.append(f"predictions: {source}")
            self._add_usage(report, wrote=True)
            report.data.update(rows=len(table), version=info.version, predictions=source)
            return report

    def _add_usage(self, report: Report, *, wrote: bool = False) -> None:
        # The workbook's usage line describes its last write; only an online backend counts
        # reads too, so for the workbook it is shown only after a write.
        if self.backend.name == "local" and not wrote:
            return
        usage = self.backend.usage()
        if usage:
            report.lines.append(f"sheet: {usage}")

    def _pending_edits(self, sheet: pd.DataFrame | None, published: pd.DataFrame | None) -> list[str]:
        if sheet is None or not len(sheet):
            return []
        if published is None:
            return [f"the sheet at {self.backend.describe()} already holds {len(sheet)} rows "
                    f"that this project never pushed"]
        return unpulled_edits(sheet, published)

    def _backup(self, sheet: pd.DataFrame) -> Path:
        folder = self.state / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"sheet-{now_iso().replace(':', '')}.csv"
        sheet.to_csv(path, index_label="sheet_row")
        return path

    def _save_published(self, table: pd.DataFrame, info: VersionInfo) -> None:
        cols = ["id", *EDITABLE, *[c for c in table.columns if c in extra_columns(table)]]
        write_csv_atomic(table[cols].astype(str), self.state / "published.csv")
        (self.state / "published.json").write_text(json.dumps(
            {"version": info.version, "time": now_iso(), "sheet": self.backend.describe()}))

    def _url_for(self, path: str) -> str:
        if self.config.backend == "google":
            # A file:// link is useless (and leaks local paths) in a shared sheet.
            template = self.config.google.image_url_template
            return template.format(path=path) if template else ""
        return safe_join(self.config.root, path).as_uri()

    def _review_order(self, signals: pd.DataFrame, manifest: pd.DataFrame,
                      order: str | None) -> list[str]:
        from .augment import derived_last
        from .review import review_order

        paths = manifest.set_index("id")["path"].astype(str)
        return derived_last(list(review_order(signals, order or self.config.review.order,
                                              seed=self.config.train.seed, paths=paths)), manifest)

    def _signals(self, manifest: pd.DataFrame, info: VersionInfo) -> tuple[pd.DataFrame, str]:
        """Review signals from the freshest predictions, saying where they come from."""
        from .review import review_signals

        items = self._items(manifest)
        found = self._latest_predictions(info.version)
        if found is None:
            # No model yet: duplicates and blank images are still worth showing first.
            return (review_signals(items, None, self.config.classes),
                    "none yet (run `sheetsync train` or `sheetsync predict`)")
        kind, version, probs, distance = found
        # Images added since those predictions have none: score the rest, keep all rows.
        scored = items[items["id"].isin(probs.index)]
        signals = review_signals(scored, probs, self.config.classes, class_distance=distance)
        unscored = items[~items["id"].isin(probs.index)]
        if len(unscored):
            signals = pd.concat([signals, review_signals(unscored, None, self.config.classes,
                                                         find_duplicates=False)])
        what = "out-of-sample (cross-validated)" if kind == "oos" else (
            "in-sample (from the trained model; run `sheetsync predict` for out-of-sample)")
        stale = (f" — STALE: computed for v{version}, the data is now {info.name}; run "
                 f"`sheetsync {'predict' if kind == 'oos' else 'train'}` again"
                 if version != info.version else "")
        return signals, f"{what} for v{version}{stale}"

    def _latest_predictions(self, upto: int) -> tuple[str, int, pd.DataFrame, pd.DataFrame | None] | None:
        for version in range(upto, 0, -1):
            for kind in ("oos", "insample"):
                path = self.state / "predictions" / f"v{version:04d}-{kind}.csv"
                if path.exists():
                    probs = _read_frame(path)
                    dist_path = path.with_name(path.stem + "-distance.csv")
                    distance = _read_frame(dist_path) if dist_path.exists() else None
                    return kind, version, probs, distance
        return None

    def _save_predictions(self, version: int, kind: str, ids: list[str], probs: np.ndarray,
                          embeddings: np.ndarray | None, distance: np.ndarray | None) -> Path:
        folder = self.state / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"v{version:04d}-{kind}.csv"
        classes = list(self.config.classes)
        for values, target in ((distance, path.with_name(path.stem + "-distance.csv")),
                               (probs, path)):
            if values is not None:
                df = pd.DataFrame(values, columns=classes)
                df.insert(0, "id", ids)
                write_csv_atomic(df, target)
        if embeddings is not None:
            np.savez_compressed(path.with_suffix(".npz"), ids=np.asarray(ids, dtype=str),
                                embeddings=embeddings.astype(np.float32))
        return path

    def _items(self, manifest: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "id": manifest["id"].astype(str),
            "file": [str(safe_join(self.config.root, p)) for p in manifest["path"]],
            "hash": manifest["hash"].astype(str),
            "label": manifest["label"].astype(str),
            "split": manifest["split"].astype(str),
            "action": manifest["action"].astype(str),
        }).reset_index(drop=True)

    # ---- pull ------------------------------------------------------------------------------

    def pull(self, *, dry_run: bool = False) -> Report:
        with self._locked():
            manifest, info, _ = self._refresh()
            report = self._new_report()
            sheet = self.backend.read_table()
            if sheet is None:
                raise BackendError(f"nothing to pull: {self.backend.describe()} has no data sheet "
                                   f"(run `sheetsync push` first)")
            published = self._published()
            known = set(published["id"]) if published is not None else set()
            plan = plan_pull(sheet, manifest, published, self.config.classes, self.config.splits, known)
            if plan.problems:
                raise SheetValidationError(plan.problems)
            report.warnings += plan.warnings
            plan.manifest, followed = self._follow_sources(manifest, plan)
            report.lines += followed
            changes = diff_manifests(manifest, plan.manifest)
            if not plan.edited:
                report.lines.append(f"nothing to pull: the sheet matches {info.name}")
                self._add_usage(report)
                return report
            moves, new_manifest = self._plan_moves(plan.manifest)
            report.data.update(changes=changes, moves=moves)
            report.lines.append(_describe_changes(changes, len(moves)))
            if dry_run:
                report.lines.append("dry run: nothing changed")
                return report
            version = self.versions.next_number()
            self.versions.stage(new_manifest, version)
            pending_published = self.state / "published.pending.csv"
            write_csv_atomic(self._published_after_pull(sheet, published, plan.manifest),
                             pending_published)
            after = {"version": version, "message": f"pull: {len(plan.edited)} row(s) edited",
                     "published": str(pending_published)}
            journal = self._journal
            journal.begin(moves, after)
            jr.apply(journal, progress=lambda ms: self.progress(ms, "moving", len(moves)))
            new_info = self._after_moves(after)
            journal.finish()
            report.lines.append(f"recorded {new_info.name} ({_counts_text(new_info.counts)})")
            report.data.update(version=new_info.version)
            self._add_usage(report)
            return report

    def _follow_sources(self, manifest: pd.DataFrame, plan: Any) -> tuple[pd.DataFrame, list[str]]:
        """Derived images follow a relabelled or dropped source (sheetsync.augment)."""
        from .augment import class_table, follow_sources

        if "source_id" not in manifest.columns or not (manifest["source_id"] != "").any():
            return plan.manifest, []  # nothing derived: the table does not matter
        table = class_table(self.config.augment.transforms, self.config.classes)
        return follow_sources(manifest, plan.manifest, plan.edited, table)

    def _plan_moves(self, manifest: pd.DataFrame) -> tuple[list[jr.Move], pd.DataFrame]:
        root = self.config.root
        wanted = [location(s, lab, a, Path(p).name) for s, lab, a, p in zip(
            manifest["split"], manifest["label"], manifest["action"], manifest["path"], strict=True)]
        moving = [(i, p, w, h) for i, p, w, h in zip(
            manifest["id"], manifest["path"], wanted, manifest["hash"], strict=True) if p != w]
        staying = [p for p, w in zip(manifest["path"], wanted, strict=True) if p == w]
        moves = jr.plan_moves(moving, staying, exists=lambda rel: safe_join(root, rel).exists())
        dst = {m.id: m.dst for m in moves}
        out = manifest.copy()
        out["path"] = [dst.get(i, p) for i, p in zip(out["id"], out["path"], strict=True)]
        return moves, out

    def _published_after_pull(self, sheet: pd.DataFrame, published: pd.DataFrame | None,
                              merged: pd.DataFrame) -> pd.DataFrame:
        """What the sheet shows now, so the next push sees no unpulled edit."""
        from .sync import clean_cells, normalise_header

        mapping, _ = normalise_header(sheet)
        cells = clean_cells(sheet, mapping)
        cols = ["id", *EDITABLE, *[c for c in cells.columns if c in extra_columns(cells)]]
        shown = cells[cols].copy()
        shown["id"] = shown["id"].str.strip()
        for name, choices in (("split", self.config.splits), ("label", self.config.classes),
                              ("action", ("keep", "drop"))):
            shown[name] = [normalise_choice(v, choices) or ("keep" if name == "action" else v)
                           for v in shown[name]]
        if published is not None:
            rest = published[~published["id"].isin(shown["id"])]
            shown = pd.concat([shown, rest], ignore_index=True)
        return shown.fillna("").astype(str)

    # ---- train and predict -----------------------------------------------------------------

    def train(self, *, epochs: int | None = None, seed: int | None = None,
              precision: str | None = None, jit_compile: bool | None = None,
              on_epoch: Any = None) -> Report:
        from . import train as training

        with self._locked():
            manifest, info, _ = self._refresh()
            items = self._items(manifest)
            keep = items[items["action"] == "keep"]
            tr, va = keep[keep["split"] == "train"], keep[keep["split"] == "val"]
            if not len(tr) or not len(va):
                raise TrainingError("training needs images in both the 'train' and 'val' splits")
            test = self._test_items()
            cfg = self.config.train
            weights = self.state / "models" / f"v{info.version:04d}.weights.h5"
            weights.parent.mkdir(parents=True, exist_ok=True)
            result = training.train_model(
                tr, va, self.config.classes, weights_path=weights, test=test,
                epochs=epochs or cfg.epochs, seed=cfg.seed if seed is None else seed,
                batch_size=cfg.batch_size, precision=precision or cfg.precision,
                jit_compile=cfg.jit_compile if jit_compile is None else jit_compile,
                cache_dir=self.state / "cache", progress=on_epoch)
            pred = training.predict(weights, items, self.config.classes, cache_dir=self.state / "cache")
            self._save_predictions(info.version, "insample", list(items["id"]), pred.probs,
                                   pred.embeddings, self._class_distances(items, pred))
            emb_map = self._embedding_map(items, pred, info)
            row = {
                "version": info.version, "time": now_iso(),
                "train": len(tr), "val": len(va), "dropped": int((items["action"] == "drop").sum()),
                "test": 0 if test is None else len(test),
                "derived": _derived_count(manifest, tr),
                "best_val_accuracy": round(float(result.best_val_accuracy), 4),
                "test_accuracy": "" if result.test_accuracy is None else round(float(result.test_accuracy), 4),
                "epochs": result.epochs, "best_epoch": result.best_epoch,
                "seed": result.seed, "seconds": round(float(result.seconds), 1),
            }
            self.scores.append(row)
            report = self._new_report()
            report.lines.append(f"trained on {info.name}: best val accuracy {row['best_val_accuracy']}"
                             + (f", test accuracy {row['test_accuracy']}" if test is not None else "")
                             + f" ({result.epochs} epochs, {row['seconds']} s)")
            report.data["score"] = row
            try:
                self.backend.append_score(row)
                report.lines.append(f"score row written to {self.backend.describe()} (scores)")
                self._add_usage(report)
            except BackendError as e:
                report.warnings.append(f"score row kept locally only: {e}")
            chart = self._chart()
            if chart:
                report.lines.append(f"charts: {chart}" + (f", {emb_map}" if emb_map else ""))
            return report

    def _embedding_map(self, items: pd.DataFrame, pred: Any, info: VersionInfo) -> Path | None:
        from .charts import embedding_map

        ids = pd.Index(items["id"])
        labels = pd.Series(items["label"].to_numpy(), index=ids)
        predicted = pd.Series(np.asarray(self.config.classes)[pred.probs.argmax(axis=1)], index=ids)
        return embedding_map(pd.DataFrame(pred.embeddings, index=ids), labels, predicted != labels,
                             self.state / "charts" / f"embedding-v{info.version}.png",
                             f"{info.name}: embedding map; red rings: the model disagrees with the label")

    def _class_distances(self, items: pd.DataFrame, pred: Any) -> np.ndarray:
        """Distance of every image to each class centre, in the trained model's embedding space."""
        from ._crossval import class_distances

        labels = items["label"].map({c: i for i, c in enumerate(self.config.classes)}).to_numpy()
        is_train = ((items["split"] == "train") & (items["action"] == "keep")).to_numpy()
        return class_distances(pred.embeddings, pred.probs, labels, is_train,
                               len(self.config.classes))

    def _test_items(self) -> pd.DataFrame | None:
        test_dir = self.config.test_dir
        if test_dir is None or not test_dir.is_dir():
            return None
        cache = HashCache(self.state / "hashes-test.json")
        rows = []
        for class_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            if class_dir.name not in self.config.classes:
                raise DatasetError(f"test folder {class_dir}: {class_dir.name!r} is not a class")
            from .dataset import _files_in

            for f in _files_in(test_dir, class_dir, "test", class_dir.name, "keep"):
                rel = f"{class_dir.name}/{Path(f.path).name}"
                rows.append({"id": "", "file": str(test_dir / rel),
                             "hash": cache.get(test_dir, replace(f, path=rel)), "label": class_dir.name})
        cache.save()
        return pd.DataFrame(rows) if rows else None

    def predict(self, *, folds: int | None = None, epochs: int | None = None,
                on_fold: Any = None) -> Report:
        """Out-of-sample probabilities for every kept train/val image (k-fold)."""
        from .review import out_of_sample

        with self._locked():
            manifest, info, _ = self._refresh()
            items = self._items(manifest)
            keep = items[(items["action"] == "keep") & items["split"].isin(["train", "val"])]
            cfg = self.config.review
            oos = out_of_sample(
                keep.reset_index(drop=True), self.config.classes, folds=folds or cfg.folds,
                epochs=epochs or cfg.epochs, seed=self.config.train.seed,
                work_dir=self.state / "oos", cache_dir=self.state / "cache", progress=on_fold,
                batch_size=self.config.train.batch_size, precision=self.config.train.precision,
                jit_compile=self.config.train.jit_compile)
            ids = list(oos.probs.index)
            self._save_predictions(info.version, "oos", ids, oos.probs.to_numpy(),
                                   oos.embeddings.loc[ids].to_numpy(),
                                   oos.class_distance.loc[ids].to_numpy())
            return Report([f"out-of-sample probabilities for {len(ids)} images of {info.name} "
                           f"({folds or cfg.folds} folds x {epochs or cfg.epochs} epochs); "
                           f"`sheetsync push` uses them"])

    # ---- augment ---------------------------------------------------------------------------

    def augment(self, *, budget: int | None = None, seed: int | None = None,
                dry_run: bool = False, splits: list[str] | None = None,
                families: list[str] | None = None, on_plan: Any = None) -> Any:
        """Derived images up to the budget (sheetsync.augment), committed as one journal batch."""
        with self._locked():
            manifest, info, _ = self._refresh()
            assert info is not None  # _refresh records a version when there is none
            return self._augment(manifest, info, budget, seed, dry_run, splits, families, on_plan)

    def _augment(self, manifest: pd.DataFrame, info: VersionInfo, budget: int | None,
                 seed: int | None, dry_run: bool, splits: list[str] | None,
                 families: list[str] | None, on_plan: Any) -> Any:
        import time

        from . import augment as ag

        started, cfg, root = time.perf_counter(), self.config.augment, self.config.root
        ag.check_settings(cfg.cap, cfg.max_side, cfg.seed if seed is None else seed,
                          splits or cfg.splits, self.config.splits)
        if budget is not None and budget < 0:
            raise ConfigError(f"--budget must be 0 or more, not {budget}")
        table = ag.restrict(ag.class_table(cfg.transforms, self.config.classes), families)
        lost = ag.lost_rows([self.versions.load(v.version) for v in self.versions.list()], manifest)
        paths = dict(zip(manifest["id"].astype(str), manifest["path"].astype(str), strict=True))
        pixels = ag.PixelCache(root, paths, cfg.max_side)
        room = ag.budget_for(manifest, cfg.cap, budget, self.config.splits)
        room -= int(((lost["action"] == "keep") & lost["split"].isin(self.config.splits)).sum()) if len(lost) else 0
        plan = ag.plan_augment(
            manifest, table, self.config.classes, budget=max(0, room),
            seed=cfg.seed if seed is None else seed, splits=splits or cfg.splits,
            priorities=self._augment_priorities(manifest, info),
            spelled=ag.spell_sources(manifest, table, pixels, splits or cfg.splits))
        result = ag.AugmentResult(plan, dry_run)
        if on_plan is not None:
            on_plan(plan)
        if dry_run or (not plan.variants and not len(lost)):
            return result
        files, result.skipped = ag.stage_all(root, root / jr.STAGING / ag.NEW_FILES, plan, lost,
                                             pixels, set(manifest["id"].astype(str)))
        moves = jr.plan_moves([(f.row["id"], f.staged, f.row["path"], f.row["hash"]) for f in files],
                              # Derived paths are built from config names and hex ids: plain.
                              list(manifest["path"]), exists=lambda rel: (root / rel).exists())
        dst = {m.id: m.dst for m in moves}
        rows = pd.DataFrame([{**f.row, "path": dst[f.row["id"]]} for f in files])
        new_manifest = pd.concat([manifest, rows], ignore_index=True).fillna("").astype(object)
        version = self.versions.next_number()
        self.versions.stage(new_manifest, version)
        result.rebuilt = sum(1 for f in files if f.row["id"] in set(lost["id"]))
        result.written = len(files) - result.rebuilt
        after = {"version": version, "message": f"augment: {result.written} derived, "
                                                f"{result.rebuilt} rebuilt", "published": ""}
        journal = self._journal
        journal.begin(moves, after)
        jr.apply(journal, progress=lambda ms: self.progress(ms, "writing", len(moves)))
        result.version = self._after_moves(after).version
        journal.finish()
        ag.clean_staging(root / jr.STAGING)
        result.seconds = time.perf_counter() - started
        return result

    def _augment_priorities(self, manifest: pd.DataFrame, info: VersionInfo) -> Any:
        from . import augment as ag

        found = self._latest_predictions(info.version)
        if found is None:
            return None
        kind, version, probs, distance = found
        npz = self.state / "predictions" / f"v{version:04d}-{kind}.npz"
        emb = None
        if npz.exists():
            with np.load(npz) as d:
                emb = pd.DataFrame(d["embeddings"], index=d["ids"].astype(str))
        return ag.priorities_from(manifest, self.config.classes, probs, distance, emb,
                                  f"{'out-of-sample' if kind == 'oos' else 'in-sample'} "
                                  f"predictions of v{version}")

    # ---- status, log, diff, checkout -------------------------------------------------------

    def status(self, *, check_sheet: bool = True) -> Report:
        with self._locked():
            manifest, info, scanned = self._refresh()
            report = self._new_report()
            report.lines.append(f"{self.config.root}: {info.name}, {len(manifest)} images")
            table = counts_table(manifest, self.config.classes, self.config.splits)
            report.lines.append(table.to_string())
            report.data["counts"] = table
            if check_sheet:
                try:
                    sheet = self.backend.read_table()
                except BackendError as e:
                    report.warnings.append(f"could not read the sheet: {e}")
                else:
                    if sheet is None:
                        report.lines.append(f"sheet: {self.backend.describe()} (not pushed yet)")
                    else:
                        edits = self._pending_edits(sheet, self._published())
                        report.data["pending"] = edits
                        report.lines.append(f"sheet: {self.backend.describe()}: "
                                            + (f"{len(edits)} edit(s) not pulled yet" if edits else "no pending edits"))
                        report.lines += [f"  {e}" for e in edits[:20]]
            scores = self.scores.read()
            if len(scores):
                last = scores.iloc[-1]
                report.lines.append(f"last score: v{last['version']} val {last['best_val_accuracy']} "
                                    f"test {last['test_accuracy']}")
            return report

    def log(self) -> pd.DataFrame:
        versions = pd.DataFrame([{"version": v.version, "time": v.time, "message": v.message,
                                  **v.counts} for v in self.versions.list()])
        scores = self.scores.read()
        if len(versions) and len(scores):
            best = scores.assign(version=scores["version"].astype(int)).groupby("version").last()
            versions = versions.join(best[["best_val_accuracy", "test_accuracy"]], on="version")
        return versions.fillna("")

    def diff(self, a: str, b: str = "latest") -> pd.DataFrame:
        return diff_manifests(self.versions.load(a), self.versions.load(b))

    def checkout(self, ref: str) -> Report:
        """Put every image back where version ``ref`` had it; records that as a new version."""
        with self._locked():
            manifest, info, _ = self._refresh()
            target_version = self.versions.parse(ref)
            target = self.versions.load(target_version).set_index("id")
            merged = manifest.set_index("id", drop=False).copy()
            common = merged.index.intersection(target.index)
            for name in ("split", "label", "action", "note"):
                merged.loc[common, name] = target.loc[common, name]
            merged = merged.reset_index(drop=True)
            moves, new_manifest = self._plan_moves(merged)
            report = self._new_report()
            gone = target.index.difference(merged.index)
            if len(gone):
                report.warnings.append(f"{len(gone)} image(s) of v{target_version} are no longer on disk")
            if not moves and not len(diff_manifests(manifest, new_manifest)):
                report.lines.append(f"{info.name} already matches v{target_version}")
                return report
            version = self.versions.next_number()
            self.versions.stage(new_manifest, version)
            after = {"version": version, "message": f"checkout v{target_version}", "published": ""}
            journal = self._journal
            journal.begin(moves, after)
            jr.apply(journal, progress=lambda ms: self.progress(ms, "moving", len(moves)))
            new_info = self._after_moves(after)
            journal.finish()
            report.lines.append(f"restored v{target_version}: {len(moves)} file(s) moved; "
                                f"recorded {new_info.name}")
            return report

    def _chart(self) -> Path | None:
        from .charts import scores_chart

        return scores_chart(self.scores.read(), self.state / "scores.png")

    def backup_workbook(self) -> Path | None:
        """Copy of a local workbook file (used before a forced push)."""
        if self.config.backend != "local":
            return None
        src = self.config.resolve(self.config.local.path)
        if not src.exists():
            return None
        dst = self.state / "backups" / f"{src.stem}-{now_iso().replace(':', '')}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        return dst


def _derived_count(manifest: pd.DataFrame, trained: pd.DataFrame) -> int:
    """How many of the training images are derived (sheetsync augment)."""
    if "source_id" not in manifest.columns:
        return 0
    derived = manifest.loc[manifest["source_id"].astype(str) != "", "id"]
    return int(trained["id"].isin(derived).sum())


def _read_frame(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str}, keep_default_na=False).set_index("id")


def counts_table(manifest: pd.DataFrame, classes: Any, splits: Any) -> pd.DataFrame:
    keep = manifest[manifest["action"] == "keep"]
    table = pd.crosstab(keep["label"], keep["split"]).reindex(index=list(classes),
                                                               columns=list(splits), fill_value=0)
    dropped = manifest[manifest["action"] == "drop"]["label"].value_counts()
    table["dropped"] = dropped.reindex(table.index, fill_value=0)
    table.loc["total"] = table.sum()
    return table.astype(int)


def _describe_changes(changes: pd.DataFrame, n_moves: int) -> str:
    if not len(changes):
        return "no change"
    per_field = changes.groupby("field").size()
    parts = [f"{n} {f or 'row'} change(s)" for f, n in per_field.items() if f != "path"]
    return ", ".join(parts) + f"; {n_moves} file(s) to move"


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


__all__ = ["Project", "Report", "counts_table", "order_classes", "counts_of"]
