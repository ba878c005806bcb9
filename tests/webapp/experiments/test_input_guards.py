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


def _create(client, people, iris, **extra):
    body = {"dataset_version": iris.pk, "spec": iris_spec(), "data_config": {"target": "species"}, **extra}
    return client.post(f"/api/v1/workspaces/{people.workspace.slug}/runs", body, content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [
    ("name", "bad\x00name"), ("name", "bell\x07"), ("tags", ["ok", "nul\x00tag"]), ("tags", ["esc\x1b"]),
])
def test_creating_a_run_refuses_control_characters(client, people, iris, field, value):
    client.force_login(people.editor)
    response = _create(client, people, iris, **{field: value})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Run.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field, value", [
    ("notes", "before\x00after"), ("notes", "x\x0by"), ("name", "n\x00"), ("tags", ["t\x00"]), ("tags", ["\x7f"]),
])
def test_patching_a_run_refuses_control_characters(client, people, iris, field, value):
    client.force_login(people.editor)
    run_id = _create(client, people, iris, name="clean", tags=["a"]).json()["id"]
    response = client.patch(f"/api/v1/runs/{run_id}", {field: value}, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    run = Run.objects.get(pk=run_id)
    assert (run.name, run.notes, run.tags) == ("clean", "", ["a"])


@pytest.mark.django_db
def test_tabs_and_newlines_in_notes_are_kept(client, people, iris):
    client.force_login(people.editor)
    run_id = _create(client, people, iris).json()["id"]
    notes = "line one\r\n\tline two\n"
    response = client.patch(f"/api/v1/runs/{run_id}", {"notes": notes}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Run.objects.get(pk=run_id).notes == notes
