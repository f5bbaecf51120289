"""The whole loop on a synthetic dataset, for a fresh machine: ``python -m sheetsync.demo DIR``.

It draws a small handwritten-looking Roman-numeral dataset (with a few deliberately wrong labels
and one blank image), then runs init -> train -> push -> edits as a person would make them in
the workbook -> pull -> augment (40 derived images) -> train -> push (derived rows in the
workbook), and prints the score table.
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

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


def edit_workbook_as_a_person(workbook: Path, truth: Truth, move_to_val: int = 2) -> list[str]:
    """Open the pushed workbook and edit cells: fix wrong labels, move some to val, drop blanks."""
    from openpyxl import load_workbook

    wb = load_workbook(workbook)
    ws = wb["data"]
    header = [c.value for c in ws[1]]
    col = {name: header.index(name) + 1 for name in ("path", "label", "split", "action", "note")}
    done = []
    moved = 0
    for r in range(2, ws.max_row + 1):
        path = ws.cell(r, col["path"]).value
        if path in truth.wrong:
            ws.cell(r, col["label"]).value = truth.wrong[path]
            ws.cell(r, col["note"]).value = "relabelled in review"
            done.append(f"row {r}: {path} relabelled {truth.wrong[path]}")
        elif path in truth.blank:
            ws.cell(r, col["action"]).value = "drop"
            ws.cell(r, col["note"]).value = "blank image"
            done.append(f"row {r}: {path} dropped (blank)")
        elif moved < move_to_val and str(path).startswith("train/") and "-0" in str(path):
            ws.cell(r, col["split"]).value = "val"
            moved += 1
            done.append(f"row {r}: {path} moved to val")
    wb.save(workbook)
    return done


def run(folder: Path, epochs: int = 8) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .project import Project

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    say = print
    if data.exists():
        say(f"{data} exists already: delete {folder} to start again")
        return 1
    truth = make_dataset(data)
    say(f"== made a synthetic dataset in {data}: {len(truth.wrong)} wrong labels, 1 blank image")
    project, report = Project.init(data, folder)
    say(str(report))
    say(f"== sheetsync train --epochs {epochs}")
    say(str(project.train(epochs=epochs)))
    say("== sheetsync push")
    say(str(project.push()))
    workbook = project.config.resolve(project.config.local.path)
    say(f"== a person edits {workbook.name}")
    for line in edit_workbook_as_a_person(workbook, truth):
        say("   " + line)
    say("== sheetsync status")
    say(str(project.status()))
    say("== sheetsync pull")
    say(str(project.pull()))
    say("== sheetsync augment --budget 40")
    augmented = project.augment(budget=40, on_plan=lambda plan: say(plan.table().to_string()))
    say(f"wrote {augmented.written} derived images; recorded v{augmented.version}")
    say(f"== sheetsync train --epochs {epochs}")
    say(str(project.train(epochs=epochs)))
    say("== sheetsync push   (derived rows follow the originals, composed ones first)")
    say(str(project.push()))
    say("== sheetsync log")
    say(project.log().to_string(index=False))
    say(f"\nworkbook: {workbook}\nscore chart: {project.state / 'scores.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sheetsync.demo", description=__doc__)
    parser.add_argument("folder", nargs="?", default="demo-run", type=Path)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    return run(args.folder, args.epochs)


if __name__ == "__main__":
    sys.exit(main())
