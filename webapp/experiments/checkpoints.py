"""Where a run's files live: one checkpoint per epoch and the final weights, under DATA_DIR/runs/<id>/.

Paths are built from the run's integer id and epoch numbers only, never from user input.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from django.conf import settings

_CHECKPOINT = re.compile(r"^epoch-(\d{5})\.npz$")


def run_dir(run_or_id) -> Path:
    run_id = int(getattr(run_or_id, "pk", run_or_id))
    return Path(settings.DATA_DIR) / "runs" / str(run_id)


def checkpoint_path(run_or_id, epoch: int) -> Path:
    return run_dir(run_or_id) / f"epoch-{int(epoch):05d}.npz"


def weights_path(run_or_id) -> Path:
    return run_dir(run_or_id) / "weights.npz"


def onnx_path(run_or_id) -> Path:
    return run_dir(run_or_id) / "model.onnx"


def path_for(run_or_id, epoch: int) -> Path | None:
    path = checkpoint_path(run_or_id, epoch)
    return path if path.exists() else None


def epochs_saved(run_or_id) -> list[int]:
    folder = run_dir(run_or_id)
    if not folder.is_dir():
        return []
    found = (_CHECKPOINT.match(name) for name in os.listdir(folder))
    return sorted(int(m.group(1)) for m in found if m)


def latest(run_or_id, *, at_most: int | None = None) -> int | None:
    epochs = [e for e in epochs_saved(run_or_id) if at_most is None or e <= at_most]
    return epochs[-1] if epochs else None


def save_atomically(write, path: Path) -> None:
    """``write(tmp_path)`` then rename, so a killed worker never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    write(str(tmp))
    os.replace(tmp, path)


def remove_all(run_or_id) -> None:
    shutil.rmtree(run_dir(run_or_id), ignore_errors=True)
