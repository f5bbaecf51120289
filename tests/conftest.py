"""Shared fixtures: tiny real datasets of real PNG files in tmp_path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from PIL import Image

from sheetsync.demo import draw_numeral

CLASSES = ["i", "ii", "iii"]
SHARED_DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"


def write_images(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> list[Path]:
    """``{"train": {"i": 3, ...}, ...}`` -> real PNG files, distinct content each."""
    rng = random.Random(seed)
    out = []
    n = 0
    for split, per_class in layout.items():
        for cls, count in per_class.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                n += 1
                path = folder / f"img-{n:04d}.png"
                draw_numeral(cls, rng).save(path)
                out.append(path)
    return out


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """train/val with 3 classes, 4+2 images each, and a byte-identical train/val pair."""
    root = tmp_path / "data"
    write_images(root, {"train": {c: 4 for c in CLASSES}, "val": {c: 2 for c in CLASSES}})
    twin = root / "val" / "ii" / "twin.png"
    twin.write_bytes((root / "train" / "ii" / "img-0005.png").read_bytes())
    return root


@pytest.fixture
def blank_png(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.new("L", (40, 20), 255).save(path)
    return path


def dcai_root() -> Path:
    """The competition data beside the repo; a failure in CI when missing, else a skip."""
    if SHARED_DCAI.is_dir():
        return SHARED_DCAI
    if os.environ.get("CI") == "true":
        pytest.fail(f"{SHARED_DCAI} is missing, and CI=true requires it")
    pytest.skip("../shared/data/dcai is not available")
