"""Training from a memory-mapped data set: rows read ahead by a thread vs read on demand.

    python benchmarks/feed_bench.py [--rows 60000] [--epochs 2] [--pairs 3] [--device cpu|gpu] [--json PATH]

An image set stored the way Cupola stores one (uint8, N x 28 x 28 x 1, ``np.load(mmap_mode="r")``) is
not resident: training reads, casts and copies each batch's rows. The digits of ``tests/fixtures/data``
(upsampled to 28 x 28, as the CNN recipe has them) are repeated to ``--rows`` rows. Side by side in one
process, in alternating order, the same fit runs

- ``read ahead``: ``trainer.feed`` reads the coming batches in a thread (the default);
- ``on demand``: ``CUPOLA_READ_AHEAD=0``, each batch read in the training thread when it is needed;
- ``resident``: the same values as an in-memory float32 array, moved to the device once (the ceiling).

Each model is measured with the page cache warm (the file read before) and cold (its pages dropped
before each epoch with ``posix_fadvise``, as for a set larger than memory).

Each pair's ratio is taken and the median reported, with samples/s and whether the three fits' losses
are identical (they must be: the batches are the same rows, bit for bit).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer import Sequential, backend, bench, callbacks, layers

MODES = ("read ahead", "on demand", "resident")


def image_set(rows):
    images, labels = bench.load_digits_images()
    upsampled = np.clip(np.rint(bench.upsample_images(images, 28)), 0, 255).astype(np.uint8)[..., None]
    repeat = -(-rows // len(images))
    return np.tile(upsampled, (repeat, 1, 1, 1))[:rows], np.tile(labels, repeat)[:rows]


def model(kind):
    if kind == "mlp":
        stack = [layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(10)]
    else:
        stack = [layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
                 layers.Dense(10)]
    net = Sequential(stack, seed=0)
    net.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return net


def evict(path):
    """Drop the file's pages from the page cache, as for a set larger than memory (clean pages: no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fit(kind, mode, x_mapped, x_memory, y, epochs, batch_size, cold=False):
    os.environ["CUPOLA_READ_AHEAD"] = "0" if mode == "on demand" else "1"
    net = model(kind)
    x = x_memory if mode == "resident" else x_mapped
    evicting = [callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: evict(x_mapped.filename))] if cold else []
    started = time.perf_counter()
    history = net.fit(x, y, epochs=epochs, batch_size=batch_size, seed=1, callbacks=evicting)
    seconds = time.perf_counter() - started
    return seconds, history.history["loss"]


def measure(kind, x_mapped, x_memory, y, epochs, batch_size, pairs, cold):
    fit(kind, "read ahead", x_mapped[:2048], x_memory[:2048], y[:2048], 1, batch_size)  # warm-up: imports, pools
    times = {mode: [] for mode in MODES}
    losses = {}
    for pair in range(pairs):
        order = MODES if pair % 2 == 0 else MODES[::-1]
        for mode in order:
            seconds, loss = fit(kind, mode, x_mapped, x_memory, y, epochs, batch_size, cold)
            times[mode].append(seconds)
            losses[mode] = loss
    samples = len(y) * epochs
    return {
        "model": kind, "batch_size": batch_size, "page_cache": "cold" if cold else "warm",
        "samples_per_second": {mode: round(samples / statistics.median(t), 1) for mode, t in times.items()},
        "read_ahead_over_on_demand": round(statistics.median(
            b / a for a, b in zip(times["read ahead"], times["on demand"])), 3),
        "read_ahead_over_resident": round(statistics.median(
            b / a for a, b in zip(times["read ahead"], times["resident"])), 3),
        "identical_losses": losses["read ahead"] == losses["on demand"] == losses["resident"],
        "seconds": {mode: [round(s, 3) for s in t] for mode, t in times.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    backend.set_device(args.device)
    backend.ensure_blas_threads()
    images, labels = image_set(args.rows)
    with tempfile.TemporaryDirectory(prefix="cupola-feed-") as folder:
        path = Path(folder) / "images.npy"
        np.save(path, images)
        x_mapped = np.load(path, mmap_mode="r")
        x_memory = images.astype(np.float32)
        results = [measure(kind, x_mapped, x_memory, labels, args.epochs, 128, args.pairs, cold)
                   for kind in ("mlp", "cnn") for cold in (False, True)]
    report = {"rows": args.rows, "epochs": args.epochs, "pairs": args.pairs, "device": args.device,
              "blas_threads": bench.usable_cores(),
              "file_mib": round(images.nbytes / 2**20, 1), "cores": os.cpu_count(), "results": results}
    text = json.dumps(report, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
