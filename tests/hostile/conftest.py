"""The hostile corpus's world: a workspace holding a ready data set and a run, clients for each person,
and a snapshot of everything stored, to prove a hostile request changed nothing that was there before.

Requests go through Django's test client (the real URL routing, middleware, views and API); ingestion
runs in-process right after an upload is accepted, as the worker would run it.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path
from unittest import mock

import pytest
from django.test import Client

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "Internal Server Error")


def iris_spec(epochs: int = 2) -> dict:
    return {
        "input_shape": [4],
        "layers": [{"type": "Dense", "units": 8, "activation": "relu"},
                   {"type": "Dense", "units": 3, "activation": "softmax"}],
        "compile": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
        "fit": {"epochs": epochs, "batch_size": 16, "seed": 1},
    }


def _folder_digest(folder: Path) -> dict:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot() -> dict:
    """Every stored data set, version, run, workspace and membership, and the files of every version."""
    from webapp.accounts.models import Membership, Workspace
    from webapp.datasets.models import Dataset, DatasetVersion
    from webapp.experiments.models import MetricRow, Run

    return {
        "workspaces": {w.pk: (w.name, w.slug) for w in Workspace.objects.all()},
        "memberships": {m.pk: (m.workspace_id, m.user_id, m.role) for m in Membership.objects.all()},
        "datasets": {d.pk: (d.name, d.description, d.kind, d.target_column, list(d.ignored_columns))
                     for d in Dataset.objects.all()},
        "versions": {v.pk: (v.status, v.content_hash, v.n_rows, v.error, repr(v.schema), _folder_digest(v.folder))
                     for v in DatasetVersion.objects.all()},
        "runs": {r.pk: (r.name, r.status, repr(r.spec), r.notes, list(r.tags), r.starred, r.priority,
                        r.cancel_requested) for r in Run.objects.all()},
        "metric_rows": MetricRow.objects.count(),
    }


def assert_unchanged(before: dict, after: dict) -> None:
    """What existed before is still there, identical; new rows (a failed version) may have appeared."""
    for table, rows in before.items():
        if isinstance(rows, dict):
            for pk, value in rows.items():
                assert pk in after[table], f"{table} #{pk} disappeared"
                assert after[table][pk] == value, f"{table} #{pk} changed: {value!r} -> {after[table][pk]!r}"
        else:
            assert after[table] == rows, f"{table} changed: {rows} -> {after[table]}"


def assert_no_trace(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.content[:1000]!r}"
    body = response.content.decode("utf-8", "replace")
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"the answer shows a stack trace: {body[:1000]}"


def page_text(response) -> str:
    """The page's text with tags removed and entities decoded (what a person reads)."""
    body = response.content.decode("utf-8", "replace")
    body = re.sub(r"<script\b[^>]*>.*?</script>", " ", body, flags=re.DOTALL | re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


class World:
    pass


@pytest.fixture
def world(people, settings, tmp_path):
    """A workspace with a ready iris data set (target chosen) and one queued run, plus a client per person."""
    from webapp.accounts import services as accounts
    from webapp.datasets import services as datasets
    from webapp.experiments import services as experiments

    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "upload-tmp")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()

    with mock.patch("webapp.datasets.services._enqueue"):
        version = datasets.dataset_create_from_file(
            workspace=people.workspace, user=people.owner, name="Iris", description="the baseline",
            uploaded_file_path=FIXTURES / "iris.csv", original_filename="iris.csv")
    version = datasets.ingest_version(version.pk)
    assert version.status == "ready", version.error
    datasets.dataset_update_columns(dataset=version.dataset, target_column="species")
    with mock.patch("webapp.experiments.services.dispatch"):
        run = experiments.run_create(workspace=people.workspace, user=people.owner, dataset_version=version,
                                     spec=iris_spec(), data_config={"target": "species"}, name="baseline run")
    with mock.patch("webapp.datasets.services._enqueue"):
        other_version = datasets.dataset_create_from_file(
            workspace=people.other_workspace, user=people.outsider, name="Elsewhere iris",
            uploaded_file_path=FIXTURES / "iris.csv", original_filename="iris.csv")
    other_version = datasets.ingest_version(other_version.pk)
    with mock.patch("webapp.experiments.services.dispatch"):
        other_run = experiments.run_create(workspace=people.other_workspace, user=people.outsider,
                                           dataset_version=other_version, spec=iris_spec(),
                                           data_config={"target": "species"}, name="not yours")

    w = World()
    w.people, w.workspace, w.ws = people, people.workspace, people.workspace.slug
    w.version, w.dataset, w.run = version, version.dataset, run
    w.other_version, w.other_run = other_version, other_run
    w.page = Client(HTTP_HOST="127.0.0.1")
    w.page.force_login(people.owner)

    def api_client(user):
        _, key = accounts.token_create(user=user, name="hostile")
        return Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")

    w.api = api_client(people.owner)
    w.viewer_api = api_client(people.viewer)
    w.outsider_api = api_client(people.outsider)
    w.anonymous = Client(HTTP_HOST="127.0.0.1")
    w.before = snapshot()
    return w


@pytest.fixture(autouse=True)
def _no_broker():
    """Nothing here reaches Redis: ingestion is run in-process and runs are never dispatched."""
    with mock.patch("webapp.datasets.services._enqueue"), mock.patch("webapp.experiments.services.dispatch"):
        yield
