"""The command line: each command parses, makes one library call and prints.

The library returns typed results (:mod:`sheetsync.results`); the words people read are made
in the command line's own module :mod:`sheetsync._words`, imported only when a command runs
(it imports pandas, which would slow ``sheetsync --help``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import SheetsyncError

if TYPE_CHECKING:  # the results module imports pandas: only when a command runs
    from .results import Result

# TensorFlow's logging (absl, CUDA probing, oneDNN notices) is noise for people at a terminal:
# sheetsync._quiet drops it unless --verbose / SHEETSYNC_VERBOSE=1 asks for it.


class _Commands(click.Group):
    """The command group; library errors in any command become one clean message and their
    exit code, never a traceback (the one place that maps errors to exit codes)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SheetsyncError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; rerun the command to finish or roll back any half-done "
                       "move.", err=True)
            sys.exit(130)


def _project(ctx: click.Context) -> Any:
    from .config import find_project
    from .project import Project

    return Project.open(find_project(ctx.obj["dir"], given=ctx.obj["given"]))


def _show(result: Result) -> None:
    from ._words import describe, next_step, warnings_of

    for w in warnings_of(result):
        click.echo(f"Warning: {w}", err=True)
    lines = describe(result)
    if lines:
        _echo_lines(lines)
    step = next_step(result)
    if step:
        click.echo(f"next: {step}")


def _echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    from ._trainbars import TrainBars

    bars = TrainBars()
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
@click.option("--from-scratch", is_flag=True,
              help="Train every changed fold from scratch (no fine-tuning of the previous "
                   "version's fold models; [review] warm_epochs).")
@click.pass_context
def predict(ctx: click.Context, folds: int | None, epochs: int | None, fold_seeds: int | None,
            from_scratch: bool) -> None:
    """Out-of-sample probabilities for every image (k-fold), for the review order.

    Example: sheetsync predict --folds 4 --epochs 20 --fold-seeds 2
    """
    from ._trainbars import TrainBars

    bars = TrainBars()
    project = _project(ctx)
    jit = project.config.train.jit_compile
    try:
        result = project.predict(folds=folds, epochs=epochs, fold_seeds=fold_seeds,
                                 from_scratch=from_scratch,
                                 on_fold=lambda event: bars.fold(event, jit))
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
    project = _project(ctx)
    if not prune:
        _show(project.publish())
        return
    plan = project.prune_plan()
    from ._words import prune_lines

    _echo_lines(prune_lines(plan))
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

    project = _project(ctx)
    changes = project.diff(a, b)
    after = project.versions.load(b)
    paths = dict(zip(after["id"].astype(str), after["path"].astype(str), strict=True))
    _echo_lines(diff_lines(changes, a, b, paths))
    if len(changes):
        from ._words import diff_next

        click.echo(f"next: {diff_next(a, b)}")


@cli.command()
@click.pass_context
def log(ctx: click.Context) -> None:
    """Versions and their scores.

    Example: sheetsync log
    """
    from ._tables import log_lines
    from ._words import log_next

    project = _project(ctx)
    versions = project.log()
    _echo_lines(log_lines(versions, [*project.config.splits, "dropped", "images"]))
    step = log_next(versions)
    if step:
        click.echo(f"next: {step}")


@cli.command()
@click.argument("version")
@click.pass_context
def checkout(ctx: click.Context, version: str) -> None:
    """Restore the folders to VERSION (recorded as a new version).

    Example: sheetsync checkout v1
    """
    _show(_project(ctx).checkout(version))


@cli.command()
@click.pass_context
def scores(ctx: click.Context) -> None:
    """The score history, and the path of its chart.

    Example: sheetsync scores
    """
    _show(_project(ctx).score_table())


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
    from ._words import next_step, watch_event_json, watch_event_line
    from .watch import Event, WatchSettings, run

    def show(event: Event) -> None:
        click.echo(watch_event_json(event) if as_json else watch_event_line(event))

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
    from ._words import report_step_text

    _show(_project(ctx).report(out=Path(output) if output else None, max_points=max_points,
                               on_step=lambda step: click.echo(report_step_text(step), err=True)))


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
    from ._words import augment_plan_lines

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
