"""The command line: each command parses, makes one library call and prints.

The library returns typed results (:mod:`sheetsync.results`); the words people read are made
here, in :func:`describe` and :func:`warnings_of` (``str(result)`` uses them too).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import SheetsyncError

if TYPE_CHECKING:  # the results module imports pandas: only when a command runs
    import pandas as pd

    from .dataset import SkippedFile
    from .results import PredictionSource, Result

# TensorFlow's logging (absl, CUDA probing, oneDNN notices) is noise for people at a terminal:
# sheetsync._quiet drops it unless --verbose / SHEETSYNC_VERBOSE=1 asks for it.


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors become one clean message and their exit code, never a traceback."""
    try:
        yield
    except SheetsyncError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; rerun the command to finish or roll back any half-done move.",
                   err=True)
        sys.exit(130)


def _project(ctx: click.Context) -> Any:
    from .config import find_project
    from .project import Project

    return Project.open(find_project(ctx.obj["dir"], given=ctx.obj["given"]))


def _show(result: Any) -> None:
    for w in result.warnings:
        click.echo(f"Warning: {w}", err=True)
    if result.lines:
        click.echo(str(result))
    step = next_step(result)
    if step:
        click.echo(f"next: {step}")


def _echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


# ---- words for results ---------------------------------------------------------------------


def warnings_of(result: Result) -> list[str]:
    """What went wrong or needs attention, one line each (printed as warnings)."""
    from .results import AugmentResult, CheckoutResult, StatusResult, TrainOutcome

    out = []
    r = result.recovered
    if r is not None:
        out.append(f"completed an interrupted pull (v{r.version})" if r.completed
                   else f"an interrupted pull was rolled back ({r.reason}); pull again")
    if result.skipped:
        out.append(_skipped_text(result.skipped))
    out += result.notices
    if isinstance(result, StatusResult) and result.sheet_error:
        out.append(f"could not read the sheet: {result.sheet_error}")
    if isinstance(result, TrainOutcome) and result.sheet_error:
        out.append(f"score row kept locally only: {result.sheet_error}")
    if isinstance(result, CheckoutResult) and result.gone:
        out.append(f"{result.gone} image(s) of v{result.target} are no longer on disk")
    if isinstance(result, AugmentResult):
        out += [f"skipped: {_unbuilt_text(u)}" for u in result.unbuilt[:20]]
        if len(result.unbuilt) > 20:
            out.append(f"skipped: ... and {len(result.unbuilt) - 20} more")
    return out


_SKIP_REASONS = {"backslash": "a backslash in the name (common in zips made on Windows)",
                 "control": "a control character in the name",
                 "not-utf8": "the name is not valid UTF-8"}


def _skipped_text(skipped: list[SkippedFile]) -> str:
    """One warning naming the files the scan left out (said by every command)."""
    # A name as typed, unless it holds characters a terminal cannot show.
    named = [f"{s.path if s.reason == 'backslash' else ascii(s.path)}: {_SKIP_REASONS[s.reason]}"
             for s in skipped[:10]]
    return (f"skipped {len(skipped)} image file(s) whose name sheetsync cannot use "
            f"(rename them to include them): " + "; ".join(named)
            + (" ..." if len(skipped) > 10 else ""))


def describe(result: Result) -> list[str]:
    """What a command did, as lines for people."""
    # Keyed by class name: importing sheetsync.results (pandas) would slow `sheetsync --help`.
    words = _WORDS.get(type(result).__name__)
    if words is None:
        raise TypeError(f"no words for {type(result).__name__}")
    return words(result)


def next_step(result: Result) -> str | None:
    """The command that obviously comes next, with why (None where nothing obvious does)."""
    name = type(result).__name__
    r: Any = result
    if name == "InitResult":
        return "sheetsync train (a first score and predictions), then sheetsync push"
    if name == "TrainOutcome":
        return "sheetsync push, or sheetsync predict first for out-of-sample review columns"
    if name == "PredictResult":
        return "sheetsync push (rows ordered by the out-of-sample scores)"
    if name == "PushResult":
        return f"edit label / split / action / note in {r.sheet}, then sheetsync pull"
    if name == "PullResult" and r.edited:
        return "sheetsync pull (without --dry-run)" if r.dry_run else (
            f"sheetsync train (a score for {r.version.name}), then sheetsync push")
    if name == "AugmentResult" and r.plan.variants:
        return "sheetsync augment (without --dry-run)" if r.dry_run else (
            "sheetsync push (the derived rows, to veto any), then sheetsync train")
    if name == "CheckoutResult" and r.version is not None:
        return f"sheetsync train (a score for {r.version.name}), then sheetsync push"
    if name == "WatchResult":
        if r.abandoned_training:
            return "sheetsync watch (the interrupted training runs again first)"
        return "sheetsync watch (without --once) to keep the sheet in step" if r.once else None
    if name == "StatusResult" and r.sheet is not None:
        return "sheetsync pull" if r.pending else None if r.pushed else "sheetsync push"
    return None


def _init_lines(r: Any) -> list[str]:
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


def _push_lines(r: Any) -> list[str]:
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
    from ._reviewsheet import model_text, summary_text

    out = [f"model: {model_text(model)}"] if model is not None else []
    if summary is not None:
        out.append(f"summary: {summary_text(summary)}")
        if summary.unreadable_paths:
            out.append("unreadable (flagged in the sheet, excluded from training): "
                       + ", ".join(summary.unreadable_paths))
    return out


def _publish_lines(r: Any) -> list[str]:
    return [f"images: {r.uploaded} of {r.objects} objects uploaded to gs://{r.bucket} "
            f"({_size(r.bytes_sent)}), {r.already} already there; {r.requests} requests, "
            f"{r.seconds:.1f} s"]


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def _prune_lines(plan: Any) -> list[str]:
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


def _pull_lines(r: Any) -> list[str]:
    if not r.edited:
        return [f"nothing to pull: the sheet matches {r.base.name}", *_usage_lines(r.usage)]
    lines = [*(f"derived {f.id} ({f.transform}): {f.note}" for f in r.followed),
             _changes_text(r.changes, len(r.moves))]
    if r.dry_run:
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
    if plan.variants:
        lines.append(plan.table().to_string())
    return [*lines, *(f"  {s.label}: {s.planned} of {s.wanted} planned (not enough sources)"
                      for s in plan.short)]


def _augment_lines(r: Any) -> list[str]:
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
    from .versions import DIFF_FIELDS

    per_field = changes.groupby("field").size()
    parts = [f"{n} {f or 'row'} change(s)" if f in DIFF_FIELDS or not f
             else f"{n} change(s) in column {f!r}" for f, n in per_field.items() if f != "path"]
    return ", ".join(parts) + f"; {n_moves} file(s) to move"


def _train_lines(r: Any) -> list[str]:
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
    from ._bars import duration

    try:
        return duration(float(seconds))
    except (TypeError, ValueError):
        return f"{seconds} s"


def _predict_lines(r: Any) -> list[str]:
    return [*_excluded_lines(r.excluded), f"out-of-sample probabilities for {r.images} images of {r.version.name} "
            f"({r.folds} folds x {r.epochs} epochs" + (f", {r.seeds} fold seeds" if r.seeds > 1 else "")
            + "); `sheetsync push` uses them"]


def _status_lines(r: Any) -> list[str]:
    lines = [f"{r.root}: {r.version.name}, {r.images} images", r.counts.to_string()]
    if r.sheet is not None and not r.pushed:
        lines.append(f"sheet: {r.sheet} (not pushed yet)")
    elif r.sheet is not None:
        lines.append(f"sheet: {r.sheet}: " + (f"{len(r.pending)} edit(s) not pulled yet"
                                               if r.pending else "no pending edits"))
        lines += [f"  {e}" for e in r.pending[:20]]
    if r.last_score:
        s = r.last_score
        lines.append(f"last score: v{s['version']} val {s['best_val_accuracy']} "
                     f"test {s['test_accuracy']}")
    return lines


def _checkout_lines(r: Any) -> list[str]:
    if r.version is None:
        return [f"{r.base.name} already matches v{r.target}"]
    return [f"restored v{r.target}: {r.moved} file(s) moved; recorded {r.version.name}"]


def _scores_lines(r: Any) -> list[str]:
    from ._tables import scores_lines

    return [*scores_lines(r.table), *([f"chart: {r.chart}"] if r.chart else [])]


def _usage_lines(usage: str) -> list[str]:
    return [f"sheet: {usage}"] if usage else []


def _watch_lines(r: Any) -> list[str]:
    return [f"{r.cycles} cycle(s), {r.pulls} pull(s), {r.trainings} training(s), "
            f"{r.republished} republish(es), {r.errors} error(s)"
            + (f"; last error: {r.last_error}" if r.last_error else "")]


def _republished_text(d: dict[str, Any]) -> str:
    from .results import PredictionSource

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


def watch_event_text(event: Any) -> str:
    """What one ``sheetsync watch`` event says to people (:class:`sheetsync.watch.Event`)."""
    words = _WATCH_WORDS.get(event.event)
    if words is None:
        raise TypeError(f"no words for the watch event {event.event!r}")
    return words(event.data)


def _report_lines(r: Any) -> list[str]:
    lines = [f"wrote {r.path} ({r.size_bytes / 1e6:.1f} MB, v{r.version}, {r.n_shown} of "
             f"{r.n_images} images drawn, {r.seconds:.1f} s)",
             f"split coverage: {r.coverage.verdict}",
             *(f"  {f.title}: {f.count}" for f in r.findings)]
    if r.map_csv:
        lines.append("map_x, map_y and cluster go into the sheet with the next `sheetsync push`")
    return lines


_WORDS: dict[str, Callable[[Any], list[str]]] = {
    "InitResult": _init_lines, "PushResult": _push_lines, "PullResult": _pull_lines,
    "TrainOutcome": _train_lines, "PredictResult": _predict_lines, "StatusResult": _status_lines,
    "CheckoutResult": _checkout_lines, "ScoresResult": _scores_lines,
    "PublishResult": _publish_lines, "ReportResult": _report_lines,
    "WatchResult": _watch_lines,
    "AugmentResult": _augment_lines,
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--project", "project_dir", default=None, type=click.Path(),
              help="Project folder holding sheetsync.toml (default: the current folder or the "
                   "nearest folder above it that has one).")
@click.option("-v", "--verbose", is_flag=True,
              help="Show TensorFlow's own log lines (also SHEETSYNC_VERBOSE=1).")
@click.version_option(package_name="sheetsync")
@click.pass_context
def cli(ctx: click.Context, project_dir: str | None, verbose: bool) -> None:
    """Fix an image dataset together in a shared spreadsheet.

    \b
    Example:
        sheetsync init data/        # data/<split>/<class>/<image>
        sheetsync train --epochs 5
        sheetsync push              # then edit the sheet
        sheetsync pull && sheetsync train
    """
    if verbose:
        os.environ["SHEETSYNC_VERBOSE"] = "1"
    ctx.obj = {"dir": Path(project_dir or "."), "given": project_dir is not None}


@cli.command()
@click.argument("data_root", type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(["local", "google"]), default="local", show_default=True)
@click.option("--classes", help="Comma-separated class names in model order (default: the folders).")
@click.option("--splits", help="Comma-separated split folders (default: detected).")
@click.option("--test-dir", help="Test folder inside DATA_ROOT (default: label_book or test).")
@click.option("--force", is_flag=True, help="Overwrite an existing sheetsync.toml.")
@click.pass_context
def init(ctx: click.Context, data_root: str, backend: str, classes: str | None,
         splits: str | None, test_dir: str | None, force: bool) -> None:
    """Start a project on DATA_ROOT and record version 1.

    Example: sheetsync init ./data --test-dir label_book
    """
    from .project import Project

    with _errors():
        _, report = Project.init(
            data_root, ctx.obj["dir"], backend=backend,
            classes=classes.split(",") if classes else None,
            splits=splits.split(",") if splits else None, test_dir=test_dir, force=force)
        _show(report)


@cli.command()
@click.option("--epochs", type=click.IntRange(min=1), help="Override the configured epochs.")
@click.option("--seed", type=int, help="Override the configured seed.")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16"]))
@click.option("--xla/--no-xla", "jit_compile", default=None, help="Compile with XLA.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train with this many seeds; the score row records their spread.")
@click.pass_context
def train(ctx: click.Context, epochs: int | None, seed: int | None, precision: str | None,
          jit_compile: bool | None, repeats: int) -> None:
    """Train the fixed model on the current version; write a score row.

    Example: sheetsync train --epochs 10
    """
    from ._bars import TrainBars

    bars = TrainBars()
    with _errors():
        try:
            result = _project(ctx).train(
                epochs=epochs, seed=seed, precision=precision, jit_compile=jit_compile,
                on_epoch=bars.epoch, on_decode=bars.decoded, on_first_epoch=bars.compiling, repeats=repeats)
        finally:
            bars.close()
        _show(result)


@cli.command()
@click.option("--folds", type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per fold.")
@click.option("--fold-seeds", type=click.IntRange(min=1),
              help="Independent k-fold runs, averaged (default [review] fold_seeds = 3).")
@click.pass_context
def predict(ctx: click.Context, folds: int | None, epochs: int | None, fold_seeds: int | None) -> None:
    """Out-of-sample probabilities for every image (k-fold), for the review order.

    Example: sheetsync predict --folds 4 --epochs 20 --fold-seeds 2
    """
    from ._bars import TrainBars

    bars = TrainBars()
    with _errors():
        project = _project(ctx)
        jit = project.config.train.jit_compile
        try:
            result = project.predict(folds=folds, epochs=epochs, fold_seeds=fold_seeds,
                                     on_fold=lambda message: bars.fold(message, jit))
        finally:
            bars.close()
        _show(result)


@cli.command()
@click.option("--force", is_flag=True, help="Overwrite unpulled sheet edits (backed up first).")
@click.option("--order", help="Review order: combined, issue, confidence, loss, random, path.")
@click.pass_context
def push(ctx: click.Context, force: bool, order: str | None) -> None:
    """Publish one row per image, the likeliest mistakes first.

    Example: sheetsync push --order issue
    """
    with _errors():
        _show(_project(ctx).push(force=force, order=order))


@cli.command()
@click.option("--prune", is_flag=True,
              help="Delete the bucket's objects that no version references (asks first).")
@click.option("--yes", is_flag=True, help="With --prune: delete without asking.")
@click.pass_context
def publish(ctx: click.Context, prune: bool, yes: bool) -> None:
    """Upload the images to the [publish] bucket (push does this too); --prune cleans up.

    Example: sheetsync publish --prune
    """
    with _errors():
        project = _project(ctx)
        if not prune:
            _show(project.publish())
            return
        plan = project.prune_plan()
        click.echo("\n".join(_prune_lines(plan)))
        if not plan.unreferenced:
            return
        if not yes and not click.confirm("delete them?", default=False):
            click.echo("nothing deleted")
            return
        click.echo(f"deleted {project.prune(plan)} objects")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Validate and show the changes; change nothing.")
@click.pass_context
def pull(ctx: click.Context, dry_run: bool) -> None:
    """Validate the sheet, record a new version, rearrange the folders.

    Example: sheetsync pull --dry-run
    """
    with _errors():
        result = _project(ctx).pull(dry_run=dry_run)
        _show(result)
        if result.dry_run and result.edited and len(result.changes):
            from ._tables import diff_lines

            _echo_lines(diff_lines(result.changes, result.base.name, "the sheet")[1:])


@cli.command()
@click.option("--no-sheet", is_flag=True, help="Do not read the sheet (offline).")
@click.pass_context
def status(ctx: click.Context, no_sheet: bool) -> None:
    """Counts per split and class, and sheet edits not pulled yet.

    Example: sheetsync status
    """
    with _errors():
        _show(_project(ctx).status(check_sheet=not no_sheet))


@cli.command()
@click.argument("a")
@click.argument("b", default="latest")
@click.pass_context
def diff(ctx: click.Context, a: str, b: str) -> None:
    """What changed between versions A and B (default: latest).

    Example: sheetsync diff v1 v2
    """
    from ._tables import diff_lines

    with _errors():
        project = _project(ctx)
        changes = project.diff(a, b)
        after = project.versions.load(b)
        paths = dict(zip(after["id"].astype(str), after["path"].astype(str), strict=True))
        _echo_lines(diff_lines(changes, a, b, paths))


@cli.command()
@click.pass_context
def log(ctx: click.Context) -> None:
    """Versions and their scores.

    Example: sheetsync log
    """
    from ._tables import log_lines

    with _errors():
        project = _project(ctx)
        _echo_lines(log_lines(project.log(), [*project.config.splits, "dropped", "images"]))


@cli.command()
@click.argument("version")
@click.pass_context
def checkout(ctx: click.Context, version: str) -> None:
    """Restore the folders to VERSION (recorded as a new version).

    Example: sheetsync checkout v1
    """
    with _errors():
        _show(_project(ctx).checkout(version))


@cli.command()
@click.pass_context
def scores(ctx: click.Context) -> None:
    """The score history, and the path of its chart.

    Example: sheetsync scores
    """
    with _errors():
        click.echo(str(_project(ctx).score_table()))


@cli.command()
@click.option("--interval", type=float, default=10.0, show_default=True,
              help="Seconds between polls of the sheet.")
@click.option("--quiet", type=float, default=30.0, show_default=True,
              help="Seconds an edit must stay unchanged before it is pulled.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per retraining.")
@click.option("--no-train", is_flag=True, help="Pull and republish only; never train.")
@click.option("--once", is_flag=True, help="Run one cycle and exit (cron, CI).")
@click.option("--cycle-timeout", type=click.FloatRange(min=0), default=1800.0,
              show_default=True, help="Seconds a cycle (a training: each epoch) may take "
              "before it is stopped and reported; 0: no limit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event line.")
@click.pass_context
def watch(ctx: click.Context, interval: float, quiet: float, epochs: int | None, no_train: bool,
          once: bool, cycle_timeout: float, as_json: bool) -> None:
    """Keep the sheet, folders and scores in step while people edit (a service).

    Polls the sheet, pulls edits once they settle, retrains, republishes sheetsync's own
    columns (never a cell people edit). Stops cleanly on SIGTERM or Ctrl-C.

    Example: sheetsync watch --interval 10 --quiet 30 --epochs 5
    """
    from .watch import WatchSettings, run

    def show(event: Any) -> None:
        click.echo(event.json() if as_json else event.text())

    with _errors():
        settings = WatchSettings(interval=interval, quiet=quiet, train=not no_train,
                                 epochs=epochs, once=once, cycle_timeout=cycle_timeout)
        result = run(_project(ctx), settings, log=show)
        step = None if as_json else next_step(result)  # --json: only event lines
        if step:
            click.echo(f"next: {step}")


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the page (default: sheetsync-report.html in the project).")
@click.option("--max-points", type=click.IntRange(min=100), help="Most images drawn on the map "
              "(default 5000; statistics always use every image).")
@click.pass_context
def report(ctx: click.Context, output: str | None, max_points: int | None) -> None:
    """Write one self-contained HTML page: embedding map, split coverage, dataset summary,
    errors per class and the score history with intervals.

    Example: sheetsync report -o report.html
    """
    with _errors():
        _show(_project(ctx).report(out=Path(output) if output else None, max_points=max_points))


@cli.command()
@click.option("--budget", type=int, help="Derived images to add (default: fill train+val up to [augment] cap).")
@click.option("--seed", type=int, help="Seed for the transform parameters (default: [augment] seed).")
@click.option("--splits", help="Comma-separated splits to augment (default: train; val stays comparable).")
@click.option("--families", help="Comma-separated transform families to use (default: all in the table).")
@click.option("--dry-run", is_flag=True, help="Print the plan, write nothing.")
@click.pass_context
def augment(ctx: click.Context, budget: int | None, seed: int | None, splits: str | None,
            families: str | None, dry_run: bool) -> None:
    """Derived images (flips, rotations, composed numerals...) as rows the team can veto.

    Example: sheetsync augment --dry-run && sheetsync augment && sheetsync push
    """
    with _errors():
        result = _project(ctx).augment(
            budget=budget, seed=seed, dry_run=dry_run,
            on_plan=lambda plan: _echo_lines(augment_plan_lines(plan)),
            splits=splits.split(",") if splits else None,
            families=families.split(",") if families else None)
        _show(result)


def main() -> None:
    cli(prog_name="sheetsync")


if __name__ == "__main__":
    main()
