"""Housekeeping: stale partial uploads in DATA_DIR/tmp are removed, nothing else is."""

import os
import time

from webapp.celery import app
from webapp.core import housekeeping, tasks


def _aged(path, content=b"x", age=0.0):
    path.write_bytes(content)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_an_old_file_in_tmp_is_deleted_a_fresh_one_kept_and_nothing_outside_touched(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    tmp = settings.DATA_DIR / "tmp"
    tmp.mkdir(parents=True)
    old = _aged(tmp / "tmpabc123.upload", age=housekeeping.TMP_MAX_AGE + 60)
    fresh = _aged(tmp / "tmpdef456.upload", age=60)
    old_folder = tmp / "a-folder"
    old_folder.mkdir()
    old_in_folder = _aged(old_folder / "kept", age=10 * housekeeping.TMP_MAX_AGE)
    outside_old = _aged(settings.DATA_DIR / "cupola.sqlite3", age=10 * housekeeping.TMP_MAX_AGE)
    elsewhere = _aged(tmp_path / "target", age=10 * housekeeping.TMP_MAX_AGE)
    link = tmp / "old-link"
    link.symlink_to(elsewhere)
    os.utime(link, (time.time() - 10 * housekeeping.TMP_MAX_AGE,) * 2, follow_symlinks=False)

    removed = housekeeping.clean_tmp()

    assert sorted(removed) == ["old-link", "tmpabc123.upload"]
    assert not old.exists() and not link.is_symlink()
    assert fresh.read_bytes() == b"x"
    assert old_in_folder.exists() and outside_old.exists() and elsewhere.read_bytes() == b"x"


def test_a_missing_tmp_folder_is_not_an_error(settings, tmp_path):
    settings.DATA_DIR = tmp_path / "nothing-here"
    assert housekeeping.clean_tmp() == []


def test_the_celery_task_cleans_and_runs_on_beat_on_the_default_queue(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    (tmp_path / "tmp").mkdir()
    _aged(tmp_path / "tmp" / "stale", age=housekeeping.TMP_MAX_AGE + 1)
    assert tasks.clean_tmp.run() == 1
    entry = app.conf.beat_schedule["core-clean-tmp"]
    assert entry["task"] == "core.clean_tmp" and entry["options"]["queue"] == "default"
    assert "core.clean_tmp" in app.tasks
