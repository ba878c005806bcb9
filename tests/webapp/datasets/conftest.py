"""Helpers for the data set tests: files written on the fly, and versions ingested in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


@pytest.fixture
def data_dir(settings, tmp_path):
    """A fresh data folder per test, so versions of one test never meet another's files."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return settings.DATA_DIR


@pytest.fixture
def ingest(people, data_dir, tmp_path):
    """``ingest(content_or_path, name=..., **options) -> version``, ingested synchronously."""
    from webapp.datasets import services

    counter = iter(range(10_000))

    def make(content, *, name="Data", filename="data.csv", dataset=None, user=None, **options):
        if isinstance(content, Path):
            path = content
        else:
            path = tmp_path / f"upload-{next(counter)}"
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        if dataset is None:
            version = services.dataset_create_from_file(
                workspace=people.workspace, user=user or people.owner, name=name, description="",
                uploaded_file_path=path, original_filename=filename, **options)
        else:
            version = services.version_create_from_file(dataset=dataset, user=user or people.owner,
                                                        uploaded_file_path=path, original_filename=filename, **options)
        services.ingest_version(version.pk)
        version.refresh_from_db()
        return version

    return make
