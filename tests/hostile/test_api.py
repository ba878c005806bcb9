"""Hostile requests to the REST API and the pages: wrong content types, missing fields, wrong types,
unknown ids, other workspaces' ids, wrong people. Each gets a 4xx (401/403/404/405/400), never a 500,
and the answer for another workspace's object is the same 404 as for a missing one.
"""

from __future__ import annotations

import pytest

from tests.hostile.conftest import assert_no_trace, assert_unchanged, iris_spec, snapshot

MISSING = 987_654


def _create(world, client=None, **overrides):
    body = {"dataset_version": world.version.pk, "spec": iris_spec(), "data_config": {"target": "species"},
            **overrides}
    return (client or world.api).post(f"/api/v1/workspaces/{world.ws}/runs", body, content_type="application/json")


BODIES = [
    ("text-plain", "dataset_version=1", "text/plain", 400),
    ("form-encoded", "dataset_version=1&spec=x", "application/x-www-form-urlencoded", 400),
    ("xml", "<run><spec/></run>", "application/xml", 400),
    ("malformed-json", '{"dataset_version": 1, "spec": {', "application/json", 400),
    ("empty-body", "", "application/json", 400),
    ("json-array", "[1, 2, 3]", "application/json", 400),
    ("json-string", '"run please"', "application/json", 400),
    ("missing-spec", '{"dataset_version": 1}', "application/json", 400),
    ("missing-version", '{"spec": {"layers": []}}', "application/json", 400),
    ("version-as-string", '{"dataset_version": "one", "spec": {}}', "application/json", 400),
    ("version-as-float", '{"dataset_version": 1.5, "spec": {}}', "application/json", 400),
    ("tags-not-a-list", '{"dataset_version": 1, "spec": {}, "tags": "a"}', "application/json", 400),
    ("invalid-utf8", b'{"dataset_version": 1, "spec": {"name": "\xff\xfe"}}', "application/json", 400),
]


@pytest.mark.parametrize("body,content_type,status", [c[1:] for c in BODIES], ids=[c[0] for c in BODIES])
def test_a_malformed_create_run_request_gets_a_4xx(world, body, content_type, status):
    from webapp.experiments.models import Run

    count = Run.objects.count()
    response = world.api.generic("POST", f"/api/v1/workspaces/{world.ws}/runs", body, content_type=content_type)
    assert_no_trace(response)
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert Run.objects.count() == count
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("overrides,field", [
    ({"dataset_version": MISSING}, "dataset_version"),
    ({"device": "quantum"}, "device"),
    ({"priority": 99}, "priority"),
    ({"priority": -1}, "priority"),
    ({"name": "n" * 5000}, "name"),
], ids=["unknown-version", "unknown-device", "priority-too-high", "priority-negative", "name-too-long"])
def test_bad_run_fields_get_a_400_naming_the_field(world, overrides, field):
    response = _create(world, **overrides)
    assert_no_trace(response)
    assert response.status_code == 400, response.content[:500]
    assert field in response.content.decode()
    assert_unchanged(world.before, snapshot())


def test_another_workspaces_data_set_version_cannot_be_trained_on(world):
    response = _create(world, dataset_version=world.other_version.pk)
    missing = _create(world, dataset_version=MISSING)
    assert response.status_code == missing.status_code == 400
    assert response.json()["detail"] == missing.json()["detail"], "the answer tells 'not yours' from 'missing'"
    assert_unchanged(world.before, snapshot())


def _other_ids(world):
    return {"run": world.other_run.pk, "dataset": world.other_version.dataset_id}


OBJECT_ENDPOINTS = [
    ("GET", "/api/v1/runs/{run}"),
    ("GET", "/api/v1/runs/{run}/metrics"),
    ("POST", "/api/v1/runs/{run}/cancel"),
    ("PATCH", "/api/v1/runs/{run}"),
    ("POST", "/api/v1/runs/{run}/continue"),
    ("POST", "/api/v1/runs/{run}/fork"),
    ("POST", "/api/v1/runs/{run}/predict"),
    ("GET", "/api/v1/runs/{run}/artifacts/spec"),
    ("GET", "/api/v1/runs/{run}/artifacts/weights"),
    ("GET", "/api/v1/datasets/{dataset}"),
    ("PATCH", "/api/v1/datasets/{dataset}"),
    ("DELETE", "/api/v1/datasets/{dataset}"),
    ("GET", "/w/{ws}/runs/{run}/"),
    ("GET", "/w/{ws}/runs/{run}/live.json"),
    ("POST", "/w/{ws}/runs/{run}/cancel/"),
    ("GET", "/w/{ws}/datasets/{dataset}/"),
    ("POST", "/w/{ws}/datasets/{dataset}/delete/"),
]
BODY = {"epochs": 1, "from_epoch": 1, "notes": "x", "target_column": "species"}


@pytest.mark.parametrize("method,template", OBJECT_ENDPOINTS, ids=[f"{m} {t}" for m, t in OBJECT_ENDPOINTS])
def test_another_workspaces_object_answers_404_like_a_missing_one(world, method, template):
    client = world.api if template.startswith("/api/") else world.page
    theirs = template.format(ws=world.ws, **_other_ids(world))
    missing = template.format(ws=world.ws, run=MISSING, dataset=MISSING)
    answers = [client.generic(method, url, __import__("json").dumps(BODY), content_type="application/json")
               for url in (theirs, missing)]
    for answer in answers:
        assert_no_trace(answer)
    assert [a.status_code for a in answers] == [404, 404]
    if template.startswith("/api/"):
        assert answers[0].json() == answers[1].json()
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("url", [
    "/w/{other}/", "/w/{other}/datasets/", "/w/{other}/runs/new/", "/w/{other}/members/",
    "/api/v1/workspaces/{other}/runs", "/api/v1/workspaces/{other}/datasets",
    "/w/no-such-workspace/", "/api/v1/workspaces/no-such-workspace/runs",
], ids=lambda u: u)
def test_another_workspace_answers_404(world, url):
    client = world.api if url.startswith("/api/") else world.page
    response = client.get(url.format(other=world.people.other_workspace.slug))
    assert_no_trace(response)
    assert response.status_code == 404


@pytest.mark.parametrize("method,url,body", [
    ("POST", "/api/v1/workspaces/{ws}/runs", "create"),
    ("POST", "/api/v1/runs/{run}/cancel", None),
    ("PATCH", "/api/v1/runs/{run}", {"notes": "viewer was here"}),
    ("PATCH", "/api/v1/datasets/{dataset}", {"target_column": "sepal_length"}),
    ("DELETE", "/api/v1/datasets/{dataset}", None),
], ids=["create-run", "cancel", "edit-run", "edit-dataset", "delete-dataset"])
def test_a_viewer_cannot_write(world, method, url, body):
    if body == "create":
        body = {"dataset_version": world.version.pk, "spec": iris_spec()}
    target = url.format(ws=world.ws, run=world.run.pk, dataset=world.dataset.pk)
    response = world.viewer_api.generic(method, target, __import__("json").dumps(body or {}),
                                        content_type="application/json")
    assert_no_trace(response)
    assert response.status_code == 403
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("header", [
    None, "Bearer cup_not-a-real-token", "Bearer ", "Basic b2xnYTpwdy1vbGdhLTEyMw==", "Bearer " + "x" * 10_000,
    "Bearer cup_\x00\x01",
], ids=["none", "unknown-token", "empty-token", "basic-auth", "huge-token", "control-characters"])
def test_the_api_without_valid_credentials_answers_401(world, header):
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1", **({"HTTP_AUTHORIZATION": header} if header is not None else {}))
    for url in (f"/api/v1/workspaces/{world.ws}/runs", f"/api/v1/runs/{world.run.pk}",
                f"/api/v1/datasets/{world.dataset.pk}"):
        response = client.get(url)
        assert_no_trace(response)
        assert response.status_code == 401, (url, response.status_code)


def test_a_revoked_token_answers_401(world):
    from django.test import Client

    from webapp.accounts import services as accounts
    from webapp.accounts.models import ApiToken

    token, key = accounts.token_create(user=world.people.owner, name="soon revoked")
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get(f"/api/v1/runs/{world.run.pk}").status_code == 200
    accounts.token_revoke(token=ApiToken.objects.get(pk=token.pk))
    assert client.get(f"/api/v1/runs/{world.run.pk}").status_code == 401


@pytest.mark.parametrize("method,url", [
    ("DELETE", "/api/v1/workspaces/{ws}/runs"), ("PUT", "/api/v1/runs/{run}"), ("GET", "/api/v1/runs/{run}/cancel"),
    ("GET", "/w/{ws}/runs/{run}/cancel/"),
], ids=lambda v: v if isinstance(v, str) and v.isupper() else None)
def test_the_wrong_method_answers_405(world, method, url):
    client = world.api if url.startswith("/api/") else world.page
    response = client.generic(method, url.format(ws=world.ws, run=world.run.pk))
    assert_no_trace(response)
    assert response.status_code == 405
    assert_unchanged(world.before, snapshot())


@pytest.mark.parametrize("query", [
    "since=-5", "since=abc", "since=99999999999999999999999", "limit=-1", "limit=10000000", "status=<script>",
    "dataset=abc", "tag=%00",
], ids=lambda q: q)
def test_odd_query_parameters_never_give_a_500(world, query):
    for url in (f"/api/v1/runs/{world.run.pk}/metrics?{query}", f"/api/v1/workspaces/{world.ws}/runs?{query}",
                f"/w/{world.ws}/runs/{world.run.pk}/live.json?{query}", f"/w/{world.ws}/?{query}"):
        client = world.api if url.startswith("/api/") else world.page
        response = client.get(url)
        assert_no_trace(response)
        assert response.status_code in (200, 400, 422), (url, response.status_code)


@pytest.mark.parametrize("data_config", ["{bad json", "[1,2]", '{"target": 5}', "%00", "9" * 5000],
                         ids=["malformed", "a-list", "target-a-number", "nul", "huge-number"])
def test_the_builders_template_endpoint_answers_odd_configs(world, data_config):
    from urllib.parse import quote

    response = world.page.get(f"/w/{world.ws}/runs/template.json?version={world.version.pk}"
                              f"&data_config={quote(data_config)}")
    assert_no_trace(response)
    assert response.status_code in (200, 400)


@pytest.mark.parametrize("body,content_type", [
    ('{"rows": "not a list"}', "application/json"),
    ('{"rows": []}', "application/json"),
    ('{"rows": [1, 2]}', "application/json"),
    ("not json", "application/json"),
    ('{"rows": [{"sepal_length": "<script>"}]}', "application/json"),
], ids=["rows-not-a-list", "no-rows", "rows-not-objects", "not-json", "script-in-a-cell"])
def test_predict_on_garbage_gets_a_4xx(world, body, content_type):
    response = world.api.generic("POST", f"/api/v1/runs/{world.run.pk}/predict", body, content_type=content_type)
    assert_no_trace(response)
    assert 400 <= response.status_code < 500, response.content[:300]
