"""Drift of what a model makes of its inputs: its last hidden layer's output, held against its test rows'."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.webapp.experiments.test_images_and_series import digits, digits_from_zip, suggested_spec, trained_model  # noqa: F401
from webapp.experiments import datasource, execution, monitoring, registry, services, specs


def _basis(std=(2.0, 1.0)) -> dict:
    return {"layer": 1, "layer_type": "Dense", "size": 3, "rows": 100, "source": "test", "mean": [0.0, 0.0, 0.0],
            "components": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]][:len(std)], "std": list(std),
            "explained": [0.8, 0.2][:len(std)]}


def _served(coordinates) -> dict:
    coordinates = np.asarray(coordinates, dtype=np.float64)
    return {"count": len(coordinates), "sum": coordinates.sum(axis=0).tolist(),
            "sum_sq": np.square(coordinates).sum(axis=0).tolist()}


def test_each_direction_is_judged_by_its_mean_shift_and_its_spread_against_the_reference():
    rng = np.random.default_rng(0)
    like = rng.normal(size=(4000, 2)) * [2.0, 1.0]
    found = monitoring.feature_drift(_basis(), _served(like))
    assert found["verdict"] == "same" and [c["verdict"] for c in found["components"]] == ["same", "same"]
    assert all(abs(c["shift"]) < 0.1 and abs(c["spread"] - 1) < 0.1 for c in found["components"])
    assert "responds to what it is sent as to its test rows" in found["says"]

    # The second direction's mean moved 0.8 of its spread: drifted, and said so; the first stays.
    moved = like + [0.0, 0.8]
    found = monitoring.feature_drift(_basis(), _served(moved))
    assert found["verdict"] == "different"
    assert [c["verdict"] for c in found["components"]] == ["same", "different"]
    assert found["components"][1]["shift"] == pytest.approx(0.8, abs=0.05)
    assert "in 1 of its 2 main directions, most direction 2 (20% of its variance): its mean 0.8" in found["says"]

    # The first direction collapsed to a third of its spread (its mean where it was): drifted by its spread.
    narrow = like * [1 / 3, 1.0]
    found = monitoring.feature_drift(_basis(), _served(narrow))
    first = found["components"][0]
    assert first["verdict"] == "different" and first["spread"] == pytest.approx(1 / 3, abs=0.02)
    assert first["says"] == f"spread {first['spread']:.2f} times as wide"
    # A model's own limits: a spread limit of 4 lets it be; a mean shift limit of 1 lets the 0.8 be.
    loose = dict(monitoring.DEFAULT_LIMITS, spread=4.0, shift=1.0)
    assert monitoring.feature_drift(_basis(), _served(narrow), loose)["verdict"] == "same"
    assert monitoring.feature_drift(_basis(), _served(moved), loose)["verdict"] == "same"
    # Sums from another basis (a different width) are not judged against this one.
    assert monitoring.feature_drift(_basis(std=(2.0,)), _served(like)) is None


def test_requests_pool_their_sums_exactly():
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=(n, 3)) for n in (5, 40, 17)]
    pooled = monitoring._pooled_features([_served(p) for p in parts])
    whole = _served(np.concatenate(parts))
    assert pooled["count"] == whole["count"] == 62
    np.testing.assert_allclose(pooled["sum"], whole["sum"], rtol=1e-12)
    np.testing.assert_allclose(pooled["sum_sq"], whole["sum_sq"], rtol=1e-12)
    assert monitoring._pooled_features([]) == {"count": 0, "sum": [], "sum_sq": []}


def test_the_window_and_the_spread_are_limits_a_model_may_set():
    assert monitoring.check_limits({"days": 7, "spread": 3}) == {"days": 7, "spread": 3.0}
    with pytest.raises(ValueError, match=r"drift_limits.days: must be a whole number from 1 to 365, got 7.5"):
        monitoring.check_limits({"days": 7.5})
    with pytest.raises(ValueError, match=r"drift_limits.spread: must be a number from 1.05 to 100.0, got 1"):
        monitoring.check_limits({"spread": 1})
    assert monitoring.check_limits({"days": 30, "spread": 2.0}) == {}  # the defaults are not kept


def _zip_of(images) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, pixels in images:
            png = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(png, format="PNG")
            archive.writestr(path, png.getvalue())
    buffer.seek(0)
    buffer.name = "sent.zip"
    return buffer


@pytest.mark.django_db
def test_scrambled_images_of_the_same_brightness_and_contrast_drift_in_the_hidden_layer(client, people, digits):  # noqa: F811
    spec = suggested_spec(client, people, digits)
    spec["fit"]["epochs"] = 4
    run = services.run_create(workspace=people.workspace, user=people.owner, dataset_version=digits, spec=spec)
    assert execution.run_execute(run.pk) == "succeeded", run.reason
    run.refresh_from_db()
    basis = run.results["feature_basis"]
    model = trained_model(run)
    # The layer before the last Dense (its output through the Dropout that may follow it).
    last_dense = max(i for i, layer in enumerate(model.layers) if layer.params)
    assert basis["layer"] == model.feature_layer(max_size=monitoring.FEATURE_SIZE) < last_dense
    assert basis["source"] == "test" and basis["rows"] == run.results["test_rows"]
    directions = np.asarray(basis["components"])
    np.testing.assert_allclose(directions @ directions.T, np.eye(len(directions)), atol=1e-4)  # orthonormal
    assert list(basis["std"]) == sorted(basis["std"], reverse=True) and 0 < sum(basis["explained"]) <= 1 + 1e-6
    # The test rows' coordinates along those directions: centred, with the spreads recorded.
    prepared = datasource.prepare(run.dataset_version, run.data_config, loss=specs.loss_name(run.spec))
    _, hidden = model.predict_features(prepared.x_test, basis["layer"])
    coordinates = monitoring.project_features(basis, hidden)
    np.testing.assert_allclose(coordinates.mean(axis=0), 0, atol=1e-3 * max(basis["std"]))
    np.testing.assert_allclose(coordinates.std(axis=0), basis["std"], rtol=1e-3)

    version = registry.register(run=run, user=people.editor, name="digits")
    url = f"/api/v1/models/{version.model.pk}/predict"
    client.force_login(people.viewer)
    images = digits_from_zip()[::3]  # 300-odd digits as the data set has them
    assert client.post(url, {"file": _zip_of([(p, pixels) for p, pixels, _ in images])}).status_code == 200
    found = monitoring.report(version.model)["drift"]
    assert found["features"]["verdict"] == "same", found["features"]
    assert all(c["verdict"] == "same" for c in found["inputs"])
    first = {c["column"]: c["score"] for c in found["inputs"]}

    # The same images with their pixels scrambled (one shuffle for all): each keeps its brightness and contrast
    # exactly, so the input profile sees nothing; the hidden layer sees no digits.
    order = np.random.default_rng(0).permutation(64)
    scrambled = [(p, pixels.ravel()[order].reshape(8, 8)) for p, pixels, _ in images]
    for _ in range(3):  # enough of them to outweigh the first request
        assert client.post(url, {"file": _zip_of(scrambled)}).status_code == 200
    found = monitoring.report(version.model)["drift"]
    assert {c["column"]: pytest.approx(c["score"], abs=1e-6) for c in found["inputs"]} == first
    assert all(c["verdict"] == "same" for c in found["inputs"])
    hidden_found = found["features"]
    assert hidden_found["verdict"] == "different" and hidden_found["rows"] == 4 * len(images)
    assert "its last hidden layer (" in hidden_found["says"] and "responds differently" in hidden_found["says"]
    assert monitoring.overall(found) == "different"
    page = client.get(version.model.get_absolute_url()).content.decode()
    assert 'data-testid="feature-drift"' in page and "What it makes of them" in page
    assert f"Its {len(basis['std'])} main directions, against its test rows" in page
    # The alert names it (the model was checked after the first request; judged again once the interval is past).
    from django.utils import timezone

    from webapp.accounts.models import Notification
    from webapp.experiments.models import RegisteredModel

    later = timezone.now() + monitoring.DRIFT_CHECK_EVERY
    assert monitoring.check_drift(RegisteredModel.objects.get(pk=version.model.pk), now=later) == "different"

    alert = Notification.objects.filter(link=version.model.get_absolute_url(), level="error").latest("pk")
    assert "its last hidden layer" in alert.message and math.isfinite(hidden_found["components"][0]["shift"])
