"""Error pages are the site's own: they say what went wrong and lead back, inside the usual layout."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.views import defaults

from webapp.experiments.models import Run


def _run(p, **fields):
    from tests.webapp.test_access_matrix import MATRIX_SPEC, _matrix_version

    return Run.objects.create(workspace=p.workspace, dataset_version=_matrix_version(p), created_by=p.owner,
                              spec=MATRIX_SPEC, **fields)


@pytest.mark.django_db
def test_a_refusal_says_why_inside_the_sites_layout(client, people):
    run = _run(people, status="succeeded")
    client.force_login(people.viewer)
    page = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/delete/")
    text = page.content.decode()
    assert page.status_code == 403 and 'data-testid="error-page"' in text and 'data-testid="account-link"' in text
    assert "Your role in this workspace is read-only" in text
    client.force_login(people.editor)
    text = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/delete/").content.decode()
    assert "only the person who started it or a workspace owner may delete it" in text


@pytest.mark.django_db
def test_not_found_says_so_and_gives_our_reason_where_there_is_one(client, people):
    run = _run(people, status="succeeded")
    client.force_login(people.outsider)
    page = client.get(run.get_absolute_url())
    assert page.status_code == 404 and 'data-testid="error-page"' in page.content.decode()
    assert "belongs to a workspace you are not a member of" in page.content.decode()
    client.force_login(people.owner)
    unknown = client.get("/no/such/page/").content.decode()
    assert "Not found" in unknown and "Resolver404" not in unknown
    weights = client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/download/weights/")
    assert weights.status_code == 404 and "This run has no weights yet" in weights.content.decode()


def test_the_server_error_page_needs_no_context():
    response = defaults.server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and "Something went wrong on the server" in response.content.decode()


@pytest.mark.django_db
def test_a_stale_form_is_refused_with_a_page_that_says_nothing_changed(people):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.owner)
    page = client.post(f"/w/{people.workspace.slug}/runs/delete/", {"runs": ["1"]})
    text = page.content.decode()
    assert page.status_code == 403 and "That form had expired" in text and "Nothing was changed" in text
