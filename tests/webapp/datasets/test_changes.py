"""What changed between two versions of a data set, from their stored statistics."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from tests.webapp.datasets.conftest import FIXTURES
from webapp.datasets import changes


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.django_db
def test_a_new_version_says_what_changed_column_by_column(client, people, ingest):
    iris = pd.read_csv(FIXTURES / "iris.csv")
    first = ingest(_csv(iris), name="Iris")
    dataset = first.dataset
    dataset.target_column = "species"
    dataset.save(update_fields=["target_column"])
    rng = np.random.default_rng(0)
    changed = iris.copy()
    changed["petal length (cm)"] += changed["petal length (cm)"].std()  # one standard deviation up
    changed.loc[rng.random(len(changed)) < 0.3, "sepal width (cm)"] = np.nan  # 30% missing
    changed = changed.drop(columns=["petal width (cm)"]).assign(site=rng.choice(["north", "south"], len(changed)))
    changed.loc[changed["species"] == "setosa", "species"] = "versicolor"  # a class gone, merged into another
    second = ingest(_csv(changed), dataset=dataset)
    found = changes.compare(first, second, target="species")
    assert (found["from"], found["to"], found["rows"]) == (1, 2, {"from": 150, "to": 150})
    assert found["added"] == ["site"] and found["removed"] == ["petal width (cm)"]
    by_name = {c["name"]: c for c in found["columns"]}
    length = by_name["petal length (cm)"]
    assert length["verdict"] == "different" and "1.00 standard deviations up" in length["says"]
    width = by_name["sepal width (cm)"]
    share = changed["sepal width (cm)"].isna().mean()
    assert width["verdict"] == "different" and width["says"].startswith(f"missing in {share:.0%} of rows (was 0%)")
    species = by_name["species"]
    assert species["target"] and species["verdict"] == "different" and "gone: setosa" in species["says"]
    assert by_name["sepal length (cm)"]["verdict"] == "same" and by_name["sepal length (cm)"]["says"] == "about the same"
    assert found["changed"] == 3 and [c["name"] for c in found["columns"]][-1] == "sepal length (cm)"

    # The page of v2 shows it against v1; a viewer reads it, and the API says the same.
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/datasets/{dataset.pk}/?v=2").content.decode()
    assert 'data-testid="changes"' in page and "Changes from v1" in page and "3 changed" in page
    assert "Added: site" in page and "Removed: petal width (cm)" in page
    assert 'data-testid="changes"' not in client.get(f"/w/{people.workspace.slug}/datasets/{dataset.pk}/?v=1").content.decode()
    api = client.get(f"/api/v1/datasets/{dataset.pk}/changes").json()  # the latest against the one before
    assert api["from"] == 1 and api["to"] == 2 and api["changed"] == 3
    assert [c["name"] for c in api["columns"]] == [c["name"] for c in found["columns"]]
    refused = client.get(f"/api/v1/datasets/{dataset.pk}/changes?version=1")
    assert refused.status_code == 400 and "no ready version before v1" in refused.json()["detail"]
    refused = client.get(f"/api/v1/datasets/{dataset.pk}/changes?version=2&against=5")
    assert refused.status_code == 400 and "Iris has no ready version 5 before v2" in refused.json()["detail"]

    # A third version, the first again: against v2 it changed back; against v1, nothing did.
    third = ingest(_csv(iris), dataset=dataset)
    assert changes.compare(second, third)["changed"] >= 3
    same = changes.compare(first, third)
    assert same["changed"] == same["worth_a_look"] == 0 and not same["added"] and not same["removed"]
    page = client.get(f"/w/{people.workspace.slug}/datasets/{dataset.pk}/?v=3&against=1").content.decode()
    assert "Changes from v1" in page and "nothing changed much" in page and "?v=3&amp;against=2#changes" in page
    page = client.get(f"/w/{people.workspace.slug}/datasets/{dataset.pk}/?v=3&against=9", follow=True).content.decode()
    assert "Iris has no ready version 9 before v3" in page and "Changes from v2" in page  # told, and the default shown
    client.force_login(people.outsider)
    assert client.get(f"/api/v1/datasets/{dataset.pk}/changes").status_code == 404


def test_a_numeric_columns_spread_and_a_text_columns_length_count_as_changes():
    class Version:
        def __init__(self, number, columns, rows=100):
            self.number, self.schema = number, {"kind": "table"}
            self.stats = {"n_rows": rows, "columns": columns}

    before = Version(1, [{"name": "x", "type": "numeric", "missing": 0, "mean": 10.0, "std": 2.0, "min": 0.0, "max": 20.0},
                         {"name": "note", "type": "text", "missing": 0, "mean_length": 40.0},
                         {"name": "n", "type": "numeric", "missing": 0, "mean": 1.0, "std": 1.0}])
    after = Version(2, [{"name": "x", "type": "numeric", "missing": 0, "mean": 10.1, "std": 5.0, "min": -5.0, "max": 30.0},
                        {"name": "note", "type": "text", "missing": 0, "mean_length": 90.0},
                        {"name": "n", "type": "text", "missing": 0}])
    found = {c["name"]: c for c in changes.compare(before, after)["columns"]}
    assert found["x"]["verdict"] == "different" and "spread 2.50 times as wide" in found["x"]["says"]
    assert "now from -5 to 30 (was 0 to 20)" in found["x"]["says"]
    assert found["note"]["verdict"] == "different" and "mean length 90 characters (was 40)" in found["note"]["says"]
    assert found["n"] == dict(found["n"], verdict="different", says="was numeric, now text")
    assert list(found) == ["n", "x", "note"]  # a changed type first, then the spread of 2.5 before the length of 2.25


@pytest.mark.django_db
def test_an_image_sets_new_version_says_which_classes_came_and_went(people, ingest):
    def zip_of(classes):
        buffer = io.BytesIO()
        with zipfile.ZipFile(FIXTURES / "digits8x8.zip") as source, zipfile.ZipFile(buffer, "w") as target:
            for info in source.infolist():
                if not info.is_dir() and info.filename.split("/")[-2] in classes:
                    target.writestr(info.filename, source.read(info))
        return buffer.getvalue()

    first = ingest(zip_of({"0", "1", "2", "3"}), name="Digits", filename="digits.zip")
    second = ingest(zip_of({"1", "2", "3", "4"}), dataset=first.dataset, filename="digits.zip")
    found = changes.compare(first, second)
    assert found["kind"] == "images" and found["added"] == ["4"] and found["removed"] == ["0"]
    assert found["mix"]["verdict"] == "different" and found["changed"] == 1
    counts = {c["name"]: (c["from"], c["to"]) for c in found["classes"]}
    assert counts["0"][1] == 0 and counts["4"][0] == 0 and counts["1"][0] == counts["1"][1] > 0


@pytest.mark.django_db
def test_the_uploader_and_the_webhooks_are_told_how_ingestion_ended_and_what_changed(people, ingest):
    from webapp.accounts.models import Notification, Webhook, WebhookDelivery

    Webhook.objects.create(workspace=people.workspace, url="https://example.org/hook")
    iris = pd.read_csv(FIXTURES / "iris.csv")
    first = ingest(_csv(iris), name="Iris", user=people.editor)
    told = Notification.objects.get(user=people.editor)
    assert told.message == "Iris v1 is ready: 150 rows" and told.link.endswith(f"/datasets/{first.dataset.pk}/?v=1")
    changed = iris.drop(columns=["petal width (cm)"]).assign(**{"sepal width (cm)": iris["sepal width (cm)"] * 3})
    second = ingest(_csv(changed), dataset=first.dataset, user=people.editor)
    told = Notification.objects.filter(user=people.editor).latest("pk")
    assert told.message == "Iris v2 is ready: 150 rows; against v1: 1 column changed (sepal width (cm)), 1 column removed"
    assert told.link.endswith("?v=2#changes") and told.level == "info"
    payload = WebhookDelivery.objects.filter(event="dataset.ready").latest("pk").payload
    assert payload["data"]["version"] == 2 and payload["data"]["changes"]["changed_columns"] == ["sepal width (cm)"]
    assert payload["data"]["changes"]["removed"] == ["petal width (cm)"] and payload["text"].startswith("[Lab] Iris v2 is ready")
    bad = ingest(b"\x89PNG\r\n\x1a\n not an image at all", dataset=second.dataset, user=people.editor, filename="x.png")
    assert bad.status == "failed"
    told = Notification.objects.filter(user=people.editor).latest("pk")
    assert told.level == "error" and told.message == f"Iris v{bad.number} could not be ingested: {bad.error}"[:300]
    failed = WebhookDelivery.objects.filter(event="dataset.failed").latest("pk").payload["data"]
    assert failed["version"] == bad.number and failed["error"] == bad.error


@pytest.mark.django_db
def test_a_newer_version_is_told_to_whoever_registered_a_model_trained_on_an_earlier_one(people, ingest):
    from tests.webapp.experiments.conftest import iris_spec
    from webapp.accounts.models import Notification
    from webapp.experiments import execution, registry, services

    iris = pd.read_csv(FIXTURES / "iris.csv")
    first = ingest(_csv(iris), name="Iris")
    first.dataset.target_column = "species"
    first.dataset.save(update_fields=["target_column"])
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=first, spec=iris_spec(epochs=2),
                              data_config={"target": "species"})
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    model = registry.register(run=run, user=people.editor, name="flowers").model
    ingest(_csv(iris.head(120)), dataset=first.dataset)
    told = Notification.objects.get(user=people.editor, link=model.get_absolute_url())
    assert told.message == ("Iris v2 is ready, newer than the v1 that flowers v1 (in production) trained on: "
                            "score it there, or train it again, from its page")
    assert not Notification.objects.filter(user=people.viewer).exists()
