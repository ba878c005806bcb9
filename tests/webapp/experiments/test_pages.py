"""The experiment pages render for members, hide write controls from viewers, and 404 for outsiders."""

from __future__ import annotations

import io
import itertools

import pytest

from tests.webapp.experiments.conftest import FIXTURES, iris_spec
from webapp.experiments import execution, services
from webapp.experiments.models import Run


@pytest.fixture
def trained(people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                              spec=iris_spec(epochs=6), data_config={"target": "species"}, name="baseline")
    execution.run_execute(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_the_dashboard_lists_runs_with_filters(client, people, trained):
    client.force_login(people.viewer)
    ws = people.workspace.slug
    page = client.get(f"/w/{ws}/")
    assert page.status_code == 200 and b"baseline" in page.content
    assert b"Succeeded" in page.content
    assert b"baseline" not in client.get(f"/w/{ws}/?status=failed").content
    assert b"baseline" in client.get(f"/w/{ws}/?status=succeeded&dataset={trained.dataset_version.dataset_id}").content
    assert b"New run" not in client.get(f"/w/{ws}/").content.split(b"<main")[1]


@pytest.mark.django_db
def test_the_run_page_shows_curves_results_and_write_controls_to_editors(client, people, trained):
    client.force_login(people.editor)
    page = client.get(trained.get_absolute_url())
    assert page.status_code == 200
    assert b'id="run-data"' in page.content and b"confusion-matrix" in page.content
    assert b'data-testid="continue"' in page.content
    client.force_login(people.viewer)
    page = client.get(trained.get_absolute_url())
    assert page.status_code == 200 and b'data-testid="continue"' not in page.content


@pytest.mark.django_db
def test_the_run_page_records_what_the_fit_did_with_cuda_graphs(client, people, iris, monkeypatch):
    from trainer import backend

    def train(graphs_mode):
        monkeypatch.setattr(backend, "_graphs", graphs_mode)
        run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                  spec=iris_spec(epochs=3), data_config={"target": "species"})
        assert execution.run_execute(run.pk) == "succeeded"
        run.refresh_from_db()
        return run

    graphed = train("emulate")  # the graphed loop on NumPy: the record a GPU worker writes
    eager = train("0")          # one step at a time: nothing to record
    graphs = graphed.results["cuda_graphs"]
    assert graphs["mode"] == "emulate" and graphs["off"] is None and graphs["captured"] and graphs["checked"]
    assert "cuda_graphs" not in eager.results
    client.force_login(people.viewer)
    page = client.get(graphed.get_absolute_url()).content.decode()
    assert "CUDA graphs" in page and f"batch sizes captured {', '.join(map(str, graphs['captured']))}" in page
    assert "CUDA graphs" not in client.get(eager.get_absolute_url()).content.decode()


@pytest.mark.django_db
def test_the_live_endpoint_returns_every_epoch(client, people, trained):
    client.force_login(people.viewer)
    data = client.get(f"/w/{people.workspace.slug}/runs/{trained.pk}/live.json").json()
    assert data["series"]["epoch"] == [1, 2, 3, 4, 5, 6]
    assert len(data["series"]["loss"]) == 6 and "val_loss" in data["series"]
    assert data["state"]["status"] == "succeeded"
    since = client.get(f"/w/{people.workspace.slug}/runs/{trained.pk}/live.json?since=4").json()
    assert since["series"]["epoch"] == [5, 6]


@pytest.mark.django_db
def test_the_new_run_page_and_its_template_suggest_an_mlp(client, people, iris):
    client.force_login(people.editor)
    ws = people.workspace.slug
    assert client.get(f"/w/{ws}/runs/new/").status_code == 200
    answer = client.get(f"/w/{ws}/runs/template.json?version={iris.pk}").json()
    assert answer["spec"]["layers"][-1] == {"type": "Dense", "units": 3, "activation": "softmax"}
    assert answer["data"]["input_shape"] == [4]
    same = client.get(f"/w/{ws}/runs/template.json?version={iris.pk}&start=conv1d").json()  # series only
    assert same["spec"] == answer["spec"]
    empty = client.get(f"/w/{ws}/runs/template.json?version={iris.pk}&start=empty").json()
    assert empty["spec"]["layers"] == []
    client.force_login(people.viewer)
    assert client.get(f"/w/{ws}/runs/new/").status_code == 403


@pytest.mark.django_db
def test_the_viewer_cannot_cancel_from_the_page(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    client.force_login(people.viewer)
    assert client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/cancel/").status_code == 403
    client.force_login(people.editor)
    response = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/cancel/")
    assert response.status_code == 302 and response["Location"] == run.get_absolute_url()
    assert Run.objects.get(pk=run.pk).status == "cancelled"


@pytest.mark.django_db
def test_the_queue_pages_cancel_asks_first_and_stays_on_the_queue(client, people, iris):
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec(),
                              name="long one")
    client.force_login(people.editor)
    queue = client.get(f"/w/{people.workspace.slug}/queue/").content.decode()
    assert 'data-confirm="Cancel long one?"' in queue and 'name="next" value="queue"' in queue
    response = client.post(f"/w/{people.workspace.slug}/runs/{run.pk}/cancel/", {"next": "queue"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/w/{people.workspace.slug}/queue/"
    assert [str(m) for m in response.context["messages"]] == [
        "Cancelling long one: it stops after the current batch and keeps what it learned."]
    assert Run.objects.get(pk=run.pk).status == "cancelled"


@pytest.mark.django_db
def test_compare_shows_only_the_settings_that_differ(client, people, iris, trained):
    other = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris,
                                spec=iris_spec(epochs=6, learning_rate=0.05), data_config={"target": "species"})
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/compare/?runs={trained.pk}&runs={other.pk}")
    assert page.status_code == 200
    settings_table = page.content.split(b'data-testid="compare-settings"')[1].split(b"</table>")[0]
    assert b"spec.compile.optimizer.learning_rate" in settings_table
    assert b"spec.fit.epochs" not in settings_table


@pytest.mark.django_db
def test_every_epochs_metrics_download_as_csv(client, people, trained):
    import csv

    from webapp.experiments.models import MetricRow

    MetricRow.objects.filter(run=trained, epoch=2).update(values={"loss": 0.5})  # an epoch without some values
    client.force_login(people.viewer)
    assert b'data-testid="download-metrics"' in client.get(trained.get_absolute_url()).content
    response = client.get(f"/w/{people.workspace.slug}/runs/{trained.pk}/download/metrics/")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="run-{trained.pk}-metrics.csv"'
    table = list(csv.reader(io.StringIO(response.content.decode())))
    rows = {r.epoch: r.values for r in MetricRow.objects.filter(run=trained)}
    header = table[0]
    assert header[:3] == ["epoch", "loss", "accuracy"] and "val_loss" in header and len(table) == 1 + 6
    for line in table[1:]:
        values = rows[int(line[0])]
        assert [float(cell) if cell else None for cell in line[1:]] == [values.get(name) for name in header[1:]]
    assert table[2][header.index("val_loss")] == ""


@pytest.mark.django_db
def test_the_predict_page_shows_and_downloads_predictions(client, people, trained):
    client.force_login(people.viewer)
    url = f"/w/{people.workspace.slug}/runs/{trained.pk}/predict/"
    page = client.post(url, {"file": io.BytesIO((FIXTURES / "iris.csv").read_bytes())})
    assert page.status_code == 200 and b'data-testid="predictions"' in page.content
    csv = client.post(url, {"file": io.BytesIO((FIXTURES / "iris.csv").read_bytes()), "download": "csv"})
    assert csv["Content-Type"].startswith("text/csv") and len(csv.content.decode().splitlines()) == 151


@pytest.mark.django_db
def test_continue_and_fork_start_runs_from_a_checkpoint(people, trained):
    more = services.run_continue(run=trained, user=people.owner, epochs=3)
    assert more.from_epoch == 6 and more.epochs_done == 6 and more.epochs_total == 9
    assert execution.run_execute(more.pk) == "succeeded"
    assert list(more.metric_rows.values_list("epoch", flat=True)) == list(range(1, 10))
    spec = dict(trained.spec)
    spec["compile"] = dict(spec["compile"], optimizer={"type": "adam", "learning_rate": 0.001})
    fork = services.run_fork(run=trained, user=people.owner, from_epoch=3, spec=spec)
    assert execution.run_execute(fork.pk) == "succeeded"
    assert list(fork.metric_rows.values_list("epoch", flat=True)) == list(range(1, 7))
    with pytest.raises(services.InvalidInput) as error:
        services.run_fork(run=trained, user=people.owner, from_epoch=99)
    assert error.value.field == "from_epoch"


@pytest.mark.django_db
def test_a_sweep_creates_one_run_per_grid_point(client, people, iris):
    client.force_login(people.editor)
    body = {"dataset_version": iris.pk, "spec": iris_spec(epochs=2), "data_config": {"target": "species"},
            "space": {"learning_rate": [0.01, 0.1], "units": [8, 16]}}
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/sweeps", body, content_type="application/json")
    assert response.status_code == 201, response.content
    runs = Run.objects.filter(sweep_id=response.json()["id"])
    assert runs.count() == 4
    assert sorted(r.spec["layers"][0]["units"] for r in runs) == [8, 8, 16, 16]
    assert client.get(response.json()["url"]).status_code == 200
    assert client.get(f"/w/{people.workspace.slug}/queue/").status_code == 200


@pytest.mark.django_db
def test_long_runs_metrics_are_downsampled_past_two_thousand_epochs(client, people, iris):
    from webapp.experiments.models import MetricRow
    from webapp.experiments.selectors import LIVE_POINTS, MAX_POINTS

    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    epochs = 7000
    MetricRow.objects.bulk_create([MetricRow(run=run, epoch=e, values={"loss": 1 / e, "val_loss": 2 / e})
                                   for e in range(1, epochs + 1)])
    Run.objects.filter(pk=run.pk).update(best_epoch=4321, epochs_done=epochs)
    client.force_login(people.viewer)
    for url in (f"/w/{people.workspace.slug}/runs/{run.pk}/live.json", f"/api/v1/runs/{run.pk}/metrics"):
        data = client.get(url).json()
        shown = data["series"]["epoch"]
        assert data["count"] == epochs and data["downsampled"] is True
        assert MAX_POINTS <= len(shown) <= MAX_POINTS + 3, len(shown)
        assert shown == sorted(shown) and {1, 4321, epochs} <= set(shown)
        assert data["series"]["loss"] == [1 / e for e in shown]  # values stay with their epochs
        gaps = {b - a for a, b in itertools.pairwise(shown) if 4321 not in (a, b)}
        assert max(gaps) <= 4  # evenly spread, not the first 2,000
    short = client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/live.json?since={epochs - 10}").json()
    assert short["series"]["epoch"] == list(range(epochs - 9, epochs + 1)) and short["downsampled"] is False
    # A poll after a fast stretch of training brings at most LIVE_POINTS of it, spread, with the newest.
    burst = client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/live.json?since=5000").json()
    shown = burst["series"]["epoch"]
    assert burst["count"] == 2000 and burst["downsampled"] is True
    assert LIVE_POINTS <= len(shown) <= LIVE_POINTS + 3 and shown[0] == 5001 and shown[-1] == epochs
    assert max(b - a for a, b in itertools.pairwise(shown)) <= 5
    api = client.get(f"/api/v1/runs/{run.pk}/metrics?since=5000").json()
    assert api["series"]["epoch"] == list(range(5001, epochs + 1))  # the API's limit stays MAX_POINTS


@pytest.mark.django_db
def test_a_long_runs_curves_decode_only_the_rows_they_show(people, iris, monkeypatch):
    from webapp.experiments import selectors
    from webapp.experiments.models import MetricRow

    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=iris, spec=iris_spec())
    MetricRow.objects.bulk_create([MetricRow(run=run, epoch=e, values={"loss": 1 / e}) for e in range(1, 20001)])
    field = MetricRow._meta.get_field("values")
    decoded = []
    real = field.from_db_value
    monkeypatch.setattr(field, "from_db_value", lambda value, *args: (decoded.append(1), real(value, *args))[1])
    data = selectors.metric_series(run)
    assert data["count"] == 20000 and len(data["series"]["epoch"]) <= selectors.MAX_POINTS + 3
    assert len(decoded) <= selectors.MAX_POINTS + 3, len(decoded)  # only the kept epochs


@pytest.mark.django_db
def test_the_dashboard_pages_many_runs_with_a_query_count_that_does_not_grow(client, people, trained,
                                                                               django_assert_max_num_queries):
    for n in range(59):
        Run.objects.create(workspace=people.workspace, dataset_version=trained.dataset_version, created_by=people.owner,
                           spec=trained.spec, name=f"bulk {n}", status="succeeded", best_metric=0.5,
                           best_metric_name="val_accuracy")
    client.force_login(people.viewer)
    ws = people.workspace.slug
    with django_assert_max_num_queries(15):
        first = client.get(f"/w/{ws}/").content.decode()
    assert first.count('<tr data-run="') == 50
    assert "Runs 1–50 of 60" in first
    second = client.get(f"/w/{ws}/?status=succeeded&page=2").content.decode()
    assert second.count('<tr data-run="') == 10
    assert "baseline" in second  # the oldest run is on the last page
    assert "page=1" in second and "status=succeeded" in second  # the pager keeps the filters


@pytest.mark.django_db
def test_the_dashboard_stars_a_run_through_its_one_star_form(client, people, trained):
    client.force_login(people.editor)
    ws = people.workspace.slug
    page = client.get(f"/w/{ws}/").content.decode()
    assert page.count('id="star-form"') == 1 and f'id="star-{trained.pk}"' not in page
    edit_url = f"/w/{ws}/runs/{trained.pk}/edit/"
    assert f'formaction="{edit_url}" name="starred" value="1"' in page
    response = client.post(edit_url, {"starred": "1", "next": "dashboard"})
    assert response.status_code == 302 and response["Location"].rstrip("/").endswith(f"/w/{ws}")
    trained.refresh_from_db()
    assert trained.starred
    assert f'formaction="{edit_url}" name="starred" value="0"' in client.get(f"/w/{ws}/").content.decode()
    client.force_login(people.viewer)
    assert 'id="star-form"' not in client.get(f"/w/{ws}/").content.decode()


@pytest.mark.django_db
def test_run_lists_leave_each_runs_large_fields_unread(people, trained):
    from webapp.experiments import selectors

    listed = list(selectors.runs_for_workspace(people.workspace))
    assert [run.pk for run in listed] == [trained.pk]
    deferred = listed[0].get_deferred_fields()
    assert {"spec", "results", "preprocessing"} <= deferred
    assert {"schema", "stats"} <= listed[0].dataset_version.get_deferred_fields()
    assert listed[0].results == trained.results  # still readable when asked for, by one more query


def test_a_sweeps_units_reach_recurrent_layers_and_its_filters_the_convolutions():
    spec = {"layers": [{"type": "Conv1D", "filters": 8, "kernel_size": 3}, {"type": "LSTM", "units": 4},
                       {"type": "Bidirectional", "layer": {"type": "GRU", "units": 4}},
                       {"type": "Dense", "units": 16}, {"type": "Dense", "units": 1}]}
    swept = services.apply_params(spec, {"units": 64, "filters": 32})
    assert [layer.get("units") for layer in swept["layers"]] == [None, 64, None, 64, 1]  # the output keeps its size
    assert swept["layers"][2]["layer"] == {"type": "GRU", "units": 64}
    assert swept["layers"][0]["filters"] == 32
    assert spec["layers"][1]["units"] == 4  # the base spec is left as it was


def test_a_sweeps_dropout_reaches_dropout_layers_and_transformer_blocks():
    spec = {"layers": [{"type": "Dense", "units": 8}, {"type": "TransformerEncoder", "intermediate_dim": 16,
                                                        "num_heads": 2}, {"type": "Flatten"},
                       {"type": "Dropout", "rate": 0.1}, {"type": "Dense", "units": 1}]}
    swept = services.apply_params(spec, {"dropout": 0.3})
    assert swept["layers"][1]["dropout"] == 0.3 and swept["layers"][3]["rate"] == 0.3
    assert "dropout" not in spec["layers"][1]
