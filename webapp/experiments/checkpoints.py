"""Where a run's files live: its checkpoints and final weights, under DATA_DIR/runs/<id>/.

A checkpoint is made at the end of every epoch (and written when kept or when the last write is
``WRITE_EVERY`` seconds old; see execution.DatabaseReporter); ``prune`` keeps the two newest (to resume
from), the best epoch's, those other runs start from, and at most ``CUPOLA_KEEP_CHECKPOINTS``
(``settings.KEEP_CHECKPOINTS``, default 20) more at round epochs spaced over the epochs so far
(every 5th, 10th, 50th, ...), so a run of 100,000 short epochs does not leave 100,000 files.
``CUPOLA_KEEP_CHECKPOINTS=all`` keeps every epoch's.

Paths are built from the run's integer id and epoch numbers only, never from user input.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from django.conf import settings

_CHECKPOINT = re.compile(r"^epoch-(\d{5})\.npz$")
WRITE_EVERY = 10.0  # seconds: an epoch prune would not keep is written only this long after the last write


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


def spacing(total: int, spaced: int) -> int:
    """The smallest round interval (1, 2, 5, 10, 20, 50, ...) that puts at most ``spaced``
    checkpoints on ``total`` epochs."""
    interval = 1
    while spaced * interval < total:
        interval = _next_round(interval)
    return interval


def _next_round(interval: int) -> int:
    """1 → 2 → 5 → 10 → 20 → 50 → ..."""
    digits = len(str(interval)) - 1
    lead = interval // 10 ** digits
    return {1: 2, 2: 5, 5: 10}[lead] * 10 ** digits


def is_round(epoch: int) -> bool:
    """Whether ``kept`` keeps ``epoch`` as a round one once it is the newest (every epoch is, with
    CUPOLA_KEEP_CHECKPOINTS=all)."""
    spaced = settings.KEEP_CHECKPOINTS
    return spaced is None or (spaced > 0 and epoch % spacing(epoch, spaced) == 0)


def kept(saved, *, best: int | None, spaced: int | None) -> set[int]:
    """Which of the ``saved`` epochs stay: the two newest, the best, and the round ones, spaced
    over the epochs trained so far (none with ``spaced`` 0; every one with ``spaced`` None)."""
    saved = sorted(saved)
    if spaced is None or not saved:
        return set(saved)
    interval = spacing(saved[-1], spaced) if spaced else 0
    keep = set(saved[-2:]) | ({best} if best else set())
    if interval:
        keep |= {epoch for epoch in saved if epoch % interval == 0}
    return keep & set(saved)


def prune(run_or_id, *, best: int | None, pinned=lambda: ()) -> list[int]:
    """Delete the checkpoints ``kept`` does not keep; ``pinned()`` (the epochs other runs start
    from) is asked only when there is something to delete. Returns the epochs deleted."""
    spaced = settings.KEEP_CHECKPOINTS
    if spaced is None:
        return []
    saved = epochs_saved(run_or_id)
    doomed = set(saved) - kept(saved, best=best, spaced=spaced)
    if not doomed:
        return []
    doomed -= set(pinned())
    for epoch in sorted(doomed):
        checkpoint_path(run_or_id, epoch).unlink(missing_ok=True)
    return sorted(doomed)


def remove_all(run_or_id) -> None:
    shutil.rmtree(run_dir(run_or_id), ignore_errors=True)
