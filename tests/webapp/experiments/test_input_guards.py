"""Proof-test regressions: inputs the services must refuse with a 400 naming the field."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments.models import Run


def _sweep(client, people, iris, **extra):
    body = {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": {"target": "species"},
            "method": "random", "space": {"learning_rate": [0.01, 0.02, 0.05]}, **extra}
    return client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("count", [-5, 0, 51])
def test_a_sweep_count_out_of_range_gives_400_naming_count(client, people, iris, count):
    client.force_login(people.editor)
    response = _sweep(client, people, iris, count=count)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "count"
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_the_builder_has_a_place_for_the_count_message(client, people, iris):
    client.force_login(people.editor)
    page = client.get(f"/w/{people.workspace.slug}/runs/new/")
    assert page.status_code == 200
    assert b'data-error-for="count"' in page.content
