"""Upload → ingest → ready through the real Redis broker and a real Celery worker process, for each kind."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.webapp.datasets.conftest import FIXTURES
from webapp.datasets import storage
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.integration


def _wait(version, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.is_finished:
            return version
        time.sleep(0.2)
    raise AssertionError(f"version still {version.status} after {timeout} s")


def _upload(client, ws, path, filename, **fields):
    response = client.post(f"/w/{ws}/datasets/upload/",
                           {"name": filename, "file": SimpleUploadedFile(filename, path.read_bytes()), **fields})
    assert response.status_code == 302, response.content[:500]
    return Dataset.objects.get(name=filename).versions.get()


@pytest.mark.parametrize(("filename", "fields", "kind", "rows"), [
    ("iris.csv", {}, "table", 150),
    ("co2_weekly.csv", {"kind": "series"}, "series", 2284),
    ("digits8x8.zip", {}, "images", 1797),
])
def test_an_upload_is_ingested_by_the_worker(stack, transactional_db, people, client, filename, fields, kind, rows):
    client.force_login(people.owner)
    version = _wait(_upload(client, people.workspace.slug, FIXTURES / filename, filename, **fields))
    assert version.status == "ready", version.error
    assert version.schema["kind"] == kind and version.n_rows == rows and version.ingested_at is not None
    status = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/v1/status/").json()
    assert status == {"status": "ready", "error": "", "finished": True}
    if kind == "images":
        images, labels, _ = storage.load_images(version)
        assert images.shape[0] == labels.shape[0] == rows
    else:
        assert len(storage.load_table(version)) == rows


def test_a_broken_upload_fails_on_the_worker_with_its_reason(stack, transactional_db, people, client, tmp_path):
    client.force_login(people.owner)
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,2\n3,4,5\n")
    version = _wait(_upload(client, people.workspace.slug, path, "bad.csv"))
    assert version.status == "failed" and version.error.startswith("Line 3 has 3 fields")
    page = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/").content.decode()
    assert "Line 3 has 3 fields" in page
