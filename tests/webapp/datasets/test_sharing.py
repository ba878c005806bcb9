"""Read-only share links to a data set's summary page, and the thumbnails they serve."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.webapp.datasets.conftest import FIXTURES
from webapp.accounts import services, sharing
from webapp.accounts.models import ShareLink


def _share(people, version, **kwargs):
    return services.share_link_create(workspace=people.workspace, actor=people.editor, target_type="dataset",
                                      target_id=str(version.dataset_id), **kwargs)


def test_a_valid_link_shows_the_summary_to_a_logged_out_visitor(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv", name="Iris")
    version.dataset.target_column = "species"
    version.dataset.save()
    response = client.get(f"/s/{_share(people, version).token}/")
    assert response.status_code == 200 and response.context["shared"] is True
    page = response.content.decode()
    assert "Read-only view" in page and "Iris" in page and version.content_hash in page
    assert "sepal length (cm)" in page and "setosa" in page and "1 row is a duplicate" in page
    assert 'id="dataset-charts"' in page and "Class balance of species" in page
    assert response["Cache-Control"] == "private, no-store"


def test_the_shared_page_has_no_write_controls_and_no_member_data(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv", name="Iris", user=people.editor)
    page = client.get(f"/s/{_share(people, version).token}/").content.decode()
    for private in ("Upload a new version", "Delete", "Save columns", "csrfmiddlewaretoken", "/columns/",
                    "/delete/", "/upload/", "/shares/", "eddie", "olga", "vera", "/members/"):
        assert private not in page, private


def test_the_shared_page_shows_the_latest_ready_version_only(people, client, ingest):
    first = ingest(FIXTURES / "iris.csv", name="Flowers")
    ingest(FIXTURES / "wine.csv", dataset=first.dataset)
    token = _share(people, first).token
    page = client.get(f"/s/{token}/?v=1").content.decode()
    assert "v2" in page and "alcohol" in page and "sepal length (cm)" not in page
    assert "Versions:" not in page
    assert "Rows 21–40" in client.get(f"/s/{token}/?page=2").content.decode()


def test_a_data_set_without_a_ready_version_says_so(people, client, ingest):
    version = ingest(b"a,b\n", name="Only a header")
    assert version.status == "failed"
    page = client.get(f"/s/{_share(people, version).token}/").content.decode()
    assert "no ready version yet" in page and version.error not in page


@pytest.mark.parametrize("state", ["revoked", "expired", "data set deleted"])
def test_revoked_expired_and_dangling_links_answer_404(people, client, ingest, state):
    version = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="d.zip")
    link = _share(people, version)
    if state == "revoked":
        services.share_link_revoke(link=link, actor=people.owner)
    elif state == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        version.dataset.delete()
    assert client.get(f"/s/{link.token}/").status_code == 404
    assert client.get(f"/s/{link.token}/data/image/?class=0&index=0").status_code == 404


def test_an_image_set_page_shows_thumbnails_through_the_share_link(people, client, ingest):
    version = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="d.zip")
    token = _share(people, version).token
    page = client.get(f"/s/{token}/").content.decode()
    assert "1797" in page and "Images by class" in page
    assert f'src="/s/{token}/data/image/?class=9&amp;index=3"' in page
    assert "/datasets/" not in page  # no private image URLs
    shared = client.get(f"/s/{token}/data/image/?class=9&index=3")
    assert shared.status_code == 200 and shared["Content-Type"] == "image/png"
    client.force_login(people.viewer)
    private = client.get(f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/v1/images/3.png?class=9")
    assert shared.content == private.content  # the same function draws both
    assert client.get(f"/s/{token}/data/image/?index=0").status_code == 200


@pytest.mark.parametrize("query", ["", "?index=99999", "?index=-1", "?index=abc", "?index=1e3", "?index=%EF%BC%91",
                                   "?index=0&class=10", "?index=0&class=-1", "?index=0&class=x",
                                   "?index=" + "9" * 40, "?class=0&index=200"])
def test_the_share_data_route_refuses_indexes_outside_the_set(people, client, ingest, query):
    version = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="d.zip")
    assert client.get(f"/s/{_share(people, version).token}/data/image/{query}").status_code == 404


def test_a_link_reaches_only_its_own_data_set(people, client, ingest):
    table = ingest(FIXTURES / "iris.csv", name="Iris")
    images = ingest(FIXTURES / "digits8x8.zip", name="Digits", filename="d.zip")
    token = _share(people, table).token
    # a table has no images, and no parameter names another data set
    assert client.get(f"/s/{token}/data/image/?index=0").status_code == 404
    assert client.get(f"/s/{token}/data/image/?index=0&dataset={images.dataset_id}").status_code == 404
    assert client.get(f"/s/{token}/data/nothing/").status_code == 404


def test_only_data_sets_of_the_workspace_can_be_shared(people, ingest):
    version = ingest(FIXTURES / "iris.csv")
    for workspace, target_id in ((people.other_workspace, str(version.dataset_id)), (people.workspace, "999"),
                                 (people.workspace, "9" * 40), (people.workspace, "1; drop")):
        with pytest.raises(services.ServiceError):
            services.share_link_create(workspace=workspace, actor=people.owner, target_type="dataset",
                                       target_id=target_id)
    assert sharing.resolve_target(people.workspace, "dataset", version.dataset_id) == version.dataset


def test_html_in_names_and_columns_is_escaped_on_the_shared_page(people, client, ingest):
    version = ingest('<script>alert(1)</script>,<b>y</b>\n1,a\n2,b\n3,a\n', name="<img src=x onerror=alert(2)>")
    version.dataset.description = "<i>desc</i>"
    version.dataset.save()
    page = client.get(f"/s/{_share(people, version).token}/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;y&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and "&lt;i&gt;desc&lt;/i&gt;" in page
    assert "<script>alert" not in page and "<b>y</b>" not in page and "<img src=x" not in page


def test_writers_see_a_share_link_that_prefills_the_share_page_and_viewers_do_not(people, client, ingest):
    version = ingest(FIXTURES / "iris.csv")
    url = f"/w/{people.workspace.slug}/datasets/{version.dataset_id}/"
    share = f"/w/{people.workspace.slug}/shares/?type=dataset&amp;id={version.dataset_id}"
    for who, shown in (("owner", True), ("editor", True), ("viewer", False)):
        client.force_login(getattr(people, who))
        assert (share in client.get(url).content.decode()) is shown, who
    client.force_login(people.editor)
    form = client.get(f"/w/{people.workspace.slug}/shares/?type=dataset&id={version.dataset_id}").context["form"]
    assert (form["target_type"].value(), form["target_id"].value()) == ("dataset", str(version.dataset_id))
    assert ("dataset", "Data set") in form.fields["target_type"].choices
