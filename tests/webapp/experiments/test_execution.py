"""Running a run in-process: the same service the worker calls, without the broker."""

from __future__ import annotations

import pytest

from tests.webapp.experiments.conftest import iris_spec
from webapp.experiments import checkpoints, execution, services
from webapp.experiments.models import MetricRow


@pytest.mark.django_db
def test_a_run_on_iris_trains_to_a_real_accuracy(people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=30), data_config={"target": "species"})
    assert execution.run_execute(run.pk, hostname="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == "succeeded", run.reason
    assert run.results["test"]["accuracy"] >= 0.8
    assert MetricRow.objects.filter(run=run).count() == 30
    assert run.epochs_done == 30
    assert run.results["confusion_matrix"] and len(run.results["class_names"]) == 3
    assert checkpoints.weights_path(run).exists()
    assert checkpoints.epochs_saved(run)[-1] == 30
    assert run.code_version and run.library_versions["numpy"]
