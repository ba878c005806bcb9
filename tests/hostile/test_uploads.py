"""Hostile uploads, through the upload page and through the REST API.

Each file gets a clear 4xx at upload, or is accepted and then fails ingestion with a message that
names the problem — shown on the data set page and in the API — never a 500 or a stack trace;
and the data set that was there before is untouched.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.hostile.conftest import assert_no_trace, assert_unchanged, page_text, snapshot
from tests.hostile.corpus import IMG, SCRIPT, UPLOADS


def _ingest_new(world, before_ids: set[int]):
    """Ingest (in-process, as the worker would) the version an accepted upload created; return it."""
    from webapp.datasets.models import DatasetVersion
    from webapp.datasets.services import ingest_version

    created = DatasetVersion.objects.exclude(pk__in=before_ids).order_by("-pk")
    assert created.count() == 1, f"expected one new version, got {created.count()}"
    version = created.first()
    ingest_version(version.pk)
    version.refresh_from_db()
    return version


def _check_outcome(world, version, expected, detail_html: str, api_json: dict) -> None:
    outcome, pattern = expected
    if outcome == "ready":
        assert version.status == "ready", version.error
        return
    assert version.status == "failed", f"expected a failure matching {pattern!r}, got {version.status}"
    assert re.search(pattern, version.error, re.IGNORECASE), f"the message does not say {pattern!r}: {version.error!r}"
    shown = next(v for v in api_json["versions"] if v["id"] == version.pk)
    assert shown["status"] == "failed" and shown["error"] == version.error
    assert re.search(pattern, detail_html, re.IGNORECASE), "the data set page does not show the reason"
    assert version.error[:60] in detail_html


@pytest.mark.parametrize("case_id,filename,build,expected", UPLOADS, ids=[case[0] for case in UPLOADS])
def test_a_hostile_upload_through_the_page_is_refused_clearly(world, case_id, filename, build, expected):
    from webapp.datasets.models import DatasetVersion

    ids = set(DatasetVersion.objects.values_list("pk", flat=True))
    response = world.page.post(f"/w/{world.ws}/datasets/upload/",
                               {"name": f"hostile {case_id}", "file": SimpleUploadedFile(filename, build())})
    assert_no_trace(response)
    if expected[0] == "refused":
        assert response.status_code == expected[1]
        assert "errors" in response.content.decode() or "field-error" in response.content.decode()
        assert DatasetVersion.objects.count() == len(ids)
    else:
        assert response.status_code == 302, response.content[:500]
        version = _ingest_new(world, ids)
        detail = world.page.get(response["Location"])
        assert_no_trace(detail)
        assert detail.status_code == 200
        api = world.api.get(f"/api/v1/datasets/{version.dataset_id}")
        assert api.status_code == 200
        _check_outcome(world, version, expected, page_text(detail), api.json())
        if case_id == "html-in-column-names":
            body = detail.content.decode()
            assert SCRIPT not in body and IMG not in body, "a column name reached the page unescaped"
            assert SCRIPT in page_text(detail)
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("case_id,filename,build,expected", UPLOADS, ids=[case[0] for case in UPLOADS])
def test_a_hostile_upload_through_the_api_is_refused_clearly(world, case_id, filename, build, expected):
    from webapp.datasets.models import DatasetVersion

    ids = set(DatasetVersion.objects.values_list("pk", flat=True))
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/datasets",
                              {"name": f"hostile {case_id}", "file": SimpleUploadedFile(filename, build())})
    assert_no_trace(response)
    if expected[0] == "refused":
        assert response.status_code == expected[1]
        assert response.json()["detail"]
        assert DatasetVersion.objects.count() == len(ids)
    else:
        assert response.status_code == 201, response.content[:500]
        version = _ingest_new(world, ids)
        api = world.api.get(f"/api/v1/datasets/{version.dataset_id}")
        assert_no_trace(api)
        detail = world.page.get(f"/w/{world.ws}/datasets/{version.dataset_id}/")
        _check_outcome(world, version, expected, page_text(detail), api.json())
    assert_unchanged(world.before, snapshot())


def test_a_new_version_that_fails_leaves_the_ready_version_untouched(world):
    from webapp.datasets.services import ingest_version

    response = world.api.post(f"/api/v1/workspaces/{world.ws}/datasets",
                              {"dataset": world.dataset.pk, "file": SimpleUploadedFile("v2.csv", b"a,b\n1,2\n3\n")})
    assert response.status_code == 201, response.content
    failed = world.dataset.versions.order_by("-number").first()
    assert failed.number == 2
    ingest_version(failed.pk)
    failed.refresh_from_db()
    assert failed.status == "failed" and "Line 3" in failed.error
    detail = world.page.get(f"/w/{world.ws}/datasets/{world.dataset.pk}/")
    assert detail.status_code == 200
    assert world.dataset.latest_ready_version().pk == world.version.pk
    assert_unchanged(world.before, snapshot())


def test_an_upload_over_the_size_limit_is_refused_with_413(world, settings):
    from webapp.datasets.models import DatasetVersion

    settings.MAX_UPLOAD_MB = 1
    count = DatasetVersion.objects.count()
    big = SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * (700_000))
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/datasets", {"name": "too big", "file": big})
    assert_no_trace(response)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    big.seek(0)
    page = world.page.post(f"/w/{world.ws}/datasets/upload/", {"name": "too big", "file": big})
    assert_no_trace(page)
    assert page.status_code == 413
    assert "upload limit" in page_text(page)
    assert DatasetVersion.objects.count() == count
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("fields,status", [
    ({}, 400),
    ({"file": "not a file"}, 400),
    ({"kind": "../../etc", "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")}, 400),
    ({"image_height": "12", "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")}, 400),
    ({"image_height": "-3", "image_width": "5", "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")}, 400),
    ({"image_height": "99999", "image_width": "99999", "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")}, 400),
    ({"dataset": "999999", "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")}, 404),
], ids=["no-file", "file-as-text", "bad-kind", "half-a-size", "negative-size", "huge-size", "unknown-dataset"])
def test_malformed_upload_forms_get_a_4xx(world, fields, status):
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/datasets", fields)
    assert_no_trace(response)
    assert response.status_code == status, response.content[:500]
    assert_unchanged(world.before, snapshot())


def test_a_new_version_of_another_workspaces_data_set_is_404(world):
    other = world.other_version.dataset
    response = world.api.post(f"/api/v1/workspaces/{world.ws}/datasets",
                              {"dataset": other.pk, "file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")})
    assert response.status_code == 404
    page = world.page.post(f"/w/{world.ws}/datasets/{other.pk}/upload/",
                           {"file": SimpleUploadedFile("t.csv", b"a,b\n1,2\n")})
    assert page.status_code == 404
    assert_unchanged(world.before, snapshot())
