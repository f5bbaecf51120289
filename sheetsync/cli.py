"""The command line: each command parses, makes one library call and prints."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .errors import SheetsyncError

# TensorFlow's C++ logging (CUDA probing, oneDNN notices) is noise for people at a terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    from .project import Project

    return Project.open(ctx.obj["dir"])


def _show(report: Any) -> None:
    for w in report.warnings:
        click.echo(f"Warning: {w}", err=True)
    if report.lines:
        click.echo(str(report))


def _epoch_printer() -> Callable[[int, int, dict[str, float]], None]:
    def show(epoch: int, total: int, logs: dict[str, float]) -> None:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
        click.echo(f"epoch {epoch}/{total}  {metrics}", err=True)

    return show


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-C", "--project", "project_dir", default=".", type=click.Path(file_okay=False),
              help="Project folder holding sheetsync.toml (default: current folder).")
@click.version_option(package_name="sheetsync")
@click.pass_context
def cli(ctx: click.Context, project_dir: str) -> None:
    """Fix an image dataset together in a shared spreadsheet.

    \b
    Example:
        sheetsync init data/        # data/<split>/<class>/<image>
        sheetsync train --epochs 5
        sheetsync push              # then edit the sheet
        sheetsync pull && sheetsync train
    """
    ctx.obj = {"dir": Path(project_dir)}


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
@click.pass_context
def train(ctx: click.Context, epochs: int | None, seed: int | None, precision: str | None,
          jit_compile: bool | None) -> None:
    """Train the fixed model on the current version; write a score row.

    Example: sheetsync train --epochs 10
    """
    with _errors():
        _show(_project(ctx).train(epochs=epochs, seed=seed, precision=precision,
                                  jit_compile=jit_compile, on_epoch=_epoch_printer()))


@cli.command()
@click.option("--folds", type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per fold.")
@click.pass_context
def predict(ctx: click.Context, folds: int | None, epochs: int | None) -> None:
    """Out-of-sample probabilities for every image (k-fold), for the review order.

    Example: sheetsync predict --folds 4 --epochs 20
    """
    def on_fold(message: str) -> None:
        click.echo(message, err=True)

    with _errors():
        _show(_project(ctx).predict(folds=folds, epochs=epochs, on_fold=on_fold))


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
@click.option("--dry-run", is_flag=True, help="Validate and show the changes; change nothing.")
@click.pass_context
def pull(ctx: click.Context, dry_run: bool) -> None:
    """Validate the sheet, record a new version, rearrange the folders.

    Example: sheetsync pull --dry-run
    """
    with _errors():
        report = _project(ctx).pull(dry_run=dry_run)
        _show(report)
        changes = report.data.get("changes")
        if dry_run and changes is not None and len(changes):
            click.echo(changes.to_string(index=False))


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
    with _errors():
        changes = _project(ctx).diff(a, b)
        click.echo(changes.to_string(index=False) if len(changes) else "no differences")


@cli.command()
@click.pass_context
def log(ctx: click.Context) -> None:
    """Versions and their scores.

    Example: sheetsync log
    """
    with _errors():
        table = _project(ctx).log()
        click.echo(table.to_string(index=False) if len(table) else "no versions yet")


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
        project = _project(ctx)
        table = project.scores.read()
        if not len(table):
            click.echo("no score rows yet: run `sheetsync train`")
            return
        click.echo(table.to_string(index=False))
        chart = project._chart()
        if chart:
            click.echo(f"chart: {chart}")


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
    def show_plan(plan: Any) -> None:
        click.echo(f"plan: {len(plan.variants)} derived image(s), budget {plan.budget}; "
                   f"priorities: {plan.priorities.source}")
        if plan.variants:
            click.echo(plan.table().to_string())
        for note in plan.notes:
            click.echo(f"  {note}")

    with _errors():
        result = _project(ctx).augment(
            budget=budget, seed=seed, dry_run=dry_run, on_plan=show_plan,
            splits=splits.split(",") if splits else None,
            families=families.split(",") if families else None)
        for line in result.skipped[:20]:
            click.echo(f"skipped: {line}", err=True)
        if len(result.skipped) > 20:
            click.echo(f"skipped: ... and {len(result.skipped) - 20} more", err=True)
        if dry_run:
            click.echo("dry run: nothing written")
        elif result.version is not None:
            click.echo(f"wrote {result.written} derived image(s), rebuilt {result.rebuilt}, in "
                       f"{result.seconds:.1f} s; recorded v{result.version} (`sheetsync push` shows them)")
        else:
            click.echo("nothing to add: the budget is spent")


def main() -> None:
    cli(prog_name="sheetsync")


if __name__ == "__main__":
    main()
