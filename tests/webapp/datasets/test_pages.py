"""The data set pages: upload, list, detail, columns, delete — and who may do what."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.webapp.datasets.conftest import FIXTURES
from webapp.datasets.models import Dataset, DatasetVersion


def _upload(client, ws, content=b"a,b\n1,x\n2,y\n", name="Mine", filename="mine.csv", headers=None, **fields):
    return client.post(f"/w/{ws}/datasets/upload/",
                       {"name": name, "description": "", "file": SimpleUploadedFile(filename, content), **fields},
                       headers=headers or {})


def test_an_editor_uploads_a_csv_and_is_sent_to_its_page(people, client, data_dir):
    client.force_login(people.editor)
    response = _upload(client, people.workspace.slug)
    dataset = Dataset.objects.get()
    assert response.status_code == 302 and response.headers["Location"] == f"/w/{people.workspace.slug}/datasets/{dataset.pk}/"
    version = dataset.versions.get()
    assert (version.number, version.status, version.original_filename, version.size_bytes) == (1, "uploaded", "mine.csv", 12)
    assert (version.folder / "upload.bin").read_bytes() == b"a,b\n1,x\n2,y\n"
    page = client.get(response.headers["Location"])
    assert b"being ingested" in page.content and b"data-status-url" in page.content


def test_an_xhr_upload_answers_json_with_the_page_to_go_to(people, client, data_dir):
    client.force_login(people.owner)
    response = _upload(client, people.workspace.slug, headers={"X-Requested-With": "XMLHttpRequest"})
    assert response.status_code == 201
    assert response.json()["redirect"].endswith(f"/datasets/{Dataset.objects.get().pk}/")


def test_a_viewer_cannot_upload_edit_or_delete(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv")
    client.force_login(people.viewer)
    ws, pk = people.workspace.slug, version.dataset_id
    assert client.get(f"/w/{ws}/datasets/{pk}/").status_code == 200
    assert _upload(client, ws).status_code == 403
    assert client.post(f"/w/{ws}/datasets/{pk}/upload/", {"file": SimpleUploadedFile("x.csv", b"a\n1\n")}).status_code == 403
    assert client.post(f"/w/{ws}/datasets/{pk}/columns/", {"target_column": "species"}).status_code == 403
    assert client.post(f"/w/{ws}/datasets/{pk}/delete/").status_code == 403
    assert client.post(f"/w/{ws}/datasets/samples/", {"sample": "iris"}).status_code == 403
    assert Dataset.objects.count() == 1 and DatasetVersion.objects.count() == 1


def test_an_outsider_gets_404_everywhere(people, client, ingest):
    version = ingest(FIXTURES / "digits8x8.zip", filename="d.zip")
    client.force_login(people.outsider)
    ws, pk = people.workspace.slug, version.dataset_id
    for url in (f"/w/{ws}/datasets/", f"/w/{ws}/datasets/{pk}/", f"/w/{ws}/datasets/{pk}/v1/status/",
                f"/w/{ws}/datasets/{pk}/v1/images/0.png"):
        assert client.get(url).status_code == 404, url
    # their own workspace's slug with our data set's id is not a way in either
    assert client.get(f"/w/{people.other_workspace.slug}/datasets/{pk}/").status_code == 404
    assert client.post(f"/w/{ws}/datasets/{pk}/delete/").status_code == 404
    assert Dataset.objects.filter(pk=pk).exists()


def test_the_detail_page_shows_summary_preview_statistics_and_warnings(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv", name="Iris")
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/").content.decode()
    assert version.content_hash in page
    assert "sepal length (cm)" in page and "setosa" in page
    assert "1 row is a duplicate" in page
    assert 'id="dataset-charts"' in page and "plotly.min.js" in page
    page2 = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/?page=2").content.decode()
    assert "Rows 21–40" in page2


def test_an_image_set_page_shows_a_grid_served_as_png_through_an_access_check(people, client, ingest):
    version = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="d.zip")
    client.force_login(people.viewer)
    base = f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/"
    page = client.get(base).content.decode()
    assert "1797" in page and "Images by class" in page
    image = client.get(base + "v1/images/3.png?class=9")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    assert client.get(base + "v1/images/99999.png").status_code == 404


def test_the_list_searches_by_name(people, client, ingest):
    ingest(FIXTURES / "iris.csv", name="Iris flowers")
    ingest(FIXTURES / "wine.csv", name="Wine")
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/datasets/?q=iris").content.decode()
    assert "Iris flowers" in page and "Wine" not in page


def test_target_and_ignored_columns_are_saved_and_validated(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv")
    client.force_login(people.editor)
    url = f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/columns/"
    client.post(url, {"target_column": "species", "ignored_columns": ["sepal width (cm)"]})
    dataset = Dataset.objects.get()
    assert (dataset.target_column, dataset.ignored_columns) == ("species", ["sepal width (cm)"])
    response = client.post(url, {"target_column": "no such column"}, follow=True)
    assert "Choose columns of this data set" in response.content.decode()
    assert Dataset.objects.get().target_column == "species"


def test_a_sample_loads_with_one_click(people, client, data_dir, django_capture_on_commit_callbacks):
    client.force_login(people.owner)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/w/{people.workspace.slug}/datasets/samples/", {"sample": "co2_weekly"})
    assert response.status_code == 302 and len(callbacks) == 1
    version = DatasetVersion.objects.get()
    assert version.dataset.name == "CO2 weekly" and version.options["kind"] == "series"


@pytest.mark.parametrize("who", ["owner", "editor"])
def test_writers_delete_a_data_set_and_its_files(people, client, ingest, who):
    version = ingest(FIXTURES / "wine.csv")
    folder = version.dataset.folder
    assert folder.exists()
    client.force_login(getattr(people, who))
    response = client.post(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/delete/")
    assert response.status_code == 302 and not Dataset.objects.exists() and not folder.exists()


@pytest.mark.django_db
def test_a_page_read_while_ingestion_commits_shows_the_target_ingestion_set(client, people, monkeypatch):
    # The view reads the data set, then its version; ingestion may commit the version's "ready" and the
    # target it picked (one transaction) in between. The page must show that target's class balance.
    from tests.webapp.experiments.conftest import make_version
    from webapp.datasets import views

    version = make_version(people.workspace, people.owner, str(FIXTURES / "iris.csv"), name="Iris")
    Dataset.objects.filter(pk=version.dataset_id).update(target_column="")  # as the view first reads it
    real = views._version_of

    def ingestion_commits_meanwhile(dataset, number):
        Dataset.objects.filter(pk=dataset.pk).update(target_column="species")
        return real(dataset, number)

    monkeypatch.setattr(views, "_version_of", ingestion_commits_meanwhile)
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/").content.decode()
    assert 'id="chart-balance"' in page and "Class balance of species" in page
