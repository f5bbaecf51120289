"""What `train` and `predict` show while they run: tqdm bars on a terminal, plain lines elsewhere.

On a terminal: a bar while images are decoded, a bar over the epochs (loss and accuracy as its
postfix) and, for `predict`, a bar over the folds with one epoch bar under it per fold in
training (folds train side by side in worker processes: sheetsync._workers); a line before the
first epoch while XLA compiles. Piped (CI logs, ``| tee``): one line per epoch and per fold,
each naming its fold, no bar.

Usage::

    bars = TrainBars()
    project.train(on_epoch=bars.epoch, on_decode=bars.decoded, on_first_epoch=bars.compiling)
    bars.close()
"""

from __future__ import annotations

import io
import os
import sys
from functools import singledispatch
from typing import IO, Any

from ._workers import FoldDone, FoldEpoch, FoldEvent, FoldReused, FoldStarted

COMPILE_LINE = "compiling the model (XLA), about a minute on 2 cores…"
TRACE_LINE = "building the model; the first epoch takes longer…"


@singledispatch
def fold_text(event: FoldEvent) -> str:
    """One line for a fold's progress event (review.out_of_sample's, typed in _workers)."""
    raise TypeError(f"no words for {type(event).__name__}")


@fold_text.register
def _(e: FoldStarted) -> str:
    where = " (a task on the Ray cluster)" if e.where == "ray" else ""
    how = (f"fine-tuning the previous version's fold model ({e.warm_epochs} epochs) on"
           if e.warm_epochs else "training on")
    return f"fold {e.number}/{e.total}: {how} {e.training} images, scoring {e.scoring}{where}"



@fold_text.register
def _(e: FoldEpoch) -> str:
    loss = f", loss {e.loss:.3f}" if e.loss is not None else ""
    return f"fold {e.number}/{e.total}: epoch {e.epoch}/{e.epochs}{loss}"


@fold_text.register
def _(e: FoldDone) -> str:
    return f"fold {e.number}/{e.total}: done in {e.seconds:.0f} s"


@fold_text.register
def _(e: FoldReused) -> str:
    return f"fold {e.number}/{e.total}: unchanged, reused"


def duration(seconds: float) -> str:
    """``4.2 s``, ``43 s``, ``2 min 05 s``: what people read, not ``43.4685``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def epoch_words(logs: dict[str, float]) -> str:
    """``loss 1.72, accuracy 0.26, val accuracy 0.33, 4.2 s`` from Keras-style logs."""
    order = {k: i for i, k in enumerate(("loss", "accuracy", "val_loss", "val_accuracy"))}
    keys = sorted((k for k in logs if k != "seconds"), key=lambda k: order.get(k, len(order)))
    parts = [f"{k.replace('val_', 'val ')} {logs[k]:.2f}" for k in keys]
    if "seconds" in logs:
        parts.append(duration(logs["seconds"]))
    return ", ".join(parts)


def _columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 0


class TrainBars:
    """Progress for one command; ``terminal=None`` asks the stream whether it is a terminal."""

    def __init__(self, stream: IO[str] | None = None, terminal: bool | None = None):
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self._decode: Any = None
        self._epochs: Any = None
        self._folds: Any = None
        self._fold_epochs: dict[str, Any] = {}  # "fold 2/4" -> its epoch bar
        self._building_said = False

    # ---- the callbacks ---------------------------------------------------------------------

    def decoded(self, what: str, done: int, todo: int) -> None:
        if not self.terminal:
            if done == todo:
                self._say(f"decoded {todo} {what} image(s)")
            return
        if self._decode is None or self._decode.total != todo or done < self._decode.n:
            self._close("_decode")
            self._decode = self._bar(total=todo, desc=f"decoding {what}", unit="img")
        self._decode.update(done - self._decode.n)
        if done >= todo:
            self._close("_decode")

    def compiling(self, jit_compile: bool, epochs: int | None = None) -> None:
        """Before the first epoch: say that it compiles; on a terminal, show the epoch bar."""
        self._close("_decode")
        self._say(COMPILE_LINE if jit_compile else TRACE_LINE)
        if self.terminal and epochs:
            self._epochs = self._bar(total=epochs, desc="epochs", unit="epoch")

    def epoch(self, epoch: int, total: int, logs: dict[str, float] | None = None,
              desc: str = "epochs") -> None:
        words = epoch_words(dict(logs or {}))
        if not self.terminal:
            self._say(f"epoch {epoch}/{total}: {words}" if desc == "epochs"
                      else f"{desc}: epoch {epoch}/{total}: {words}")
            return
        if self._epochs is None or (epoch == 1 and self._epochs.n > 0):
            self._close("_epochs")
            self._epochs = self._bar(total=total, desc=desc, unit="epoch",
                                     position=1 if self._folds is not None else 0)
        self._epochs.set_postfix_str(words, refresh=False)
        self._epochs.update(epoch - self._epochs.n)
        if epoch >= total:
            self._close("_epochs")

    def fold(self, event: FoldEvent, jit_compile: bool = False) -> None:
        """Progress of `predict` from out_of_sample's typed events."""
        if not self.terminal:
            self._say(fold_text(event))
            return
        if self._folds is None:
            self._folds = self._bar(total=event.total, desc="folds", unit="fold", position=0)
        name = f"fold {event.number}/{event.total}"
        if isinstance(event, FoldEpoch):
            self._fold_epoch(name, event.epoch, event.epochs, event.loss)
        elif isinstance(event, FoldStarted):
            self._folds.write(fold_text(event), file=self.stream)
            if not self._building_said:  # once, though several folds may start together
                self._building_said = True
                self._folds.write(COMPILE_LINE if jit_compile else TRACE_LINE, file=self.stream)
        else:  # done or reused
            bar = self._fold_epochs.pop(name, None)
            if bar is not None:
                bar.close()
            self._folds.write(fold_text(event), file=self.stream)
            self._folds.update(1)

    def _fold_epoch(self, name: str, epoch: int, total: int, loss: float | None) -> None:
        bar = self._fold_epochs.get(name)
        if bar is None:
            # The next free line under the folds bar: folds that train at once get a bar each.
            taken = {b.pos for b in self._fold_epochs.values()}
            line = next(i for i in range(1, len(taken) + 2) if i not in taken and -i not in taken)
            bar = self._fold_epochs[name] = self._bar(total=total, desc=name, unit="epoch",
                                                      position=line)
        if loss is not None:
            bar.set_postfix_str(epoch_words({"loss": loss}), refresh=False)
        bar.update(epoch - bar.n)

    def close(self) -> None:
        for bar in self._fold_epochs.values():
            bar.close()
        self._fold_epochs.clear()
        for name in ("_decode", "_epochs", "_folds"):
            self._close(name)

    # ---- helpers ---------------------------------------------------------------------------

    def _bar(self, **kwargs: Any) -> Any:
        from tqdm import tqdm

        # leave=False: the bar goes when done; the command's own summary line stays. A terminal
        # that reports 0 columns and rows (a fresh pty, some CI consoles) would get no bar at all.
        width = _columns(self.stream)
        sizing: dict[str, Any] = {"dynamic_ncols": True} if width else {"ncols": 100, "nrows": 24}
        return tqdm(file=self.stream, leave=False, mininterval=0.2, **sizing, **kwargs)

    def _close(self, name: str) -> None:
        bar = getattr(self, name)
        if bar is not None:
            bar.close()
            setattr(self, name, None)

    def _say(self, line: str) -> None:
        bars = [b for b in (self._folds, self._epochs) if b is not None]
        if bars:
            bars[0].write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)
