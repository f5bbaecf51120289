"""Tiny real image datasets for the model/training tests (PNG files written with Pillow)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

CLASSES = ["a", "b", "c"]
DCAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dcai"
DCAI_CLASSES = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"]


def dcai_or_skip() -> Path:
    import pytest

    if DCAI.is_dir():
        return DCAI
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the competition data is missing at {DCAI}")
    pytest.skip(f"no competition data at {DCAI}")


def write_image(path: Path, rng: np.random.Generator, label_index: int, mode: str) -> None:
    """A small image whose content depends on its class (so a model can learn something)."""
    w, h = int(rng.integers(24, 70)), int(rng.integers(20, 60))
    base = np.full((h, w), 255, np.uint8)
    # Class k: a dark vertical bar in the k-th third of the image, plus noise.
    x0 = label_index * w // 3
    base[:, x0 : x0 + max(2, w // 4)] = 0
    noise = rng.integers(0, 64, (h, w), dtype=np.uint8)
    img = np.clip(base.astype(int) - noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        Image.fromarray(img, "L").save(path)
    else:
        rgb = np.stack([img, np.roll(img, 3, axis=1), 255 - img // 2], axis=-1)
        Image.fromarray(rgb, "RGB").save(path)


def make_split(root: Path, split: str, per_class: int, seed: int) -> pd.DataFrame:
    """Write ``root/split/<class>/*.png`` (grayscale and RGB mixed); return its items frame."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(CLASSES):
        for j in range(per_class):
            write_image(root / split / c / f"{split}{j:03d}.png", rng, k, "L" if j % 2 else "RGB")
    return items_of(root / split, CLASSES)


def items_of(split_dir: Path, classes: list[str], limit: int | None = None) -> pd.DataFrame:
    rows = []
    for c in classes:
        for f in sorted((split_dir / c).glob("*.png"))[:limit]:
            h = hashlib.sha256(f.read_bytes()).hexdigest()
            rows.append({"id": h[:10], "file": str(f), "hash": h, "label": c})
    return pd.DataFrame(rows, columns=["id", "file", "hash", "label"])
