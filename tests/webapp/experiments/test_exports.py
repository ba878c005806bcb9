"""Downloads of a trained run: the ONNX model runs in onnxruntime and predicts what the run's model predicts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.webapp.experiments.conftest import iris_spec, make_version, small_cnn_spec
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
