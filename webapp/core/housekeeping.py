"""Housekeeping of the data folder: what a killed process can leave behind.

Django streams large uploads to temporary files in ``DATA_DIR/tmp``; a web server killed in the
middle of an upload (or of handing the file to the data set service) leaves them there forever.
``clean_tmp`` deletes the ones older than any upload still in progress could be. It runs when
``manage.py up`` starts and periodically on Celery beat (``core.clean_tmp``).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

TMP_MAX_AGE = 6 * 3600.0  # seconds; longer than any upload in progress could take
CLEAN_EVERY = 3600.0  # seconds between runs on Celery beat


def clean_tmp(max_age: float = TMP_MAX_AGE, *, now: float | None = None) -> list[str]:
    """Delete the files directly in ``DATA_DIR/tmp`` last modified more than ``max_age`` seconds ago.

    Only plain files (and dangling or other links, never what they point to) at the top of that
    folder are removed; sub-folders and anything outside it are left alone. Returns the names removed.
    """
    folder = Path(settings.DATA_DIR) / "tmp"
    cutoff = (time.time() if now is None else now) - max_age
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)) or info.st_mtime >= cutoff:
                continue
            os.unlink(entry.path)
            removed.append(entry.name)
        except FileNotFoundError:
            continue  # gone already (the upload finished or another cleaner got there first)
        except OSError as error:
            log.warning("could not remove the stale temporary file %s: %s", entry.path, error)
    if removed:
        log.info("removed %d stale temporary file(s) from %s", len(removed), folder)
    return removed
