"""Progress bars: tqdm on a terminal, silent otherwise (tests, pipes, CI logs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class Progress(Protocol):
    def __call__(self, items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]: ...


def tqdm_progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    from tqdm import tqdm

    # disable=None: shown on a terminal only, so piped output and test logs stay clean.
    yield from tqdm(items, desc=desc, total=total, disable=None, leave=False, unit="img")


def no_progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    return items
