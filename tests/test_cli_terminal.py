"""What people see at a terminal: no TensorFlow noise, progress bars in a real pty, durations."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from sheetsync._quiet import noise_filter
from sheetsync._trainbars import COMPILE_LINE, TrainBars, duration, epoch_words
from sheetsync._workers import FoldDone

NOISE = ("absl::InitializeLog", "oneDNN", "cuda", "cuInit", "cpu_feature_guard", "I0000", "E0000",
         "WARNING:tensorflow")
REPO = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "SHEETSYNC_VERBOSE")}
    env["PYTHONPATH"] = str(REPO)
    return {**env, **extra}


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    """Run ``args`` with stdout and stderr on a real pseudo-terminal; everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise AssertionError("no output for too long:\n" + b"".join(chunks).decode())
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode()
    return b"".join(chunks).decode("utf-8", "replace")


# ---- words -----------------------------------------------------------------------------------


def test_durations_read_like_durations() -> None:
    assert duration(4.2345) == "4.2 s"
    assert duration(43.4685) == "43 s"
    assert duration(125.2) == "2 min 05 s"
    assert duration(3 * 3600 + 120) == "3 h 02 min"


def test_epoch_words_round_and_format_seconds() -> None:
    words = epoch_words({"accuracy": 0.26316, "val_accuracy": 0.3333, "seconds": 43.4685,
                         "loss": 1.71874})
    assert words == "loss 1.72, accuracy 0.26, val accuracy 0.33, 43 s"


def test_noise_filter_keeps_what_is_not_tensorflow_start_up_noise() -> None:
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.2  20046 port.cc:153] oneDNN custom operations are on.\n"
            "I0000 00:00:1.3  20046 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
            "ImportError: libfoo.so: cannot open shared object file\n")
    assert noise_filter(text) == "ImportError: libfoo.so: cannot open shared object file\n"


def test_bars_print_plain_lines_when_piped() -> None:
    out = io.StringIO()
    bars = TrainBars(out, terminal=False)
    bars.decoded("train", 10, 10)
    bars.compiling(True)
    bars.epoch(1, 2, {"loss": 1.5, "seconds": 43.4685})
    bars.fold(FoldDone(1, 4, 40.2))
    bars.close()
    assert out.getvalue().splitlines() == [
        "decoded 10 train image(s)", COMPILE_LINE, "epoch 1/2: loss 1.50, 43 s",
        "fold 1/4: done in 40 s"]


_DRIVE_BARS = """
import sys, time
from sheetsync._trainbars import TrainBars
from sheetsync._workers import FoldDone, FoldEpoch, FoldStarted
bars = TrainBars()
for done in (4, 8, 12):
    time.sleep(0.25)  # real updates are seconds apart; tqdm redraws at most every 0.2 s
    bars.decoded("train", done, 12)
bars.compiling(True, 3)
for e in (1, 2, 3):
    time.sleep(0.25)
    bars.epoch(e, 3, {"loss": 1.0 / e, "seconds": 2.5})
# Two folds training at once (worker processes): their epoch lines interleave.
for f in (1, 2):
    bars.fold(FoldStarted(f, 3, 9, 3))
for e in (1, 2):
    for f in (1, 2):
        time.sleep(0.25)
        bars.fold(FoldEpoch(f, 3, e, 2, 0.5))
bars.fold(FoldDone(2, 3, 3.0))
bars.fold(FoldStarted(3, 3, 9, 3))
time.sleep(0.25)
bars.fold(FoldEpoch(3, 3, 1, 2, 0.25))
bars.fold(FoldDone(1, 3, 3.0))
time.sleep(0.25)
bars.fold(FoldEpoch(3, 3, 2, 2, 0.25))
bars.fold(FoldDone(3, 3, 3.0))
bars.close()
print("finished")
"""


def test_bars_draw_in_a_real_terminal(tmp_path: Path) -> None:
    out = run_in_pty([sys.executable, "-c", _DRIVE_BARS], tmp_path, _env(), timeout=120)
    # A bar is redrawn at most every 0.2 s and leaves when done: its last state may not show.
    assert "decoding train" in out and "8/12" in out
    assert COMPILE_LINE in out
    assert "epochs:" in out and "2/3" in out and "loss 0.50" in out  # tqdm bar with postfix
    assert "folds:" in out and "1/3" in out and "fold 2/3: epoch" not in out  # bars, not lines
    # One epoch bar per fold in training, each named after its fold, on its own line.
    assert "fold 1/3:" in out and "fold 2/3:" in out and "fold 3/3:" in out
    assert "fold 2/3: done in 3 s" in out and "fold 3/3: done in 3 s" in out and "finished" in out
    assert out.count("building the model") == 1  # once, though two folds started together
    assert "\r" in out  # redrawn in place


# ---- real commands ---------------------------------------------------------------------------


def _project(data_root: Path, tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    subprocess.run([sys.executable, "-m", "sheetsync", "-C", str(proj), "init", str(data_root)],
                   env=_env(), check=True, capture_output=True)
    return proj


@pytest.mark.slow
def test_train_prints_no_tensorflow_noise_and_bars_in_a_pty(data_root: Path, tmp_path: Path) -> None:
    proj = _project(data_root, tmp_path)
    out = run_in_pty([sys.executable, "-m", "sheetsync", "train", "--epochs", "2"], proj, _env())
    assert not [n for n in NOISE if n in out], out
    assert "decoding train" in out and COMPILE_LINE in out
    assert "epochs:" in out and "0/2" in out and "1/2" in out and "\r" in out
    assert "trained on v1" in out and "seconds" not in out
    assert "next: sheetsync push" in out


@pytest.mark.slow
def test_train_piped_is_plain_lines_and_verbose_brings_tensorflow_back(
        data_root: Path, tmp_path: Path) -> None:
    proj = _project(data_root, tmp_path)
    cmd = [sys.executable, "-m", "sheetsync", "train", "--epochs", "1", "--no-xla"]
    quiet = subprocess.run(cmd, cwd=proj, env=_env(), capture_output=True, text=True, check=True)
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    assert "building the model; the first epoch takes longer…" in quiet.stderr
    assert "epoch 1/1: loss " in quiet.stderr and "\r" not in quiet.stderr
    loud = subprocess.run([*cmd[:3], "--verbose", *cmd[3:]], cwd=proj, env=_env(),
                          capture_output=True, text=True, check=True)
    assert "absl::InitializeLog" in loud.stderr or "oneDNN" in loud.stderr, loud.stderr


@pytest.mark.slow
def test_predict_shows_a_fold_bar_in_a_pty(data_root: Path, tmp_path: Path) -> None:
    proj = _project(data_root, tmp_path)
    out = run_in_pty([sys.executable, "-m", "sheetsync", "predict", "--folds", "2", "--epochs", "2"],
                     proj, _env())
    assert not [n for n in NOISE if n in out], out
    # Three fold seeds by default: 2 folds each, numbered across the runs under one bar, and
    # trained two at a time in worker processes (2 folds to train, at least 2 cores here).
    assert "folds:" in out and "fold 1/6: training on" in out and COMPILE_LINE in out
    assert "fold 6/6: done in" in out and "fold 1/6: epoch" not in out  # a bar, not lines
    assert "out-of-sample probabilities for" in out and "3 fold seeds" in out
    assert "next: sheetsync push" in out
