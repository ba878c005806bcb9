"""A new user's whole journey in a real browser, twice: a CSV table with an MLP and an image zip with a CNN.

Sign up, create a workspace, upload, see the preview and the charts, build a model from the suggested
template, train on the real worker while the loss chart grows, see the confusion matrix, predict on new
data and download the result, share the run by link, and open the link logged out: read-only.
Both runs are given far more epochs than any machine trains in the test's time and are cancelled from
their page once the chart has grown: a fixed epoch count finishes before the page's first poll on a fast
machine (the iris MLP trains 500 epochs in under two seconds) and takes minutes on a slow one. A
cancelled run keeps and evaluates what it learned, so the results (confusion matrix, predictions, share)
are those of a finished run; runs that train to the end are covered through the real worker in
tests/webapp/experiments/test_integration.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _sign_up_and_create_workspace(pages, page, base: str, username: str, workspace: str) -> str:
    page.goto(f"{base}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("a-Long-e2e-pass-42")
    pages.shot(page, "signup")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/workspaces/new/$"))
    page.get_by_label("Name").fill(workspace)
    pages.shot(page, "new-workspace")
    page.get_by_role("button", name="Create workspace").click()
    page.wait_for_url(re.compile(r"/w/[\w-]+/$"))
    pages.shot(page, "dashboard-empty")
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def _upload(pages, page, base: str, ws: str, path: Path, name: str, kind: str | None = None) -> str:
    page.goto(f"{base}/w/{ws}/datasets/upload/")
    page.set_input_files("#id_file", str(path))
    page.fill("#id_name", name)
    if kind:
        page.locator("summary", has_text="Options").click()
        page.select_option("#id_kind", kind)
    pages.shot(page, "upload")
    page.click("#upload-button")
    page.wait_for_url(re.compile(r"/datasets/\d+/$"), timeout=60_000)
    # The page polls the ingestion status and reloads itself when the worker is done.
    page.wait_for_selector("[data-testid=hash]", timeout=90_000)
    return page.url


def _plot_points(page, chart_id: str) -> int:
    return page.evaluate("""(id) => {
        const node = document.getElementById(id);
        if (!node || !node.data || !node.data.length) return 0;
        return Math.max(...node.data.map((trace) => (trace.x || []).length));
    }""", chart_id)


def _open_builder(page, base: str, ws: str) -> None:
    """The New run page, once its first summary has come back from the server."""
    page.goto(f"{base}/w/{ws}/runs/new/")
    page.wait_for_function("document.getElementById('total-params').textContent.trim() !== '—'", timeout=30_000)


def _wait_for_layer_shapes(page) -> None:
    """Each layer row shows its output shape once the server has checked the edited spec (300 ms after the last edit)."""
    page.wait_for_function("Array.from(document.querySelectorAll('[data-shape-for]'))"
                           ".every((n) => n.textContent.startsWith('→'))", timeout=30_000)


def _build_from_template_and_train(pages, page, base: str, ws: str, *, epochs: int, batch_size: int,
                                   expect_layer: str, augment: str | None = None, class_weight: str = "",
                                   find_lr: bool = False) -> str:
    _open_builder(page, base, ws)
    spec_text = page.input_value("[data-testid=spec-json]")
    assert expect_layer in spec_text, f"the suggested template has no {expect_layer}: {spec_text[:400]}"
    assert not page.locator("[data-start=conv1d]").is_visible()  # the 1-D CNN template is for series
    assert not page.locator("[data-start=transformer]").is_visible()
    assert page.locator("#class-weight").is_visible()  # both flows classify
    if class_weight:
        page.select_option("#class-weight", class_weight)
        page.wait_for_function(f"JSON.parse(document.getElementById('spec-json').value).fit.class_weight === '{class_weight}'")
    if augment:  # an augmentation layer from the palette goes first, in front of the template's layers
        page.select_option("#add-type", augment)
        page.click("#add-layer")
        page.wait_for_function(f"JSON.parse(document.getElementById('spec-json').value).layers[0].type === '{augment}'")
    if find_lr:
        page.check("#find-lr")
        page.wait_for_function("JSON.stringify(JSON.parse(document.getElementById('spec-json').value)"
                               ".fit.find_learning_rate) === '{}'")
    page.fill("#epochs", str(epochs))
    page.fill("#batch_size", str(batch_size))
    page.fill("#run-name", f"e2e {expect_layer}")
    page.wait_for_function(f"document.getElementById('spec-json').value.includes('\"epochs\": {epochs}')")
    _wait_for_layer_shapes(page)
    pages.shot(page, "builder")
    page.click("[data-testid=train]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"), timeout=30_000)
    return page.url


def _watch_training(pages, page, *, cancel: bool = False, results: str = "confusion-matrix") -> None:
    """The loss chart gains points while the run trains, without a reload; then the page shows the results.

    With ``cancel``, the run is stopped from the page once the chart has grown (a run long enough to be
    seen training on any machine, bounded in time): it keeps what it learned, evaluated like a finished one.
    """
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Running'", timeout=60_000)
    page.wait_for_function("(() => { const n = document.getElementById('chart-loss');"
                           " return n && n.data && n.data.length && n.data[0].x.length > 0; })()", timeout=30_000)
    first = _plot_points(page, "chart-loss")
    status = "Running"
    grew = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not grew:
        time.sleep(0.5)
        status = page.text_content("#run-status").strip()
        grew = _plot_points(page, "chart-loss") > first
    if grew:
        pages.shot(page, "training")
    assert grew, f"the loss chart did not grow while training ({first} points, status {status})"
    if cancel:
        page.click("[data-testid=cancel]")
        page.wait_for_selector("#run-status.cancelled", timeout=60_000)
    else:
        page.wait_for_selector("#run-status.succeeded", timeout=120_000)
    page.wait_for_selector(f"[data-testid={results}] .main-svg", timeout=30_000)
    assert _plot_points(page, "chart-loss") >= 2
    pages.shot(page, "run-finished")


def _predict_and_download(pages, page, files: list[Path], expected_rows: int, tmp_path: Path) -> list[list[str]]:
    page.click("[data-testid=predict-link]")
    page.wait_for_selector("[data-testid=predict-form]")
    page.set_input_files("#file", [str(f) for f in files])
    page.get_by_role("button", name="Predict", exact=True).click()
    page.wait_for_selector("[data-testid=predictions]", timeout=30_000)
    shown = page.locator("[data-testid=predictions] tbody tr").count()
    assert shown == expected_rows
    pages.shot(page, "predictions")
    page.set_input_files("#file", [str(f) for f in files])
    with page.expect_download() as info:
        page.get_by_role("button", name="Predict and download CSV").click()
    target = pages.shots / info.value.suggested_filename
    target.parent.mkdir(parents=True, exist_ok=True)
    info.value.save_as(str(target))
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert len(rows) == expected_rows + 1, rows[:3]
    return rows


def _predict_a_whole_data_set(pages, page, tmp_path: Path, expected_rows: int, dataset_url: str = "") -> None:
    """On the predict page (or from the data set's page, where it offers the runs that read it): a worker predicts
    every row of a data set version; the page reloads itself until the job's CSV can be downloaded, with the data
    set's own answer beside each prediction."""
    if dataset_url:
        page.goto(dataset_url)
        page.click("[data-testid=predict-on-it]")
        page.wait_for_selector("[data-testid=predict-candidates]")
        pages.shot(page, "predict-a-data-set")
        page.locator("[data-testid=predict-with]").first.click()
        page.wait_for_url(re.compile(r"/runs/\d+/predict/#jobs$"))
    else:
        page.click("[data-testid=predict-dataset]")
    page.wait_for_selector("[data-testid=prediction-jobs]")
    page.wait_for_selector("[data-testid=job-download]", timeout=60_000)  # autoreload while it is worked out
    pages.shot(page, "prediction-job")
    with page.expect_download() as info:
        page.click("[data-testid=job-download]")
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(str(target))
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert len(rows) == expected_rows + 1 and rows[0][:2] == ["row", "prediction"] and rows[0][-1] == "actual"
    right = sum(row[1] == row[-1] for row in rows[1:]) / expected_rows
    assert right > 0.6, rows[:3]


def _register_as_a_model(pages, page, base: str, ws: str, run_url: str, name: str) -> None:
    """From the run's page, into the registry under a new name: its first version, in production; the
    run's page says so, and its delete button is refused while the model holds it."""
    page.goto(run_url)
    page.fill("#model-name", name)
    page.fill("#model-note", "stopped by hand")
    page.click("[data-testid=register]")
    page.wait_for_url(re.compile(r"/models/\d+/$"))
    assert page.locator("h1").text_content() == name  # shown as text
    row = page.locator("[data-testid=versions] tbody tr").first
    assert "v1" in row.text_content() and "in production" in row.text_content() and "stopped by hand" in row.text_content()
    assert "accuracy" in row.text_content()  # its test scores
    pages.shot(page, "model")
    page.goto(f"{base}/w/{ws}/models/")
    assert page.locator("[data-testid=models] tbody tr").first.text_content().count(name) == 1
    pages.shot(page, "models")
    page.goto(run_url)
    assert "Version 1 of" in page.locator("[data-testid=registry]").text_content()


def _share_and_open_logged_out(pages, page, base: str, ws: str, run_url: str, pages_factory) -> str:
    run_id = re.search(r"/runs/(\d+)/", run_url).group(1)
    page.goto(f"{base}/w/{ws}/shares/?type=run&id={run_id}")
    pages.shot(page, "share-form")
    page.get_by_role("button", name="Create link").click()
    page.wait_for_url(re.compile(r"/shares/\?new=\d+"))
    link = page.locator("tr.highlight input[aria-label='Share link']").input_value()
    assert "/s/" in link
    pages.shot(page, "share-links")

    outsider = pages_factory("logged-out")
    shared = outsider.new()
    shared.goto(link)
    shared.wait_for_selector("[data-testid=confusion-matrix] .main-svg", timeout=30_000)
    assert _plot_points(shared, "chart-loss") >= 2
    assert shared.locator("[role=note]").first.text_content().startswith("Read-only")
    for control in ("[data-testid=train]", "[data-testid=cancel]", "[data-testid=new-run]", "[data-testid=star]",
                    "[data-testid=continue]", "[data-testid=predict-link]", "#upload-form", "[data-testid=share]",
                    "[data-testid=team-link]", "textarea#notes", "input[type=file]", "[data-testid=register]"):
        assert shared.locator(control).count() == 0, f"the shared page shows {control}"
    assert shared.get_by_role("link", name="Log in").count() == 1  # a stranger, not a member
    outsider.shot(shared, "shared-run")
    assert outsider.new().goto(run_url).url.count("/accounts/login/") == 1  # the run page itself stays private
    return link


def _delete_from_the_dashboard(pages, page, base: str, ws: str, run_url: str, link: str) -> None:
    """Tick the run on the dashboard, "Delete selected", accept the browser's question: the run, its
    page and its share link are gone."""
    page.goto(f"{base}/w/{ws}/")
    run_id = re.search(r"/runs/(\d+)/", run_url).group(1)
    delete = page.locator("#delete-button")
    assert delete.is_visible() and delete.is_disabled()
    page.check(f"input[name=runs][value='{run_id}']")
    pages.shot(page, "dashboard-selected")
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    delete.click()
    page.wait_for_selector("text=Deleted 1 run")
    assert questions and questions[0].startswith("Delete this run?"), questions
    assert "No runs yet" in page.locator("[data-testid=runs]").text_content()
    pages.shot(page, "deleted")
    assert page.request.get(run_url).status == 404  # with the session's cookies, not as a page: no console error
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(link)
    assert gone.value.code == 404


def test_a_new_user_trains_an_mlp_on_a_csv_and_shares_it(live_server, stack, transactional_db, pages, tmp_path):
    base = live_server.url
    owner = pages()
    page = owner.new()
    ws = _sign_up_and_create_workspace(owner, page, base, "ada", "Iris lab")

    dataset_url = _upload(owner, page, base, ws, FIXTURES / "iris.csv", "Iris")
    assert page.locator("table").first.locator("tbody tr").count() >= 5, "no preview rows"
    page.wait_for_selector("#column-charts .main-svg")
    assert page.locator("#column-charts .js-plotly-plot").count() >= 4, "a column lacks its chart"
    page.wait_for_selector("#chart-balance .main-svg")
    assert "species" in page.content()
    owner.shot(page, "dataset")

    run_url = _build_from_template_and_train(owner, page, base, ws, epochs=100_000, batch_size=4,
                                             expect_layer="Dense", class_weight="balanced", find_lr=True)
    _watch_training(owner, page, cancel=True)
    # The range test ran before the first epoch: its curve, and the rate the run trained at.
    page.wait_for_selector("#chart-lr-find .main-svg")
    chosen = float(page.text_content("[data-testid=lr-find] strong"))
    stored = json.loads(page.locator("[data-testid=spec]").text_content())  # the spec trains at it
    assert chosen > 0 and stored["compile"]["optimizer"]["learning_rate"] == pytest.approx(chosen, rel=5e-3)
    assert page.locator("[data-testid=class-weights]").text_content().startswith("balanced")
    page.wait_for_selector("#chart-importance .main-svg")  # which of the four measurements the model relies on
    bars = page.evaluate("document.getElementById('chart-importance').data[0].y")
    assert sorted(bars) == ["petal length (cm)", "petal width (cm)", "sepal length (cm)", "sepal width (cm)"], bars
    # A run from before columns were ranked: the owner asks, the worker ranks them, the page shows them.
    from webapp.experiments.models import Run

    run = Run.objects.get(pk=int(run_url.rstrip("/").rsplit("/", 1)[-1]))
    at_training = run.results.pop("importance")
    run.save(update_fields=["results"])
    page.reload()
    page.locator("[data-testid=rank-columns]").scroll_into_view_if_needed()
    owner.shot(page, "rank-columns")
    page.click("[data-testid=rank-columns]")
    page.wait_for_selector("#chart-importance .main-svg", timeout=60_000)
    assert Run.objects.get(pk=run.pk).results["importance"] == at_training
    # A run scored before calibration, curves and input profiles: a worker works them out on request.
    run = Run.objects.get(pk=run.pk)
    before = {key: run.results.pop(key) for key in ("calibration", "roc", "input_profile")}
    run.save(update_fields=["results"])
    page.reload()
    assert page.locator("#chart-calibration").count() == 0
    page.click("[data-testid=reanalyse]")
    page.wait_for_selector("#chart-calibration .main-svg", timeout=60_000)
    page.wait_for_selector("#chart-roc .main-svg")
    assert {key: Run.objects.get(pk=run.pk).results[key] for key in before} == before

    new_rows = tmp_path / "new-flowers.csv"
    with open(FIXTURES / "iris.csv") as source, open(new_rows, "w", newline="") as out:
        reader = csv.reader(source)
        header = next(reader)
        writer = csv.writer(out)
        writer.writerow(header[:-1])
        for i, row in enumerate(reader):
            if i % 15 == 0:
                writer.writerow(row[:-1])
    rows = _predict_and_download(owner, page, [new_rows], expected_rows=10, tmp_path=tmp_path)
    assert any(name in ",".join(rows[1]) for name in ("setosa", "versicolor", "virginica")), rows[:2]
    _predict_a_whole_data_set(owner, page, tmp_path, expected_rows=150, dataset_url=dataset_url)

    link = _share_and_open_logged_out(owner, page, base, ws, run_url, pages)
    _delete_from_the_dashboard(owner, page, base, ws, run_url, link)


def test_a_new_user_trains_a_cnn_on_an_image_zip_and_shares_it(live_server, stack, transactional_db, pages,
                                                               tmp_path):
    base = live_server.url
    owner = pages()
    page = owner.new()
    ws = _sign_up_and_create_workspace(owner, page, base, "grace", "Digits lab")

    _upload(owner, page, base, ws, FIXTURES / "digits8x8.zip", "Digits")
    page.wait_for_selector("#chart-balance .main-svg")
    thumbs = page.locator(".thumbs img")
    assert thumbs.count() >= 10
    page.wait_for_function("Array.from(document.querySelectorAll('.thumbs img')).slice(0, 5)"
                           ".every((img) => img.complete && img.naturalWidth > 0)")
    owner.shot(page, "dataset")

    run_url = _build_from_template_and_train(owner, page, base, ws, epochs=100_000, batch_size=32,
                                             expect_layer="Conv2D", augment="RandomTranslation")
    _watch_training(owner, page, cancel=True)
    loaded = "(sel) => Array.from(document.querySelectorAll(sel)).every((img) => img.complete && img.naturalWidth > 0)"
    assert page.locator("[data-testid=saliency] figure").count() >= 4  # what the model looks at, in test images
    assert page.evaluate(loaded, "[data-testid=saliency] img")

    images = []
    with zipfile.ZipFile(FIXTURES / "digits8x8.zip") as archive:
        for name in [n for n in archive.namelist() if n.endswith(".png")][:3]:
            target = tmp_path / name.replace("/", "_")
            target.write_bytes(archive.read(name))
            images.append(target)
    _predict_and_download(owner, page, images, expected_rows=3, tmp_path=tmp_path)
    assert page.locator("[data-testid=prediction-map]").count() == 3  # each image beside where the model looked
    assert page.evaluate(loaded, "[data-testid=predictions] img")
    _register_as_a_model(owner, page, base, ws, run_url, "digits <cnn>")
    _serve_by_name_and_watch_the_model_page(owner, page, base, ws, "digits <cnn>", images)

    _share_and_open_logged_out(owner, page, base, ws, run_url, pages)


def _serve_by_name_and_watch_the_model_page(pages, page, base: str, ws: str, name: str, images: list[Path]) -> None:
    """A script predicts by the model's name over HTTP with a token; the model's page counts what it served,
    the request it refused and why, and draws the rows per day."""
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import token_create
    from webapp.experiments.models import RegisteredModel

    model_id = RegisteredModel.objects.get(name=name).pk
    _, key = token_create(user=get_user_model().objects.get(username="grace"), name="e2e script")
    headers = {"Authorization": f"Bearer {key}"}
    files = [{"name": f.name, "mimeType": "image/png", "buffer": f.read_bytes()} for f in images]
    answered = page.request.post(f"{base}/api/v1/models/{model_id}/predict", headers=headers, multipart={"file": files[0]})
    assert answered.status == 200, answered.text()
    refused = page.request.post(f"{base}/api/v1/models/{model_id}/predict", headers=headers,
                                multipart={"file": {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}})
    assert refused.status == 400
    page.goto(f"{base}/w/{ws}/models/{model_id}/")
    assert "1 request answered · 1 row predicted · 1 refused" in page.text_content("[data-testid=serving-totals]")
    page.wait_for_selector("#chart-served .main-svg")
    assert "too few rows" in page.text_content("[data-testid=drift]")
    page.click("[data-testid=refusals] summary")
    pages.shot(page, "model-served")


def test_a_sweep_is_started_from_the_builder_cancelled_in_one_go_and_deleted(live_server, stack, transactional_db,
                                                                             pages):
    base = live_server.url
    owner = pages()
    page = owner.new()
    ws = _sign_up_and_create_workspace(owner, page, base, "lin", "Sweep lab")
    _upload(owner, page, base, ws, FIXTURES / "iris.csv", "Iris")

    _open_builder(page, base, ws)
    page.fill("#epochs", "100000")  # long enough to be cancelled on any machine
    page.wait_for_function("document.getElementById('spec-json').value.includes('\"epochs\": 100000')")
    page.locator("summary", has_text="Sweep instead").click()
    page.fill("[data-sweep=learning_rate]", "0.001..0.1")  # a range: drawn log-uniformly by a random search
    page.fill("[data-sweep=optimizer]", "adam, rmsprop")
    page.select_option("#sweep-method", "random")
    page.fill("#sweep-count", "3")
    assert not page.locator("#sweep-factor").is_visible()  # successive halving's own setting
    page.select_option("#sweep-stopping", "asha")
    page.fill("#sweep-grace", "5")
    page.fill("#sweep-factor", "2")
    page.click("#sweep")
    page.wait_for_url(re.compile(r"/sweeps/\d+/$"), timeout=30_000)
    sweep_url = page.url
    stopping = page.locator("[data-testid=sweep-stopping]").text_content()
    assert stopping.startswith("successive halving (ASHA): at epochs 5, 10, 20, 40, 80, 160, …, a run goes on ")
    assert "among the best 1 in 2 of the runs that reached that epoch, once at least 2 others have" in stopping
    assert "learning_rate from 0.001 to 0.1, log-uniform" in page.locator("main").text_content()
    rates = [float(cell) for cell in page.locator("[data-testid=sweep-runs] tbody td:nth-child(2)").all_text_contents()]
    assert len(rates) == 3 and all(0.001 <= rate <= 0.1 for rate in rates)
    names = page.locator("[data-testid=sweep-runs] tbody td:nth-child(3)").all_text_contents()
    assert set(names) <= {"adam", "rmsprop"} and len(names) == 3
    rows = page.locator("[data-testid=sweep-runs] tbody tr")
    assert rows.count() == 3
    page.wait_for_selector("[data-testid=sweep-runs] .badge.running", timeout=60_000)  # the page refreshes itself
    owner.shot(page, "sweep-running")
    assert page.locator("[data-testid=delete-sweep]").count() == 0  # not while runs are active

    questions = []
    page.on("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.click("[data-testid=cancel-sweep]")
    page.wait_for_selector("text=Cancelling 3 runs of the sweep")
    page.wait_for_function("document.querySelectorAll('[data-testid=sweep-runs] .badge.cancelled').length === 3",
                           timeout=60_000)  # the running one stops after its batch; the page refreshes
    owner.shot(page, "sweep-cancelled")
    measured = sum(1 for best in page.locator("[data-testid=sweep-runs] tbody td:last-child").all_text_contents()
                   if best.strip() != "—")
    if measured:  # the chart draws the runs that reported a metric, and says how many of all
        page.wait_for_selector("#sweep-chart .main-svg")
        assert f"({measured} of 3 runs)" in page.locator("#sweep-chart").text_content()
    else:
        assert "fills in as the runs report" in page.locator("#sweep-chart").text_content()
    page.click("[data-testid=delete-sweep]")
    page.wait_for_url(re.compile(r"/sweeps/$"))
    assert page.locator("text=and its 3 runs.").count() == 1
    assert [q.split("?")[0] for q in questions] == [
        "Cancel every run of this sweep that is still queued or running",
        "Delete this sweep and its 3 runs, with their checkpoints and share links"]
    owner.shot(page, "sweep-deleted")
    assert page.request.get(sweep_url).status == 404
    page.goto(f"{base}/w/{ws}/")
    assert "No runs yet" in page.locator("[data-testid=runs]").text_content()

    # A 3-fold cross-validation of a short model: one run per fold on the worker, then each score's mean ± spread.
    _open_builder(page, base, ws)
    page.fill("#epochs", "20")
    page.wait_for_function("document.getElementById('spec-json').value.includes('\"epochs\": 20')")
    page.locator("summary", has_text="Cross-validate instead").click()
    page.fill("#cv-folds", "3")
    page.click("[data-testid=cross-validate]")
    page.wait_for_url(re.compile(r"/sweeps/\d+/$"), timeout=30_000)
    assert page.locator("h1").text_content() == "3-fold cross-validation"
    page.wait_for_function("document.querySelector('[data-testid=cross-validation] tbody td')"
                           ".textContent.trim() === '3 / 3'", timeout=120_000)  # the page refreshes itself
    accuracy = page.locator("[data-testid=cross-validation] thead th").all_text_contents().index("Test accuracy")
    cell = page.locator("[data-testid=cross-validation] tbody td").nth(accuracy).text_content()
    mean, spread = (float(part) for part in cell.split(" ± "))
    assert 0 < mean <= 1 and 0 <= spread < 0.5, cell
    owner.shot(page, "cross-validation")
    # Its final model: the same settings trained on every row on the worker, the folds' scores its estimate.
    page.click("[data-testid=refit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    assert "final model" in page.locator("h1").text_content()
    page.wait_for_function("document.getElementById('run-status').textContent.trim() === 'Succeeded'",
                           timeout=120_000)
    page.reload()
    estimate = page.locator("[data-testid=cv-scores] tbody tr", has_text="accuracy").first.locator("td")
    assert [float(estimate.nth(i).text_content()) for i in (1, 2)] == [mean, spread]
    assert page.locator("[data-testid=test-metrics]").count() == 0  # no rows were left to test it on
    owner.shot(page, "final-model")


def test_a_new_user_swaps_the_series_template_for_a_conv1d_model_and_exports_it(live_server, stack,
                                                                                transactional_db, pages):
    """A time series: the suggested LSTM is replaced in the builder by Conv1D + GlobalAveragePooling1D from
    the palette, trained on the worker, and its ONNX export downloaded."""
    base = live_server.url
    owner = pages()
    page = owner.new()
    ws = _sign_up_and_create_workspace(owner, page, base, "mae", "Climate lab")
    _upload(owner, page, base, ws, FIXTURES / "co2_weekly.csv", "CO2", kind="series")
    owner.shot(page, "dataset")

    _open_builder(page, base, ws)
    layers = "JSON.parse(document.getElementById('spec-json').value).layers.map((l) => l.type).join(',')"
    assert page.evaluate(layers) == "LSTM,Dense"
    assert not page.locator("#class-weight").is_visible()  # a forecast has no classes to weigh
    page.click("[data-start=conv1d]")  # the series-only template: a 1-D CNN
    page.wait_for_function(f"{layers} === 'Conv1D,MaxPooling1D,Conv1D,Flatten,Dense'")
    page.click("[data-start=transformer]")  # the other series-only template
    page.wait_for_function(f"{layers} === 'Dense,PositionEmbedding,TransformerEncoder,Flatten,Dense'")
    page.wait_for_function("document.getElementById('optimizer-options').open")  # it clips: its options show
    assert page.text_content("#optimizer-options-summary") == "· global clipnorm 1"
    _wait_for_layer_shapes(page)
    assert page.locator("[data-shape-for=\"2\"]").text_content().startswith("→ (12, 32)")
    page.click("[data-start=template]")  # back to the LSTM
    page.wait_for_function(f"{layers} === 'LSTM,Dense'")
    # A Bidirectional wrapper from the palette lands after the LSTM, whose output has no steps left: the row says so.
    page.select_option("#add-type", "Bidirectional")
    page.click("#add-layer")
    page.wait_for_function("document.querySelector('[data-shape-for=\"1\"]').textContent.includes('expects an input of rank 2')")
    page.get_by_role("button", name="Remove layer 0").click()  # without the LSTM it reads the window itself
    page.select_option("#layer-0-layer-type", "GRU")
    page.check("#layer-0-layer-return_sequences")
    page.wait_for_function("(() => { const l = JSON.parse(document.getElementById('spec-json').value).layers[0];"
                           " return l.type === 'Bidirectional' && l.layer.type === 'GRU' && l.layer.return_sequences; })()")
    page.wait_for_function("document.querySelector('[data-shape-for=\"0\"]').textContent.startsWith('→ (12, 64)')")
    # ... and the Dense after it keeps the steps, which the target has not: its row says what it needs.
    page.wait_for_function("document.querySelector('[data-shape-for=\"1\"]').textContent.includes("
                           "'the model outputs (12, 1) but the target has 1 value per row: it needs (1)')")
    owner.shot(page, "builder-bidirectional")
    page.click("[data-testid=train]")  # refused in the page: nothing is queued that cannot train
    page.wait_for_function("document.getElementById('submit-error').textContent.startsWith("
                           "'Fix the layer marked in red first: layers[1]: the model outputs (12, 1)')")
    assert "/runs/new/" in page.url
    page.click("[data-start=template]")  # and back, to build the CNN by hand from the palette
    page.wait_for_function(f"{layers} === 'LSTM,Dense'")
    page.get_by_role("button", name="Remove layer 0").click()
    for palette in ("Conv1D", "GlobalAveragePooling1D"):  # each goes in before the output layer
        page.select_option("#add-type", palette)
        page.click("#add-layer")
    page.wait_for_function(f"{layers} === 'Conv1D,GlobalAveragePooling1D,Dense'")
    page.wait_for_function("document.getElementById('submit-error').textContent === ''")  # fixed: the refusal goes
    page.select_option("#layer-0-activation", "relu")
    page.select_option("#lr-monitor", "val_loss")  # halve the rate after 3 epochs without a better val_loss
    page.wait_for_function("(() => { const f = JSON.parse(document.getElementById('spec-json').value).fit;"
                           " return f.reduce_lr_on_plateau && f.reduce_lr_on_plateau.monitor === 'val_loss'"
                           " && f.reduce_lr_on_plateau.factor === 0.5 && f.reduce_lr_on_plateau.patience === 3"
                           " && f.reduce_lr_on_plateau.min_lr === 0.000005; })()")  # a thousandth of the rate
    # The optimizer's own options, folded under the training settings: clip the gradients, then move to SGD
    # with momentum, whose range the server checks as the field is typed.
    optimizer = "JSON.parse(document.getElementById('spec-json').value).compile.optimizer"
    assert not page.evaluate("document.getElementById('optimizer-options').open")  # the LSTM's: folded
    page.click("#optimizer-options summary")
    page.fill("#layer-optimizer-clipnorm", "1")
    page.wait_for_function(f"{optimizer}.clipnorm === 1")
    assert not page.locator("#layer-optimizer-momentum").count()  # Adam has no momentum
    page.select_option("#optimizer", "sgd")
    page.fill("#layer-optimizer-momentum", "5")
    page.wait_for_function("document.querySelector('[data-error-for=\"compile.optimizer.momentum\"]')"
                           ".textContent.includes('must be a number in [0, 1], got 5')")
    page.fill("#layer-optimizer-momentum", "0.9")
    page.wait_for_function(f"(() => {{ const o = {optimizer}; return o.type === 'sgd' && o.momentum === 0.9"
                           " && o.clipnorm === 1 && o.beta_1 === undefined; })()")
    assert page.text_content("#optimizer-options-summary") == "· clipnorm 1, momentum 0.9"
    page.fill("#epochs", "100000")
    page.fill("#run-name", "e2e Conv1D")
    page.wait_for_function("document.getElementById('spec-json').value.includes('\"activation\": \"relu\"')")
    _wait_for_layer_shapes(page)
    owner.shot(page, "builder")
    page.click("[data-testid=train]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"), timeout=30_000)
    _watch_training(owner, page, cancel=True, results="residuals")
    assert "Conv1D" in page.locator("[data-testid=spec]").text_content()
    assert '"momentum": 0.9' in page.locator("[data-testid=spec]").text_content()
    page.wait_for_selector("#chart-forecast .main-svg")  # the test weeks in time order, true and forecast
    assert page.evaluate("document.getElementById('chart-forecast').data[0].x[0]").startswith("19")
    rates = page.evaluate("document.getElementById('chart-lr').data[0].y")
    assert rates[0] == 0.005 and min(rates) < 0.005, rates[:20]  # the plateau cut the rate as it trained
    assert min(rates) >= 0.000005 * 0.999, min(rates)  # and never below its floor
    if max(rates) / min(rates) >= 10:  # cut ten times over: drawn on a log axis
        assert page.evaluate("document.getElementById('chart-lr').layout.yaxis.type") == "log"
    with page.expect_download() as info:
        page.get_by_role("link", name="model.onnx").click()
    target = owner.shots / info.value.suggested_filename
    info.value.save_as(str(target))
    assert target.stat().st_size > 1000 and target.read_bytes()[:2] == b"\x08\x08"  # ir_version field, 8
    # A year past the end of the data: the predict page forecasts it, each week fed back as the next input.
    page.click("[data-testid=predict-link]")
    page.fill("#steps", "52")
    page.locator("[data-testid=forecast-form] button", has_text="Forecast").first.click()
    page.wait_for_selector("#chart-ahead .main-svg")
    assert page.locator("[data-testid=forecast] tbody tr").count() == 52
    assert page.locator("[data-testid=forecast] tbody td").first.text_content().startswith("2002-01")
    owner.shot(page, "forecast-ahead")


def test_a_new_user_trains_a_text_classifier_from_a_column_of_reviews(live_server, stack, transactional_db, pages,
                                                                       tmp_path):
    """A table with a free-text column: the builder offers it as the model's input, suggests averaged word
    embeddings for it, the worker trains them, and new reviews are classified from their words."""
    import numpy as np

    from tests.webapp.experiments.test_text import review

    rng = np.random.default_rng(1)
    source = tmp_path / "reviews.csv"
    with open(source, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["review", "sentiment"])
        for i in range(400):
            good = bool(rng.random() < 0.5)
            writer.writerow([f"{review(rng, good)} (#{i})", "positive" if good else "negative"])
    base = live_server.url
    owner = pages()
    page = owner.new()
    ws = _sign_up_and_create_workspace(owner, page, base, "tex", "Review lab")
    _upload(owner, page, base, ws, source, "Reviews")

    _open_builder(page, base, ws)  # the table's only column besides its target is text: it is chosen as the input
    assert page.input_value("#dc-text") == "review"
    layers = "JSON.parse(document.getElementById('spec-json').value).layers.map((l) => l.type).join(',')"
    page.wait_for_function(f"{layers} === 'Embedding,GlobalAveragePooling1D,Dense,Dense'")
    page.click("[data-start=lstm]")  # the other start a text offers, and back to the suggested one
    page.wait_for_function(f"{layers} === 'Embedding,Bidirectional,Dense'")
    page.click("[data-start=template]")
    page.wait_for_function(f"{layers} === 'Embedding,GlobalAveragePooling1D,Dense,Dense'")
    _wait_for_layer_shapes(page)
    assert page.locator("[data-shape-for=\"0\"]").text_content().startswith("→ (128, 32)")
    page.fill("#epochs", "100000")
    page.wait_for_function("document.getElementById('spec-json').value.includes('\"epochs\": 100000')")
    owner.shot(page, "builder-text")
    page.click("[data-testid=train]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"), timeout=30_000)
    _watch_training(owner, page, cancel=True)
    threshold = _pick_a_decision_threshold(owner, page, 0.9)

    new_reviews = tmp_path / "new-reviews.csv"
    new_reviews.write_text('review\nA wonderful film with superb acting!\n"Awful, boring and dreadful."\n')
    rows = _predict_and_download(owner, page, [new_reviews], expected_rows=2, tmp_path=tmp_path)
    p_positive = [float(row[rows[0].index("p(positive)")]) for row in rows[1:]]
    assert p_positive[0] > 0.5 > p_positive[1], rows  # the model tells the two apart
    # The downloaded labels follow the run's decision threshold, not the more likely class.
    assert [row[1] for row in rows[1:]] == ["positive" if p >= threshold else "negative" for p in p_positive], rows


def _pick_a_decision_threshold(pages, page, threshold: float) -> float:
    """On a binary classifier's page: the ROC and precision-recall curves are drawn, dragging the threshold
    recounts the test split at once, and the threshold picked becomes the one predictions use."""
    from webapp.experiments import curves
    from webapp.experiments.models import Run

    page.wait_for_selector("[data-testid=curves] #chart-roc .main-svg", timeout=30_000)
    page.wait_for_selector("#chart-pr .main-svg")
    run = Run.objects.get(pk=int(re.search(r"/runs/(\d+)/", page.url).group(1)))
    at = curves.operating_point(run.results["roc"], threshold)
    page.locator("#threshold-slider").fill(str(threshold))
    page.wait_for_function(f"document.getElementById('threshold-value').textContent === '{threshold:.3f}'")
    assert page.text_content("[data-point=tp]") == str(at["tp"])
    assert page.text_content("[data-point=fp]") == str(at["fp"])
    assert page.input_value("#threshold-input") == f"{threshold:.3f}"
    marker = "document.getElementById('chart-roc').data[2].x[0]"
    assert page.evaluate(marker) == pytest.approx(at["fp"] / run.results["roc"]["negatives"])
    pages.shot(page, "decision-threshold")
    page.click("[data-testid=set-threshold]")
    page.wait_for_selector("[data-testid=decision-threshold]")
    assert f"from p(positive) ≥ {threshold:.3f}" in page.text_content("[data-testid=decision-threshold]")
    run.refresh_from_db()
    assert run.decision_threshold == threshold
    return threshold
