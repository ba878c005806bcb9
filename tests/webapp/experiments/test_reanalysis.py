"""A run scored before Cupola made its newer analyses gets them from a worker on request."""

from __future__ import annotations

from unittest import mock

import pytest

from tests.webapp.experiments.test_curves import _binary_run
from webapp.experiments import datasource, execution, services
from webapp.experiments.models import Run
from webapp.experiments.tasks import reanalyse

NEW_SCORES = ("auc", "average precision", "calibration error (ECE)")


def _as_scored_long_ago(run: Run) -> dict:
    """Strip what older evaluations did not make; return it as training made it."""
    kept = {key: run.results.pop(key) for key in execution.REANALYSED if key in run.results}
    kept["test"] = {name: run.results["test"].pop(name) for name in NEW_SCORES}
    run.save(update_fields=["results"])
    return kept


@pytest.mark.django_db
def test_an_old_run_gets_its_missing_analyses_from_a_worker_as_training_would_have_made_them(
        client, people, tmp_path, django_capture_on_commit_callbacks):
    run = _binary_run(people, tmp_path, epochs=4)
    at_training = _as_scored_long_ago(run)
    assert services.missing_analyses(run) == ["calibration", "ROC curves", "the training rows' input profile",
                                              "its hidden layer's reference for drift"]
    url = f"/w/{people.workspace.slug}/runs/{run.pk}/reanalyse/"
    client.force_login(people.viewer)
    page = client.get(run.get_absolute_url()).content.decode()
    assert ("This run was scored before Cupola worked out its calibration, ROC curves, the training rows&#x27; "
            "input profile, its hidden layer&#x27;s reference for drift.") in page and 'data-testid="reanalyse"' not in page
    assert client.post(url).status_code == 403
    client.force_login(people.editor)
    assert 'data-testid="reanalyse"' in client.get(run.get_absolute_url()).content.decode()
    with mock.patch.object(reanalyse, "apply_async") as send:
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(url).status_code == 302
        send.assert_called_once_with(args=[run.pk], queue="default")
        page = client.get(run.get_absolute_url()).content.decode()
        assert "data-analyses-pending" in page and 'data-testid="reanalyse"' not in page
        refused = client.post(url, follow=True).content.decode()  # a second ask while the first is worked out
        assert "its analyses are being worked out" in refused and send.call_count == 1
    reanalyse(run.pk)  # what the worker runs
    run.refresh_from_db()
    for key in execution.REANALYSED:
        if key in at_training:
            assert run.results[key] == at_training[key], key  # the same rows and model: the same numbers
    for name in NEW_SCORES:
        assert run.results["test"][name] == pytest.approx(at_training["test"][name])
    assert list(run.results["test"])[: -len(NEW_SCORES)] == ["loss", "accuracy"]  # the old scores first, unchanged
    assert services.missing_analyses(run) == [] and "done" in run.results["reanalysis"]
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="analyses"' not in page and 'id="threshold-slider"' in page
    api = client.post(f"/api/v1/runs/{run.pk}/reanalyse")
    assert api.status_code == 400 and "it has every analysis already" in api.json()["detail"]


@pytest.mark.django_db
def test_a_failed_reanalysis_says_why_and_can_be_asked_again(client, people, tmp_path):
    run = _binary_run(people, tmp_path, epochs=2)
    _as_scored_long_ago(run)
    client.force_login(people.editor)
    with mock.patch.object(reanalyse, "apply_async"):
        response = client.post(f"/api/v1/runs/{run.pk}/reanalyse")
    assert response.status_code == 202 and response.json()["missing"][0] == "calibration"
    with mock.patch.object(datasource, "prepare", side_effect=OSError("the data set's files are gone")):
        reanalyse(run.pk)
    run.refresh_from_db()
    assert run.results["reanalysis"] == {"error": "OSError: the data set's files are gone"}
    assert "calibration" not in run.results and run.results["test"]["accuracy"] is not None
    page = client.get(run.get_absolute_url()).content.decode()
    assert "Working out the missing analyses failed: OSError: the data set&#x27;s files are gone" in page
    assert ">Try again</button>" in page
