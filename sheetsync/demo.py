"""The whole loop on a synthetic dataset, for a fresh machine: ``python -m sheetsync.demo DIR``.

It draws a Roman-numeral dataset with 15% of the training labels deliberately wrong and one
blank image, then runs init -> train -> push -> a scripted reviewer who reads only the first
rows of the workbook and fixes what is wrong there -> pull -> train, and says honestly what
that bought:

* how many of the planted wrong labels the review order put in the first rows (and how many a
  random order would have put there);
* what the reviewer fixed, and how many wrong labels are left below the rows read;
* the test accuracy before and after, from several training seeds, with a 95% bootstrap
  interval of the difference (bootstrap over the test images, paired, and over the seeds),
  and whether that difference is larger than its noise.

Then it adds 40 derived images (``sheetsync augment``: flips, rotations, composed numerals)
and pushes again, so the workbook shows the derived rows after the originals, ready to veto;
they are not trained on here (the comparison above stays about the review alone).

The test folder (``label_book``) has clean labels and is the same for both versions, so the
comparison is fair; the validation split picks each run's best epoch, so it is not scored.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROMAN = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]


@dataclass(frozen=True)
class Truth:
    """What the generator knows and a reviewer would find: wrong labels, blank images."""

    wrong: dict[str, str]  # relative path -> the true class
    blank: list[str]


def draw_numeral(text: str, rng: random.Random, size: int = 64) -> Image.Image:
    """A grayscale image of ``text`` with jitter in position, size, stroke and rotation."""
    img = Image.new("L", (size * 2, size), 255)
    font = ImageFont.load_default(size=rng.randint(26, 38))
    d = ImageDraw.Draw(img)
    box = d.textbbox((0, 0), text.upper(), font=font, stroke_width=1)
    w, h = box[2] - box[0], box[3] - box[1]
    x = (img.width - w) // 2 - box[0] + rng.randint(-6, 6)
    y = (img.height - h) // 2 - box[1] + rng.randint(-5, 5)
    d.text((x, y), text.upper(), fill=0, font=font, stroke_width=rng.randint(0, 2), stroke_fill=0)
    img = img.rotate(rng.uniform(-8, 8), fillcolor=255, resample=Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    # Three gray levels, like the competition's scans (0, 64, 255).
    return img.point(lambda v: 0 if v < 80 else 64 if v < 170 else 255)


def make_dataset(
    root: Path,
    per_class: dict[str, int] | None = None,
    classes: list[str] = ROMAN,
    wrong: int = 6,
    seed: int = 0,
    label_book: int = 3,
) -> Truth:
    """Write ``root/<split>/<class>/*.png``; ``wrong`` train images go to a wrong class folder."""
    rng = random.Random(seed)
    per_class = per_class or {"train": 40, "val": 10}
    wrong_paths: dict[str, str] = {}
    blank: list[str] = []
    n = 0
    for split, count in per_class.items():
        for cls in classes:
            for _ in range(count):
                n += 1
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                draw_numeral(cls, rng).save(folder / f"img-{n:05d}.png")
    train_files = sorted((root / "train").rglob("*.png"))
    for path in rng.sample(train_files, min(wrong, len(train_files))):
        true_cls = path.parent.name
        bad_cls = rng.choice([c for c in classes if c != true_cls])
        target = root / "train" / bad_cls / path.name
        path.rename(target)
        wrong_paths[target.relative_to(root).as_posix()] = true_cls
    if train_files:
        blank_path = root / "train" / classes[0] / "img-00000.png"
        Image.new("L", (128, 64), 255).save(blank_path)
        blank.append(blank_path.relative_to(root).as_posix())
    for cls in classes[:]:
        for k in range(label_book):
            folder = root / "label_book" / cls
            folder.mkdir(parents=True, exist_ok=True)
            draw_numeral(cls, rng).save(folder / f"book-{cls}-{k}.png")
    truth = Truth(wrong_paths, blank)
    (root.parent / f"{root.name}-truth.json").write_text(json.dumps(truth.__dict__, indent=1))
    return truth


@dataclass
class Review:
    """What the scripted reviewer saw in the first ``read`` rows and changed."""

    read: int  # rows read, from the top
    rows: int  # rows in the sheet
    wrong_in_read: int  # planted wrong labels among the rows read
    relabelled: list[str] = field(default_factory=list)  # "row 7: train/ii/img-00012.png ii -> iv"
    dropped: list[str] = field(default_factory=list)


def review_first_rows(workbook: Path, truth: Truth, fraction: float = 0.2) -> Review:
    """Edit the workbook as a person would who reads only the first ``fraction`` of the rows:
    a planted wrong label seen there is relabelled, a blank image seen there is dropped."""
    from openpyxl import load_workbook

    from .sheets.local import header_row

    wb = load_workbook(workbook)
    ws = wb["data"]
    top = header_row(ws)  # below the info line
    names = [c.value for c in ws[top]]
    col = {n: names.index(n) + 1 for n in names if isinstance(n, str)}
    paths = [ws.cell(r, col["path"]).value for r in range(top + 1, ws.max_row + 1)]
    read = max(1, round(len(paths) * fraction))
    review = Review(read, len(paths), sum(p in truth.wrong for p in paths[:read]))
    for k, path in enumerate(paths[:read]):
        r = top + 1 + k
        if path in truth.wrong:
            old = ws.cell(r, col["label"]).value
            ws.cell(r, col["label"]).value = truth.wrong[path]
            ws.cell(r, col["note"]).value = "relabelled in review"
            review.relabelled.append(f"row {r}: {path} {old} -> {truth.wrong[path]}")
        elif path in truth.blank:
            ws.cell(r, col["action"]).value = "drop"
            ws.cell(r, col["note"]).value = "blank image"
            review.dropped.append(f"row {r}: {path} (blank)")
    wb.save(workbook)
    return review


def paired_bootstrap(before: Any, after: Any, n: int = 5000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the accuracy difference ``after - before``.

    ``before`` and ``after`` are 0/1 correctness, one row per training seed (or a single row),
    one column per test image, the same images in both. Each resample draws the images with
    replacement (paired: the same draw for both versions) and, per version, the seeds with
    replacement, so the interval holds the test set's noise and the training seed's."""
    import numpy as np

    before, after = np.atleast_2d(np.asarray(before, float)), np.atleast_2d(np.asarray(after, float))
    rng = np.random.default_rng(seed)
    images = rng.integers(0, before.shape[1], size=(n, before.shape[1]))
    diffs = np.empty(n)
    for k in range(n):
        sb = rng.integers(0, len(before), size=len(before))
        sa = rng.integers(0, len(after), size=len(after))
        diffs[k] = after[sa][:, images[k]].mean() - before[sb][:, images[k]].mean()
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def _test_correct(project: Any, version: int) -> Any:
    """Per test image: 1 where the model just trained on ``version`` is right."""
    from . import train as training
    from .inputs import test_items

    classes = list(project.config.classes)
    test = test_items(project.config.test_dir, classes, project.store.test_hash_cache())
    if test is None:
        raise ValueError("the demo dataset has no test folder")
    pred = training.predict(project.store.weights_path(version), test, classes,
                            cache_dir=project.store.decode_cache)
    truth = [classes.index(c) for c in test["label"]]
    return (pred.probs.argmax(axis=1) == truth).astype(float)


def _train_seeds(project: Any, epochs: int, seeds: list[int], say: Any) -> Any:
    """Train once per seed; the test images' correctness, one row per seed."""
    import numpy as np

    from ._trainbars import TrainBars

    runs = []
    for seed in seeds:
        bars = TrainBars()
        hooks = dict(on_epoch=bars.epoch, on_decode=bars.decoded) if bars.terminal else {}
        try:
            outcome = project.train(epochs=epochs, seed=seed, **hooks)
        finally:
            bars.close()
        runs.append(_test_correct(project, outcome.version.version))
        say(f"   seed {seed}: test accuracy {runs[-1].mean():.3f} "
            f"(best val accuracy {float(outcome.score['best_val_accuracy']):.3f})")
    return np.array(runs)


def _verdict(before: Any, after: Any) -> list[str]:
    import numpy as np

    before, after = np.atleast_2d(before), np.atleast_2d(after)
    diff = float(after.mean() - before.mean())
    lo, hi = paired_bootstrap(before, after)
    seeds, n = len(before), before.shape[1]
    lines = [f"test accuracy {before.mean():.3f} -> {after.mean():.3f}: {diff:+.3f}, "
             f"95% interval {lo:+.3f} .. {hi:+.3f}",
             f"(bootstrap over the {n} test images and the {seeds} training seed(s) of each "
             "version)"]
    if lo > 0 or hi < 0:
        lines.append("the interval excludes 0: the difference is larger than its noise")
    else:
        lines.append("the interval includes 0: this difference is within noise; it does "
                     "not show that the review helped (nor that it hurt)")
    return lines


def run(folder: Path, epochs: int = 12, seeds: list[int] | None = None,
        fraction: float = 0.2, wrong: int = 60) -> int:
    from ._words import augment_plan_lines, describe
    from .project import Project

    seeds = seeds or [123, 124, 125]
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    say = print
    if data.exists():
        say(f"{data} exists already: delete {folder} to start again")
        return 1
    truth = make_dataset(data, wrong=wrong, label_book=20)
    counts = {split: len(list((data / split).rglob("*.png"))) for split in ("train", "val", "label_book")}
    say(f"== made a synthetic dataset in {data}: {counts['train']} train, {counts['val']} val, "
        f"{counts['label_book']} test images (label_book); {len(truth.wrong)} train labels are "
        "wrong on purpose, 1 image is blank")
    project, report = Project.init(data, folder)
    say("\n".join(describe(report)))
    say(f"== sheetsync train --epochs {epochs}, seeds {', '.join(map(str, seeds))}")
    before = _train_seeds(project, epochs, seeds, say)
    say("== sheetsync push")
    say("\n".join(describe(project.push())))
    workbook = project.config.resolve(project.config.local.path)
    review = review_first_rows(workbook, truth, fraction)
    expected = len(truth.wrong) * review.read / review.rows
    say(f"== a reviewer reads the first {review.read} of {review.rows} rows of {workbook.name} "
        f"({fraction:.0%})")
    say(f"   {review.wrong_in_read} of the {len(truth.wrong)} planted wrong labels are in those "
        f"rows (a random order would put about {expected:.0f} there)")
    say(f"   relabelled {len(review.relabelled)}, dropped {len(review.dropped)}; "
        f"{len(truth.wrong) - len(review.relabelled)} wrong labels stay, below the rows read")
    for line in [*review.relabelled[:5], *review.dropped]:
        say("   " + line)
    if len(review.relabelled) > 5:
        say(f"   ... and {len(review.relabelled) - 5} more relabelled")
    say("== sheetsync pull")
    say("\n".join(describe(project.pull())))
    say(f"== sheetsync train --epochs {epochs}, seeds {', '.join(map(str, seeds))}")
    after = _train_seeds(project, epochs, seeds, say)
    say("== what the review bought (test folder, mean over the seeds)")
    for line in _verdict(before, after):
        say("   " + line)
    say("== sheetsync augment --budget 40")
    augmented = project.augment(budget=40, on_plan=lambda plan: say("\n".join(augment_plan_lines(plan))))
    say("\n".join(describe(augmented)))
    say("== sheetsync push   (derived rows follow the originals, composed ones first)")
    say("\n".join(describe(project.push())))
    say("== sheetsync log")
    from ._tables import log_lines

    say("\n".join(log_lines(project.log(), [*project.config.splits, "dropped", "images"])))
    say(f"\nworkbook: {workbook}\nscore chart: {project.store.scores_chart}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sheetsync.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="demo-run", type=Path)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[123, 124, 125])
    parser.add_argument("--wrong", type=int, default=60,
                        help="train labels made wrong on purpose (default 60 of 400)")
    parser.add_argument("--review", type=float, default=0.2,
                        help="fraction of the rows the scripted reviewer reads (default 0.2)")
    args = parser.parse_args(argv)
    return run(args.folder, args.epochs, args.seeds, args.review, args.wrong)


if __name__ == "__main__":
    sys.exit(main())
