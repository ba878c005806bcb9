"""The data set endpoints of the REST API, and versions with their hashes."""

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.webapp.datasets.conftest import FIXTURES
from webapp.accounts.models import ApiToken
from webapp.datasets import services
from webapp.datasets.models import Dataset


def _auth(user):
    _, key = ApiToken.issue(user=user, name="test")
    return {"Authorization": f"Bearer {key}"}


def test_posting_a_file_creates_a_data_set_with_its_hash(people, client, data_dir):
    content = FIXTURES.joinpath("iris.csv").read_bytes()
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets",
                           {"file": SimpleUploadedFile("iris.csv", content), "name": "Iris", "description": "d"},
                           headers=_auth(people.editor))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Iris" and body["versions"][0]["number"] == 1
    assert body["versions"][0]["content_hash"] == hashlib.sha256(content).hexdigest()
    assert body["versions"][0]["status"] == "uploaded"


def test_a_changed_file_makes_version_2_and_an_identical_one_is_refused(people, client, ingest):
    v1 = ingest(FIXTURES / "iris.csv")
    url = f"/api/v1/workspaces/{people.workspace.slug}/datasets"
    same = client.post(url, {"file": SimpleUploadedFile("iris.csv", FIXTURES.joinpath("iris.csv").read_bytes()),
                             "dataset": v1.dataset_id}, headers=_auth(people.owner))
    assert same.status_code == 400 and "identical to version 1" in same.json()["detail"]
    changed = FIXTURES.joinpath("iris.csv").read_bytes() + b"5.0,3.0,1.0,0.1,setosa\n"
    response = client.post(url, {"file": SimpleUploadedFile("iris2.csv", changed), "dataset": v1.dataset_id},
                           headers=_auth(people.owner))
    assert response.status_code == 201
    numbers = [v["number"] for v in response.json()["versions"]]
    assert numbers == [2, 1]
    v2 = Dataset.objects.get().versions.get(number=2)
    services.ingest_version(v2.pk)
    v2.refresh_from_db()
    assert v2.n_rows == 151 and v2.content_hash == hashlib.sha256(changed).hexdigest()
    v1.refresh_from_db()
    assert v1.n_rows == 150 and (v1.folder / "table.arrow").exists()  # version 1 is untouched


def test_get_returns_versions_schema_and_stats(people, client, ingest):
    version = ingest(FIXTURES / "wine.csv", name="Wine")
    body = client.get(f"/api/v1/datasets/{version.dataset_id}", headers=_auth(people.viewer)).json()
    assert body["versions"][0]["schema"]["kind"] == "table"
    assert body["versions"][0]["stats"]["n_rows"] == 178
    listing = client.get(f"/api/v1/workspaces/{people.workspace.slug}/datasets?search=win",
                         headers=_auth(people.viewer)).json()
    assert [d["name"] for d in listing["datasets"]] == ["Wine"]


def test_patch_sets_target_and_ignored_columns_and_names_a_bad_field(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv")
    url = f"/api/v1/datasets/{version.dataset_id}"
    ok = client.patch(url, {"target_column": "species", "ignored_columns": ["sepal width (cm)"]},
                      content_type="application/json", headers=_auth(people.editor))
    assert ok.status_code == 200 and ok.json()["ignored_columns"] == ["sepal width (cm)"]
    bad = client.patch(url, {"target_column": "nope"}, content_type="application/json", headers=_auth(people.editor))
    assert bad.status_code == 400 and bad.json()["detail"].startswith("target_column")
    assert client.patch(url, {"target_column": "species"}, content_type="application/json",
                        headers=_auth(people.viewer)).status_code == 403


def test_a_missing_file_is_a_400_naming_the_field(people, client, data_dir):
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets", {"name": "x"},
                           headers=_auth(people.owner))
    assert response.status_code == 400 and response.json()["detail"].startswith("file")


def test_an_empty_file_is_a_400_through_the_api(people, client, data_dir):
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets",
                           {"file": SimpleUploadedFile("e.csv", b""), "name": "E"}, headers=_auth(people.owner))
    assert response.status_code == 400 and "empty" in response.json()["detail"]
    assert not Dataset.objects.exists()


def test_an_ingestion_failure_is_readable_through_the_api(people, client, ingest):
    version = ingest("a,b\n1,2\n3,4,5\n")
    body = client.get(f"/api/v1/datasets/{version.dataset_id}", headers=_auth(people.owner)).json()
    assert body["versions"][0]["status"] == "failed"
    assert body["versions"][0]["error"].startswith("Line 3 has 3 fields")


def test_outsiders_get_404_and_viewers_403(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv")
    url = f"/api/v1/datasets/{version.dataset_id}"
    assert client.get(url, headers=_auth(people.outsider)).status_code == 404
    assert client.delete(url, headers=_auth(people.outsider)).status_code == 404
    assert client.get(f"/api/v1/workspaces/{people.workspace.slug}/datasets",
                      headers=_auth(people.outsider)).status_code == 404
    assert client.delete(url, headers=_auth(people.viewer)).status_code == 403
    upload = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets",
                         {"file": SimpleUploadedFile("x.csv", b"a\n1\n")}, headers=_auth(people.viewer))
    assert upload.status_code == 403
    assert client.delete(url, headers=_auth(people.owner)).status_code == 204
    assert not Dataset.objects.exists()


def test_an_upload_over_the_limit_is_refused_with_a_message(people, client, data_dir, settings):
    settings.MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.csv", b"a,b\n" + b"1,2\n" * 600_000)
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets", {"file": big, "name": "Big"},
                           headers=_auth(people.owner))
    assert response.status_code == 413 and "upload limit of 1 MB" in response.json()["detail"]
    client.force_login(people.owner)
    big.seek(0)
    page = client.post(f"/w/{people.workspace.slug}/datasets/upload/", {"file": big, "name": "Big"})
    assert page.status_code == 413 and "upload limit of 1 MB" in page.content.decode()
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("field, value", [("name", "Ir\x00is"), ("name", "Iris\x1b[31m"),
                                          ("description", "about\x00"), ("description", "bell\x07")])
def test_control_characters_in_name_or_description_are_a_400_naming_the_field(people, client, data_dir,
                                                                             field, value):
    data = {"file": SimpleUploadedFile("iris.csv", FIXTURES.joinpath("iris.csv").read_bytes()),
            "name": "Iris", "description": "d", field: value}
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets", data,
                           headers=_auth(people.owner))
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field and "control characters" in response.json()["detail"]
    assert not Dataset.objects.exists()


def test_control_characters_are_refused_by_the_service_for_every_caller(people, data_dir, tmp_path):
    path = tmp_path / "iris.csv"
    path.write_bytes(FIXTURES.joinpath("iris.csv").read_bytes())
    with pytest.raises(services.DatasetError) as error:
        services.dataset_create_from_file(workspace=people.workspace, user=people.owner, name="Iris\x00",
                                          uploaded_file_path=path, original_filename="iris.csv")
    assert error.value.field == "name"
    assert not Dataset.objects.exists()


def test_tabs_and_line_breaks_in_a_description_are_kept(people, client, data_dir):
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/datasets",
                           {"file": SimpleUploadedFile("iris.csv", FIXTURES.joinpath("iris.csv").read_bytes()),
                            "name": "Iris", "description": "line one\r\n\tline two"},
                           headers=_auth(people.owner))
    assert response.status_code == 201, response.content
    assert response.json()["description"] == "line one\r\n\tline two"
