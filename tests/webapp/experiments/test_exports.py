"""Downloads of a trained run: the ONNX model runs in onnxruntime and predicts what the run's model predicts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.webapp.experiments.conftest import FIXTURES, iris_spec, make_version, small_cnn_spec
from trainer import Sequential
from webapp.experiments import checkpoints, datasource, execution, services

# float32 through other kernels (ONNX Runtime's GEMM, convolution and LSTM): the sums run in
# another order, so outputs agree to about 1e-6; the tolerance leaves room for deeper models.
RTOL, ATOL = 1e-4, 1e-5

SMALL_CNN = small_cnn_spec(epochs=1)
SMALL_LSTM = {
    "input_shape": [12, 1],
    "layers": [{"type": "LSTM", "units": 8}, {"type": "Dense", "units": 1}],
    "compile": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.01}, "metrics": ["mae"]},
    "fit": {"epochs": 1, "batch_size": 64, "seed": 2},
}
CASES = {
    "table (MLP)": ("iris.csv", "table", {"target": "species"}, iris_spec(epochs=2)),
    "images (CNN)": ("digits8x8.zip", "auto", {}, SMALL_CNN),
    "series (LSTM)": ("co2_weekly.csv", "series", {}, SMALL_LSTM),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CASES))
def test_the_onnx_download_predicts_what_the_run_predicts(client, people, case):
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    filename, kind, data_config, spec = CASES[case]
    version = make_version(people.workspace, people.owner, filename, kind=kind,
                           target=data_config.get("target", ""))
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config=data_config)
    assert execution.run_execute(run.pk) == "succeeded"
    run.refresh_from_db()
    client.force_login(people.viewer)
    response = client.get(f"/api/v1/runs/{run.pk}/artifacts/onnx")
    assert response.status_code == 200
    session = onnxruntime.InferenceSession(b"".join(response.streaming_content),
                                           providers=["CPUExecutionProvider"])
    x = datasource.prepare(version, data_config).x_test.astype(np.float32)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    model = Sequential.from_spec(dict(run.spec, input_shape=run.preprocessing["input_shape"]))
    model.load_weights(str(checkpoints.weights_path(run)))
    expected = model.predict(x)
    assert got.shape == expected.shape
    print(f"{case}: max |onnxruntime - engine| = {np.abs(got - expected).max():.1e} over {x.shape[0]} rows")
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    page = client.get(f"/w/{people.workspace.slug}/runs/{run.pk}/download/onnx/")
    assert page.status_code == 200 and page["Content-Disposition"].endswith('model.onnx"')


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["affairs (regression table)", "iris (classes)", "co2 (series of the change)"])
def test_the_python_snippet_run_on_the_downloads_predicts_what_the_server_predicts(client, people, tmp_path, case):
    """The run page's "Use it from Python", run as written on its three downloads, gives the API's predictions."""
    import io
    import json
    import os

    import pandas as pd

    from webapp.experiments import exports

    filename, kind, config, spec = {
        "affairs (regression table)": ("fair_affairs.csv", "table", {"target": "affairs"},
                                       {"input_shape": [8], "layers": [{"type": "Dense", "units": 8, "activation": "relu"},
                                                                       {"type": "Dense", "units": 1}],
                                        "compile": {"loss": "mse", "optimizer": "adam"}, "fit": {"epochs": 1, "seed": 0}}),
        "iris (classes)": ("iris.csv", "table", {"target": "species"}, iris_spec(epochs=2)),
        "co2 (series of the change)": ("co2_weekly.csv", "series", {}, SMALL_LSTM),
    }[case]
    version = make_version(people.workspace, people.owner, filename, kind=kind)
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=version, spec=spec,
                              data_config=config)
    assert execution.run_execute(run.pk) == "succeeded", run.reason
    run.refresh_from_db()
    client.force_login(people.viewer)
    for what, name in (("spec", "spec.json"), ("weights", "weights.npz"), ("preprocessing", "preprocessing.json")):
        answer = client.get(f"/api/v1/runs/{run.pk}/artifacts/{what}")
        assert answer.status_code == 200, what
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        (tmp_path / f"run-{run.pk}-{name}").write_bytes(body)
    frame = pd.read_csv(FIXTURES / filename).tail(40).reset_index(drop=True)
    if run.preprocessing["kind"] == "series":
        frame["co2"] = frame["co2"].interpolate(limit_direction="both")
    served = client.post(f"/api/v1/runs/{run.pk}/predict", {"file": io.BytesIO(frame.to_csv(index=False).encode())},
                         format="multipart").json()
    scope = {"frame": frame}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(exports.python_snippet(run), scope)  # noqa: S102 - the snippet this project writes, run as a user would
    finally:
        os.chdir(cwd)
    if run.preprocessing["task"] == "classification":
        assert scope["labels"] == [row[1] for row in served["rows"]]
    else:
        np.testing.assert_allclose(np.asarray(scope["values"]).reshape(-1), [row[1] for row in served["rows"]],
                                   rtol=1e-5)
    page = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="download-preprocessing"' in page and json.loads((tmp_path / f"run-{run.pk}-preprocessing.json")
                                                                         .read_text())["kind"] == run.preprocessing["kind"]
