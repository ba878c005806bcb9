"""Ingestion that cannot write: a read-only data folder (the real worker, against a folder made
immutable) and a full disk (every write under the version's folder answers ENOSPC).

Either way the version ends ``failed`` with the reason in words, the uploaded bytes are still
there and unchanged, nothing half-written is left beside them, and the data sets stored before
are untouched.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from tests.faults.conftest import FIXTURES, ready_version, wait_for


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _upload_without_ingesting(workspace, user, name: str):
    from webapp.datasets.services import dataset_create_from_file

    with mock.patch("webapp.datasets.services._enqueue"):
        return dataset_create_from_file(workspace=workspace, user=user, name=name,
                                        uploaded_file_path=FIXTURES / "wine.csv", original_filename="wine.csv")


def _assert_failed_cleanly(version, reason_words: tuple[str, ...], baseline, baseline_files: dict) -> None:
    from webapp.datasets import storage

    version.refresh_from_db()
    assert version.status == "failed", version.status
    assert any(word.lower() in version.error.lower() for word in reason_words), version.error
    assert "Traceback" not in version.error
    upload = storage.upload_path(version)
    assert upload.exists() and _sha256(upload) == version.content_hash, "the uploaded bytes were damaged"
    assert [p.name for p in version.folder.iterdir()] == [upload.name], "half-written files were left behind"
    baseline.refresh_from_db()
    assert baseline.status == "ready"
    assert _folder_digest(baseline.folder) == baseline_files, "a data set stored before was changed"


def _chattr_works(tmp_path: Path) -> bool:
    probe = tmp_path / "chattr-probe"
    probe.mkdir()
    if not shutil.which("chattr"):
        return False
    made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode == 0
    if made:
        subprocess.run(["chattr", "-i", str(probe)], check=False)
    return made


@pytest.mark.integration
def test_a_read_only_version_folder_fails_ingestion_on_the_worker_with_the_reason(transactional_db, stack, people,
                                                                                   client, tmp_path):
    """Root ignores permission bits, so the folder is made immutable (chattr +i): writes get EPERM."""
    if not _chattr_works(tmp_path):
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    from webapp.datasets.tasks import ingest_dataset_version

    baseline = ready_version(people.workspace, people.owner, "iris.csv", "species", name="Iris stored before")
    baseline_files = _folder_digest(baseline.folder)
    version = _upload_without_ingesting(people.workspace, people.owner, "Wine on a read-only folder")
    subprocess.run(["chattr", "+i", str(version.folder)], check=True)
    try:
        ingest_dataset_version.delay(version.pk)
        wait_for(lambda: (version.refresh_from_db() or version.is_finished), 60, "the worker to ingest", stack)
    finally:
        subprocess.run(["chattr", "-i", str(version.folder)], check=False)
    _assert_failed_cleanly(version, ("not permitted", "read-only", "could not be stored"), baseline, baseline_files)
    client.force_login(people.owner)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/")
    assert page.status_code == 200
    assert "could not be stored" in page.content.decode() or "not permitted" in page.content.decode()


def _enospc(path):
    return OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.django_db
def test_a_full_disk_during_ingestion_fails_it_with_the_reason_and_corrupts_nothing(people, settings, tmp_path):
    """Every way ingestion writes files (Arrow, NumPy, pathlib, open) answers ENOSPC under the version folder,
    after the first write has put some bytes on disk (the disk fills up half-way)."""
    import builtins

    import numpy as np
    import pyarrow as pa

    from webapp.datasets.services import ingest_version

    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    baseline = ready_version(people.workspace, people.owner, "iris.csv", "species", name="Iris stored before")
    baseline_files = _folder_digest(baseline.folder)
    version = _upload_without_ingesting(people.workspace, people.owner, "Wine on a full disk")
    folder = str(version.folder)
    inside = lambda path: str(path).startswith(folder) and not str(path).endswith("upload.bin")
    real_open, real_osfile, real_save = builtins.open, pa.OSFile, np.save
    real_write_text, real_write_bytes = Path.write_text, Path.write_bytes

    def full_open(file, mode="r", *args, **kwargs):
        if inside(file) and any(m in mode for m in "wax+"):
            handle = real_open(file, mode, *args, **kwargs)
            handle.write(b"\x00" * 10 if "b" in mode else "{\"half\": ")  # the disk fills up mid-file
            handle.close()
            raise _enospc(file)
        return real_open(file, mode, *args, **kwargs)

    def full_osfile(path, mode="r", *args, **kwargs):
        if inside(path) and mode != "r":
            real_open(path, "wb").write(b"ARROW1\x00\x00")
            raise _enospc(path)
        return real_osfile(path, mode, *args, **kwargs)

    def full_save(file, *args, **kwargs):
        if inside(file):
            raise _enospc(file)
        return real_save(file, *args, **kwargs)

    def full_write_text(self, *args, **kwargs):
        if inside(self):
            raise _enospc(self)
        return real_write_text(self, *args, **kwargs)

    def full_write_bytes(self, *args, **kwargs):
        if inside(self):
            raise _enospc(self)
        return real_write_bytes(self, *args, **kwargs)

    with mock.patch("builtins.open", full_open), mock.patch("pyarrow.OSFile", full_osfile), \
            mock.patch("numpy.save", full_save), mock.patch.object(Path, "write_text", full_write_text), \
            mock.patch.object(Path, "write_bytes", full_write_bytes):
        ingest_version(version.pk)
    _assert_failed_cleanly(version, ("No space left on device",), baseline, baseline_files)
