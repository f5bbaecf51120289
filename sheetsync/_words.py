"""The words people read: what each typed result and watch event says at the terminal.

Only :mod:`sheetsync.cli` (and the demo script, which prints as the CLI does) import this
module; the library returns typed data (:mod:`sheetsync.results`, :class:`sheetsync.watch.Event`)
and never words. One formatter per result type, registered on the type
(:func:`functools.singledispatch`)::

    from sheetsync._words import describe
    print("\n".join(describe(Project.open(".").pull())))   # what `sheetsync pull` prints
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import singledispatch
from typing import Any

import pandas as pd

from ._reviewsheet import checked_text, model_text, summary_text
from ._tables import WIDTH, clip, scores_lines
from ._trainbars import duration
from .dataset import SkippedFile
from .report import ReportStep
from .results import (
    AugmentResult,
    CheckoutResult,
    InitResult,
    PredictionSource,
    PredictResult,
    PrunePlan,
    PublishResult,
    PullResult,
    PushResult,
    ReportResult,
    Result,
    ScoresResult,
    StatusResult,
    TrainOutcome,
    WatchResult,
)
from .versions import DIFF_FIELDS
from .watch import Event

# ---- words for results ---------------------------------------------------------------------


def warnings_of(result: Result) -> list[str]:
    """What went wrong or needs attention, one line each (printed as warnings)."""
    out = []
    if result.recovered is not None:
        out.append(recovery_text(result.recovered.completed, result.recovered.version,
                                 result.recovered.reason))
    if result.skipped:
        out.append(skipped_text(result.skipped))
    return out + result.notices + _own_warnings(result)


def recovery_text(completed: bool, version: int | None, reason: str | None) -> str:
    return (f"completed an interrupted pull (v{version})" if completed
            else f"an interrupted pull was rolled back ({reason}); pull again")


@singledispatch
def _own_warnings(result: Result) -> list[str]:
    """The warnings only one type of result has (none for most)."""
    return []


@_own_warnings.register
def _(r: StatusResult) -> list[str]:
    return [f"could not read the sheet: {r.sheet_error}"] if r.sheet_error else []


@_own_warnings.register
def _(r: TrainOutcome) -> list[str]:
    return [f"score row kept locally only: {r.sheet_error}"] if r.sheet_error else []


@_own_warnings.register
def _(r: CheckoutResult) -> list[str]:
    return [f"{r.gone} image(s) of v{r.target} are no longer on disk"] if r.gone else []


@_own_warnings.register
def _(r: AugmentResult) -> list[str]:
    out = [f"skipped: {_unbuilt_text(u)}" for u in r.unbuilt[:20]]
    if len(r.unbuilt) > 20:
        out.append(f"skipped: ... and {len(r.unbuilt) - 20} more")
    return out


_SKIP_REASONS = {"backslash": "a backslash in the name (common in zips made on Windows)",
                 "control": "a control character in the name",
                 "not-utf8": "the name is not valid UTF-8"}


def skipped_text(skipped: list[SkippedFile]) -> str:
    """One warning naming the files the scan left out (said by every command)."""
    # A name as typed, unless it holds characters a terminal cannot show.
    named = [f"{s.path if s.reason == 'backslash' else ascii(s.path)}: {_SKIP_REASONS[s.reason]}"
             for s in skipped[:10]]
    return (f"skipped {len(skipped)} image file(s) whose name sheetsync cannot use "
            f"(rename them to include them): " + "; ".join(named)
            + (" ..." if len(skipped) > 10 else ""))


@singledispatch
def describe(result: Result) -> list[str]:
    """What a command did, as lines for people: one formatter per result type."""
    raise TypeError(f"no words for {type(result).__name__}")


@singledispatch
def next_step(result: Result) -> str | None:
    """The command that obviously comes next, with why (None where nothing obvious does)."""
    return None


@next_step.register
def _(r: InitResult) -> str | None:
    return "sheetsync train (a first score and predictions), then sheetsync push"


@next_step.register
def _(r: TrainOutcome) -> str | None:
    return "sheetsync push, or sheetsync predict first for out-of-sample review columns"


@next_step.register
def _(r: PredictResult) -> str | None:
    return "sheetsync push (rows ordered by the out-of-sample scores)"


@next_step.register
def _(r: PushResult) -> str | None:
    return f"edit label / split / action / note in {r.sheet}, then sheetsync pull"


@next_step.register
def _(r: PullResult) -> str | None:
    if not r.edited:
        return None
    if r.dry_run or r.version is None:
        return "sheetsync pull (without --dry-run)"
    return f"sheetsync train (a score for {r.version.name}), then sheetsync push"


@next_step.register
def _(r: AugmentResult) -> str | None:
    if not r.plan.variants:
        return None
    return "sheetsync augment (without --dry-run)" if r.dry_run else (
        "sheetsync push (the derived rows, to veto any), then sheetsync train")


@next_step.register
def _(r: CheckoutResult) -> str | None:
    if r.version is None:
        return None
    return f"sheetsync train (a score for {r.version.name}), then sheetsync push"


@next_step.register
def _(r: WatchResult) -> str | None:
    if r.abandoned_training:
        return "sheetsync watch (the interrupted training runs again first)"
    return "sheetsync watch (without --once) to keep the sheet in step" if r.once else None


@next_step.register
def _(r: ScoresResult) -> str | None:
    if not len(r.table):
        return "sheetsync train (a first score row)"
    return "sheetsync report (the scores with 95% intervals, the map and the split coverage)"


def log_next(versions: pd.DataFrame) -> str | None:
    """After ``sheetsync log``: what changed between the last two versions; with one version,
    how the next one comes about."""
    if len(versions) == 1:
        return "sheetsync push, edit the sheet, then sheetsync pull (a new version)"
    if len(versions) < 2:
        return None
    a, b = versions["version"].iloc[-2], versions["version"].iloc[-1]
    return f"sheetsync diff v{a} v{b} (what changed), or sheetsync checkout VERSION to go back"


def diff_next(a: str, b: str) -> str:
    """After ``sheetsync diff A B``: how to go back to A."""
    return (f"sheetsync checkout {a} (the folders as in {a}, recorded as a new version), "
            f"or sheetsync log")


def report_step_text(step: ReportStep) -> str:
    """A long step of ``sheetsync report`` as it starts (sheetsync.report.ReportStep)."""
    if step.step == "map":
        return (f"mapping {step.images} images (cached)…" if step.cached else
                f"mapping {step.images} images with UMAP (about a minute on 2 cores)…")
    if step.step == "thumbnails":
        return f"drawing {step.images} thumbnails…"
    return "writing the page…"


@next_step.register
def _(r: StatusResult) -> str | None:
    if r.sheet is None:
        return None
    if r.pending:
        return "sheetsync pull"
    if not r.pushed:
        return "sheetsync push"
    if _scored_version(r.last_score) != r.version.version:
        return f"sheetsync train (a score for {r.version.name}), then sheetsync push"
    # Nothing to pull or push: what is left is the review itself.
    return f"edit label / split / action / note in {r.sheet}, then sheetsync pull"


def _scored_version(score: dict[str, Any] | None) -> int | None:
    """The version a score row is for (None: no row, or no version in it)."""
    try:
        return int(float(score["version"])) if score else None
    except (KeyError, TypeError, ValueError):
        return None


@describe.register
def _init_lines(r: InitResult) -> list[str]:
    return [f"wrote {r.config_path}",
            f"dataset {r.root}: {r.images} images, classes {', '.join(r.classes)}, splits "
            f"{', '.join(r.splits)}" + (f", test folder {r.test_dir}" if r.test_dir else ""),
            f"recorded {r.version.name}" if r.version else "no change",
            *_unreadable_lines(r.unreadable)]


def _unreadable_lines(unreadable: dict[str, str]) -> list[str]:
    """Every file the model cannot read, by name, all at once (said when scanning)."""
    if not unreadable:
        return []
    return [f"{len(unreadable)} image(s) the model cannot read (flagged 'unreadable' in the "
            "sheet, excluded from training):",
            *[f"  {p}: {why}" for p, why in sorted(unreadable.items())]]


def _excluded_lines(excluded: list[str]) -> list[str]:
    """One line naming the files left out of training because the model cannot read them."""
    if not excluded:
        return []
    return [f"excluded {len(excluded)} unreadable image(s) from training: {', '.join(excluded)}"]


@describe.register
def _push_lines(r: PushResult) -> list[str]:
    lines = [f"backed up the sheet to {r.sheet_backup}"] if r.sheet_backup else []
    if r.workbook_backup:
        lines.append(f"backed up the workbook to {r.workbook_backup}")
    if r.images is not None:
        lines += _publish_lines(r.images)
    lines += [f"pushed {r.rows} rows of {r.version.name} to {r.sheet}",
              f"predictions: {_source_text(r.predictions)}"]
    return lines + _review_lines(r.model, r.summary) + _usage_lines(r.usage)


def _review_lines(model: Any, summary: Any) -> list[str]:
    """The model and the summary, in the words of the sheet's info line."""
    out = [f"model: {model_text(model)}"] if model is not None else []
    if summary is not None:
        out.append(f"summary: {summary_text(summary)}")
        if summary.unreadable_paths:
            out.append("unreadable (flagged in the sheet, excluded from training): "
                       + ", ".join(summary.unreadable_paths))
    return out


@describe.register
def _publish_lines(r: PublishResult) -> list[str]:
    return [f"images: {r.uploaded} of {r.objects} objects uploaded to gs://{r.bucket} "
            f"({_size(r.bytes_sent)}), {r.already} already there; {r.requests} requests, "
            f"{r.seconds:.1f} s"]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def prune_lines(plan: PrunePlan) -> list[str]:
    """What ``publish --prune`` would delete, before it asks."""
    if not plan.unreferenced:
        return [f"nothing to prune: all {plan.listed} objects under gs://{plan.bucket}/"
                f"{plan.prefix} are referenced by a version"]
    lines = [f"  {name}" for name in plan.unreferenced[:50]]
    if len(plan.unreferenced) > 50:
        lines.append(f"  ... and {len(plan.unreferenced) - 50} more")
    return [*lines, f"{len(plan.unreferenced)} of {plan.listed} objects ({plan.bytes / 1e6:.1f} MB) "
                    f"in gs://{plan.bucket} are referenced by no version"]


def _source_text(s: PredictionSource) -> str:
    if s.kind is None:
        return "none yet (run `sheetsync train` or `sheetsync predict`)"
    what = "out-of-sample (cross-validated)" if s.kind == "oos" else (
        "in-sample (from the trained model; run `sheetsync predict` for out-of-sample)")
    stale = (f" — STALE: computed for v{s.version}, the data is now v{s.current}; run "
             f"`sheetsync {'predict' if s.kind == 'oos' else 'train'}` again" if s.stale else "")
    return f"{what} for v{s.version}{stale}"


@describe.register
def _pull_lines(r: PullResult) -> list[str]:
    if not r.edited:
        return [f"nothing to pull: the sheet matches {r.base.name}", *_usage_lines(r.usage)]
    lines = [*(f"derived {f.id} ({f.transform}): {f.note}" for f in r.followed),
             _changes_text(r.changes, len(r.moves))]
    if r.dry_run or r.version is None:
        return [*lines, "dry run: nothing changed"]
    counts = ", ".join(f"{k} {v}" for k, v in r.version.counts.items())
    return [*lines, f"recorded {r.version.name} ({counts})", *_usage_lines(r.usage)]


def augment_plan_lines(plan: Any) -> list[str]:
    """An augment plan (sheetsync.augment.AugmentPlan) before anything is written."""
    prio = plan.priorities
    source = (f"{'out-of-sample' if prio.kind == 'oos' else 'in-sample'} predictions of "
              f"v{prio.version}" if prio.kind
              else "none (no predictions yet: every class and image weighs the same)")
    lines = [f"plan: {len(plan.variants)} derived image(s), budget {plan.budget}; "
             f"priorities: {source}"]
    lines += [f"  {note}" for note in prio.notes()]  # never-sources, class-uniform sampling
    if plan.variants:
        lines.append(plan.table().to_string())
    return [*lines, *(f"  {s.label}: {s.planned} of {s.wanted} planned (not enough sources)"
                      for s in plan.short)]


@describe.register
def _augment_lines(r: AugmentResult) -> list[str]:
    if r.dry_run:
        return ["dry run: nothing written"]
    if r.version is None:
        return ["nothing to add: the budget is spent"]
    return [f"wrote {r.written} derived image(s), rebuilt {r.rebuilt}, in {r.seconds:.1f} s; "
            f"recorded {r.version.name} (`sheetsync push` shows them)"]


def _unbuilt_text(u: Any) -> str:
    if u.reason == "source_gone":
        return f"derived {u.id}: its source {u.source_id} is gone; not rebuilt"
    if u.reason == "bytes_differ":
        return f"derived {u.id} ({u.transform}): rebuilt bytes differ; not restored"
    return f"{u.source_id} {u.transform}: {u.detail}"


def _changes_text(changes: pd.DataFrame, n_moves: int) -> str:
    if not len(changes):
        return "no change"
    per_field = changes.groupby("field").size()
    parts = [f"{n} {f or 'row'} change(s)" if f in DIFF_FIELDS or not f
             else f"{n} change(s) in column {f!r}" for f, n in per_field.items() if f != "path"]
    return ", ".join(parts) + f"; {n_moves} file(s) to move"


@describe.register
def _train_lines(r: TrainOutcome) -> list[str]:
    row = r.score
    lines = [*_excluded_lines(r.excluded), f"trained on {r.version.name}: best val accuracy {row['best_val_accuracy']}"
             + (f", test accuracy {row['test_accuracy']}" if r.has_test else "")
             + f" ({row['epochs']} epochs, {_duration(row['seconds'])})"]
    if r.sheet:
        lines += [f"score row written to {r.sheet} (scores)", *_usage_lines(r.usage)]
    if r.charts:
        lines.append("charts: " + ", ".join(map(str, r.charts)))
    return lines


def _duration(seconds: Any) -> str:
    try:
        return duration(float(seconds))
    except (TypeError, ValueError):
        return f"{seconds} s"


@describe.register
def _predict_lines(r: PredictResult) -> list[str]:
    lines = [*_excluded_lines(r.excluded), f"out-of-sample probabilities for {r.images} images of {r.version.name} "
             f"({r.folds} folds x {r.epochs} epochs" + (f", {r.seeds} fold seeds" if r.seeds > 1 else "")
             + "); `sheetsync push` uses them"]
    total = r.folds * r.seeds
    if r.fine_tuned or r.reused:
        parts = ([f"{r.fine_tuned} of {total} fold models fine-tuned from the previous "
                  f"version's for {r.warm_epochs} epochs"] if r.fine_tuned else [])
        parts += [f"{r.reused} unchanged, reused"] if r.reused else []
        hint = " (`sheetsync predict --from-scratch`: train them from scratch)" if r.fine_tuned else ""
        lines.append("; ".join(parts) + hint)
    return lines


@describe.register
def _status_lines(r: StatusResult) -> list[str]:
    lines = [f"{r.root}: {r.version.name}, {r.images} images", r.counts.to_string(),
             (f"review since v{r.judged_version}" if r.judged_version else "review")
             + f": {checked_text(r.checked, r.checked_problems)}"]
    if r.sheet is not None and not r.pushed:
        lines.append(f"sheet: {r.sheet} (not pushed yet)")
    elif r.sheet is not None:
        lines.append(f"sheet: {r.sheet}: " + (f"{len(r.pending)} edit(s) not pulled yet"
                                               if r.pending else "no pending edits"))
        lines += [clip(f"  {e}", WIDTH) for e in r.pending[:20]]  # a long note: cut
    if r.last_score:
        s = r.last_score
        lines.append(f"last score: v{s['version']} val {s['best_val_accuracy']} "
                     f"test {s['test_accuracy']}")
    return lines


@describe.register
def _checkout_lines(r: CheckoutResult) -> list[str]:
    if r.version is None:
        return [f"{r.base.name} already matches v{r.target}"]
    return [f"restored v{r.target}: {r.moved} file(s) moved; recorded {r.version.name}"]


@describe.register
def _scores_lines(r: ScoresResult) -> list[str]:
    return [*scores_lines(r.table), *([f"chart: {r.chart}"] if r.chart else [])]


def _usage_lines(usage: str) -> list[str]:
    return [f"sheet: {usage}"] if usage else []


@describe.register
def _watch_lines(r: WatchResult) -> list[str]:
    return [f"{r.cycles} cycle(s), {r.pulls} pull(s), {r.trainings} training(s), "
            f"{r.republished} republish(es), {r.errors} error(s)"
            + (f"; last error: {r.last_error}" if r.last_error else "")]


def _republished_text(d: dict[str, Any]) -> str:
    source = PredictionSource(**d["predictions"])
    kind = ("none yet" if source.kind is None else
            ("out-of-sample" if source.kind == "oos" else "in-sample") + f" for v{source.version}"
            + (" (stale)" if source.stale else ""))
    return (f"{d['updated']} row(s) updated, {d['appended']} added, {d['gone']} marked gone, "
            f"{d['repairs']} repair(s) after rows moved; predictions: {kind}")


def _pulled_text(d: dict[str, Any]) -> str:
    if d.get("version") is None:
        return "nothing to apply"
    return f"recorded {d['name']} ({d['edited']} row(s) edited)"


def _trained_text(d: dict[str, Any]) -> str:
    score = d.get("score", {})
    return (f"v{score.get('version', '?')}: best val accuracy "
            f"{score.get('best_val_accuracy', '?')}, test accuracy "
            f"{score.get('test_accuracy', '?') or '-'}")


def _validation_text(d: dict[str, Any]) -> str:
    problems = d.get("problems", [])
    return (f"{len(problems)} problem(s); their rows are held back, the others applied: "
            + "; ".join(problems[:5]))


_WATCH_WORDS: dict[str, Callable[[dict[str, Any]], str]] = {
    "started": lambda d: (f"watching {d['sheet']} every {d['interval']:g} s "
                          f"(quiet period {d['quiet']:g} s)"),
    "training-abandoned": lambda d: ("stopped during a training; no score row written, it runs "
                                     "again at the next start"),
    "retry": lambda d: f"{d['detail']} (next try in {d['delay']:.0f} s)",
    "error": lambda d: f"{d['detail']} (next try in {d['delay']:.0f} s)",
    "hung": lambda d: str(d["detail"]),
    "followed": lambda d: (f"{d['rows']} derived row(s) now show the label their relabelled "
                           "source gave them"),
    "stopped": lambda d: (f"{d['cycles']} cycle(s), {d['pulls']} pull(s), "
                          f"{d['trainings']} training(s)"),
    "waiting": lambda d: (f"{d['edits']} edited cell(s); pulling after {d['left']:.0f} s "
                          "without a change"),
    "push": lambda d: "the sheet has no data yet: pushing every row",
    "pulling": lambda d: f"{d['edits']} edited cell(s) unchanged for {d['quiet']:.0f} s",
    "warning": lambda d: str(d["text"]),
    "recovered": lambda d: recovery_text(d["completed"], d["version"], d["reason"]),
    "skipped": lambda d: skipped_text([SkippedFile(**f) for f in d["files"]]),
    "validation": _validation_text,
    "pulled": _pulled_text,
    "status": lambda d: f"sync_status written on {d['rows']} row(s)",
    "training": lambda d: f"v{d['version']} has no score row",
    "trained": _trained_text,
    "score-local": lambda d: f"score row kept locally only: {d['detail']}",
    "republished": _republished_text,
    "missing-columns": lambda d: (f"the sheet lacks sheetsync column(s) {', '.join(d['columns'])}:"
                                  " `sheetsync push` adds them"),
}


def watch_event_text(event: Event) -> str:
    """What one ``sheetsync watch`` event says to people (:class:`sheetsync.watch.Event`)."""
    words = _WATCH_WORDS.get(event.event)
    if words is None:
        raise TypeError(f"no words for the watch event {event.event!r}")
    return words(event.data)


def watch_event_line(event: Event) -> str:
    """One log line: ``<time> <event>: <what it says>``."""
    return f"{event.time} {event.event}: {watch_event_text(event)}"


def watch_event_json(event: Event) -> str:
    """One JSON object per line (``watch --json``): the typed fields and what they say."""
    return json.dumps({"time": event.time, "event": event.event,
                       "message": watch_event_text(event), **event.data}, default=str)


@describe.register
def _report_lines(r: ReportResult) -> list[str]:
    lines = [f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB, v{r.version}, {r.n_shown} of "
             f"{r.n_images} images drawn, {r.seconds:.1f} s)",
             f"split coverage: {r.coverage.verdict}",
             *(f"  {f.title}: {f.count}" for f in r.findings)]
    if r.weak:
        lines.append("  Likely label errors and outliers: not counted (model too weak)")
    elif r.uncounted:  # as the push summary says it
        lines.append(f"  Likely label errors: not counted ({r.uncounted})")
    if r.map_csv:
        lines.append("map_x, map_y and cluster go into the sheet with the next `sheetsync push`")
    lines.append(f"next: open {r.path} in a browser (it works offline)"
                 + (", then sheetsync push (the map columns)" if r.map_csv else ""))
    return lines


def text_of(result: Result) -> str:
    """What the command prints for ``result`` on standard output, as one text."""
    return "\n".join(describe(result))
