"""TensorFlow without its start-up noise, unless asked for (``--verbose``, ``SHEETSYNC_VERBOSE=1``).

Importing TensorFlow 2.21 on a CPU machine writes, straight to file descriptor 2 and before
any Python code could filter it::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.

(twice: two shared libraries log it), and ``TF_CPP_MIN_LOG_LEVEL`` does not stop these lines,
because absl logs them before it reads its settings. So :func:`quiet_tensorflow` sets
``TF_CPP_MIN_LOG_LEVEL=3`` for the later runtime lines (cuInit, XLA service, CPU features) and
imports TensorFlow with descriptor 2 pointed at a temporary file; lines of that capture that are
known noise are dropped and any other line is written back to stderr, so a real error while
loading TensorFlow is still seen. The ``tensorflow`` Python logger (retracing notices) is set to
errors only.

Usage::

    from sheetsync._quiet import quiet_tensorflow
    quiet_tensorflow()        # before the first `import tensorflow`
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

VERBOSE_ENV = "SHEETSYNC_VERBOSE"

# What TensorFlow prints at import on a machine without a GPU; nothing of it needs action.
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations|TF_ENABLE_ONEDNN_OPTS"
    r"|cudart_stub|cuda_|cuInit|Unable to register cu(DNN|FFT|BLAS)|computation placer"
    r"|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags|TF-TRT Warning"
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def noise_filter(text: str) -> str:
    """``text`` without the lines that are TensorFlow's start-up noise."""
    kept = [line for line in text.splitlines(keepends=True) if line.strip() and not _NOISE.search(line)]
    return "".join(kept)


def quiet_tensorflow() -> None:
    """Import TensorFlow (once) with its start-up lines dropped, unless verbose."""
    if "tensorflow" in sys.modules:
        return
    if verbose():
        import tensorflow  # noqa: F401  # everything TensorFlow says, as asked
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    captured, error = _import_with_fd2_captured()
    rest = noise_filter(captured)
    if rest:
        sys.stderr.write(rest)
        sys.stderr.flush()
    if error is not None:
        raise error
    # TensorFlow's Python-side warnings (tf.function retracing notices) are for developers too.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _import_with_fd2_captured() -> tuple[str, BaseException | None]:
    """What TensorFlow wrote to descriptor 2 while being imported, and the import's error."""
    sys.stderr.flush()
    saved = os.dup(2)
    error: BaseException | None = None
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException as e:  # re-raised by the caller once stderr is back
            error = e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode("utf-8", "replace"), error
