"""Every URL of the site, tried by each of the three-person fixture's people (and more).

This is a table: one ``Rule`` per URL name and method, with the status each person gets.
``test_every_url_pattern_has_an_access_rule`` walks ``django.urls.get_resolver()`` and fails
when a URL pattern has no rule here, so a new page or API endpoint cannot ship unchecked.

How to add a rule (one line):

    Rule("run-detail", "GET", "302 404 200 200 200"),
    Rule("run-cancel", "POST", "302 404 403 302 302", kwargs={"pk": make_run}),
    Rule("api:cancel_run", "POST", "401 404 403 200 200"),

- ``expect`` lists the statuses for: anonymous, outsider, viewer, editor, owner. Pages send the
  anonymous visitor to the log-in page (302, checked); the API answers 401. Outsiders get 404 —
  the same as for objects that do not exist — and members without the role 403.
- URL kwargs are filled by ``FACTORIES`` (kwarg name → ``fn(people) -> value``), e.g.
  ``ws`` → the "Lab" workspace's slug. Add a factory for your kwarg (``run_id``, ``dataset_id``)
  or pass ``kwargs={"pk": make_thing}`` in the rule when a name like ``pk`` means different things.
- ``data`` is the body of a POST/PATCH (a dict, or ``fn(people) -> dict``); the API gets it as JSON.
- ``around`` is ``fn(people) -> context manager`` for set-up that must be undone (a registry entry).
- Pages everyone may open without an account go in ``PUBLIC``.

Each (rule, person) runs on a fresh database, so a write by one person never changes the next.
API calls are made with the person's API token (``Authorization: Bearer``), pages with a session.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from webapp.accounts import sharing
from webapp.accounts.models import ApiToken, Invitation, Membership, Notification, ShareLink, Webhook

PERSONS = ("anonymous", "outsider", "viewer", "editor", "owner")

# Reachable by anyone, account or not; their own tests cover them.
PUBLIC = {
    "login", "logout", "signup", "password-reset", "password-reset-done", "password-reset-confirm",
    "password-reset-complete", "invitation", "share", "share-data",
    "api:get_health", "api:openapi-json", "api:openapi-view", "api:api-root",
}
IGNORED_NAMESPACES = {"admin"}  # Django's admin checks is_staff itself


# Factories: URL kwarg → fn(people) -> value ---------------------------------------------

def viewer_membership(p):
    return Membership.objects.get(workspace=p.workspace, user=p.viewer).pk


def owners_token(p):
    return ApiToken.issue(user=p.owner, name="matrix")[0].pk


def viewers_notification(p):
    return Notification.objects.create(user=p.viewer, message="hello").pk


def invitation(p):
    return Invitation.objects.create(workspace=p.workspace, created_by=p.owner, role="viewer",
                                     expires_at="2999-01-01T00:00:00Z").pk


def owners_share_link(p):
    return ShareLink.objects.create(workspace=p.workspace, created_by=p.owner, target_type="run", target_id="1").pk


def webhook(p):
    return Webhook.objects.create(workspace=p.workspace, url="https://example.org/hook").pk


def _matrix_version(p):
    from webapp.datasets.models import Dataset, DatasetVersion

    dataset = Dataset.objects.create(workspace=p.workspace, name="matrix data", kind="table", target_column="y")
    return DatasetVersion.objects.create(dataset=dataset, number=1, status="ready", content_hash="0" * 64)


MATRIX_SPEC = {"input_shape": [2], "layers": [{"type": "Dense", "units": 1}],
               "compile": {"loss": "mse", "optimizer": "adam"}, "fit": {"epochs": 2}}


def make_run(p):
    from webapp.experiments.models import Run

    return Run.objects.create(workspace=p.workspace, dataset_version=_matrix_version(p), created_by=p.owner,
                              spec=MATRIX_SPEC, status="queued").pk


def make_finished_run(p):
    """The owner's run, finished: deleting it is refused to the editor, who did not start it."""
    from webapp.experiments.models import Run

    pk = make_run(p)
    Run.objects.filter(pk=pk).update(status="succeeded")
    return pk


def make_prediction_job(p):
    """A finished prediction job of the owner's run, its CSV written (its run's pk kept as p.job_run)."""
    from webapp.experiments import batch
    from webapp.experiments.models import PredictionJob

    run = make_finished_run(p)
    job = PredictionJob.objects.create(workspace=p.workspace, run_id=run, dataset_version=_matrix_version(p),
                                       created_by=p.owner, status="succeeded", rows=1)
    batch.output_path(job).parent.mkdir(parents=True, exist_ok=True)
    batch.output_path(job).write_text("row,prediction\n1,0.5\n")
    p.job_run = run
    return job.pk


def make_sweep(p):
    from webapp.experiments.models import Sweep

    return Sweep.objects.create(workspace=p.workspace, dataset_version=_matrix_version(p), created_by=p.owner,
                                name="matrix sweep", space={"learning_rate": [0.1]}).pk


def make_model(p):
    """The owner's model, its one version a finished run (in production)."""
    from webapp.experiments.models import ModelVersion, RegisteredModel, Run

    model = RegisteredModel.objects.create(workspace=p.workspace, name="matrix model", created_by=p.owner)
    version = ModelVersion.objects.create(model=model, number=1, run=Run.objects.get(pk=make_finished_run(p)),
                                          created_by=p.owner)
    RegisteredModel.objects.filter(pk=model.pk).update(production=version)
    return model.pk


def make_dataset(p):
    """A real, ingested table: pages read its schema, statistics and preview files."""
    import tempfile

    from webapp.datasets.services import dataset_create_from_file, ingest_version

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as upload:
        upload.write("x,y\n1,a\n2,b\n3,a\n4,b\n")
    try:
        version = dataset_create_from_file(workspace=p.workspace, user=p.owner, name="matrix table", description="",
                                           uploaded_file_path=upload.name, original_filename="m.csv")
    finally:
        Path(upload.name).unlink(missing_ok=True)  # stored by now under a generated name, or refused
    ingest_version(version.pk)
    return version.dataset.pk


def make_dataset_version(p):
    from webapp.datasets.models import DatasetVersion

    return DatasetVersion.objects.get(dataset_id=make_dataset(p)).pk


def run_body(p):
    return {"dataset_version": _matrix_version(p).pk, "spec": MATRIX_SPEC}


def sweep_body(p):
    return {**run_body(p), "space": {"learning_rate": [0.01, 0.1]}}


FACTORIES: dict[str, Callable[[Any], Any]] = {
    "ws": lambda p: p.workspace.slug,
    "member_id": viewer_membership,
    "run_id": make_run,
    "model_id": make_model,
    "what": lambda p: "spec",
    "dataset_id": make_dataset,
    "number": lambda p: 1,
    "index": lambda p: 0,
}


# Helpers for rules ------------------------------------------------------------------------

def newbie(p):
    get_user_model().objects.create_user("newbie", password="pw-newbie-1234")
    return {"username": "newbie", "role": "viewer"}


def shareable_comparison(p):
    return sharing.override("comparison", resolver=lambda ws, tid: "a board" if ws == p.workspace else None,
                            renderer=lambda request, obj: HttpResponse(obj))


@dataclass(frozen=True)
class Rule:
    name: str
    method: str
    expect: str  # statuses for: anonymous outsider viewer editor owner
    data: dict | Callable | None = None
    kwargs: dict[str, Callable] = field(default_factory=dict)
    around: Callable | None = None

    def status_for(self, person: str) -> int:
        return int(self.expect.split()[PERSONS.index(person)])


RULES = [
    # accounts: the user's own pages
    Rule("home", "GET", "302 302 302 302 302"),
    Rule("workspace-create", "GET", "302 200 200 200 200"),
    Rule("workspace-create", "POST", "302 302 302 302 302", data={"name": "New team"}),
    Rule("account", "GET", "302 200 200 200 200"),
    Rule("account-token-create", "POST", "302 200 200 200 200", data={"name": "laptop"}),
    Rule("account-token-revoke", "POST", "302 404 404 404 302", kwargs={"pk": owners_token}),
    Rule("password-change", "GET", "302 200 200 200 200"),
    Rule("password-change-done", "GET", "302 200 200 200 200"),
    Rule("password-reset-links", "GET", "302 403 403 403 403"),
    Rule("password-reset-links", "POST", "302 403 403 403 403", data={"username": "vera"}),
    Rule("account-users", "GET", "302 200 403 403 200"),  # the outsider owns a workspace of their own
    Rule("notifications", "GET", "302 200 200 200 200"),
    Rule("notifications-read-all", "POST", "302 302 302 302 302"),
    Rule("notification-read", "POST", "302 404 302 404 404", kwargs={"pk": viewers_notification}),
    # accounts: the workspace's team
    Rule("workspace-dashboard", "GET", "302 404 200 200 200"),
    Rule("workspace-members", "GET", "302 404 200 200 200"),
    Rule("workspace-member-add", "POST", "302 404 403 403 302", data=newbie),
    Rule("workspace-member-role", "POST", "302 404 403 403 302", data={"role": "editor"}),
    Rule("workspace-member-remove", "POST", "302 404 403 403 302"),
    Rule("workspace-leave", "POST", "302 404 302 302 302"),  # the last owner is refused with a message
    Rule("workspace-invitation-create", "POST", "302 404 403 403 302", data={"role": "viewer", "days": "7"}),
    Rule("workspace-invitation-revoke", "POST", "302 404 403 403 302", kwargs={"pk": invitation}),
    Rule("workspace-share-links", "GET", "302 404 403 200 200"),
    Rule("workspace-share-links", "POST", "302 404 403 302 302", around=shareable_comparison,
         data={"target_type": "comparison", "target_id": "7"}),
    Rule("workspace-share-link-revoke", "POST", "302 404 403 403 302", kwargs={"pk": owners_share_link}),
    Rule("workspace-activity", "GET", "302 404 403 403 200"),
    Rule("workspace-webhooks", "GET", "302 404 403 403 200"),
    Rule("workspace-webhooks", "POST", "302 404 403 403 302", data={"url": "https://example.org/hook"}),
    Rule("workspace-webhook-delete", "POST", "302 404 403 403 302", kwargs={"pk": webhook}),
    Rule("workspace-webhook-test", "POST", "302 404 403 403 302", kwargs={"pk": webhook}),
    # accounts API
    Rule("api:list_workspaces", "GET", "401 200 200 200 200"),
    Rule("api:list_members", "GET", "401 404 200 200 200"),
    Rule("api:add_member", "POST", "401 404 403 403 201", data=newbie),
    Rule("api:change_member_role", "PATCH", "401 404 403 403 200", data={"role": "editor"}),
    Rule("api:remove_member", "DELETE", "401 404 403 403 204"),
    Rule("api:list_share_links", "GET", "401 404 403 200 200"),
    Rule("api:create_share_link", "POST", "401 404 403 201 201", around=shareable_comparison,
         data={"target_type": "comparison", "target_id": "7"}),
    Rule("api:revoke_share_link", "DELETE", "401 404 403 403 200", kwargs={"link_id": owners_share_link}),
    Rule("api:list_tokens", "GET", "401 200 200 200 200"),
    Rule("api:revoke_token", "DELETE", "401 404 404 404 200", kwargs={"token_id": owners_token}),
    # experiments: pages
    Rule("run-new", "GET", "302 404 403 200 200"),
    Rule("run-template", "GET", "302 404 404 404 404"),  # no ready data set version in the workspace
    Rule("run-detail", "GET", "302 404 200 200 200", kwargs={"pk": make_run}),
    Rule("run-live", "GET", "302 404 200 200 200", kwargs={"pk": make_run}),
    Rule("run-cancel", "POST", "302 404 403 302 302", kwargs={"pk": make_run}),
    Rule("run-delete", "POST", "302 404 403 403 302", kwargs={"pk": make_finished_run}),
    Rule("runs-delete", "POST", "302 404 403 302 302", data=lambda p: {"runs": [make_finished_run(p)]}),
    Rule("runs-cancel", "POST", "302 404 403 302 302", data=lambda p: {"runs": [make_run(p)]}),
    Rule("run-edit", "POST", "302 404 403 302 302", kwargs={"pk": make_run}, data={"starred": "1"}),
    Rule("run-continue", "POST", "302 404 403 302 302", kwargs={"pk": make_run}, data={"epochs": "3"}),
    Rule("run-fork", "POST", "302 404 403 302 302", kwargs={"pk": make_run}, data={"from_epoch": "1"}),
    Rule("run-rank-columns", "POST", "302 404 403 302 302", kwargs={"pk": make_run}),
    Rule("run-threshold", "POST", "302 404 403 302 302", kwargs={"pk": make_run}, data={"threshold": "0.3"}),
    Rule("run-reanalyse", "POST", "302 404 403 302 302", kwargs={"pk": make_run}),
    Rule("run-predict-dataset", "POST", "302 404 403 302 302", kwargs={"pk": make_run}),
    Rule("prediction-job-delete", "POST", "302 404 403 403 302",  # the owner's job: its starter or an owner
         kwargs={"pk": lambda p: setattr(p, "job", make_prediction_job(p)) or p.job_run, "job": lambda p: p.job}),
    Rule("prediction-job-download", "GET", "302 404 200 200 200",
         kwargs={"pk": lambda p: setattr(p, "job", make_prediction_job(p)) or p.job_run, "job": lambda p: p.job}),
    Rule("run-priority", "POST", "302 404 403 302 302", kwargs={"pk": make_run}, data={"priority": "2"}),
    Rule("run-predict", "GET", "302 404 200 200 200", kwargs={"pk": make_run}),
    Rule("run-download", "GET", "302 404 200 200 200", kwargs={"pk": make_run}),
    Rule("run-compare", "GET", "302 404 200 200 200"),
    Rule("run-queue", "GET", "302 404 200 200 200"),
    Rule("sweep-list", "GET", "302 404 200 200 200"),
    Rule("sweep-detail", "GET", "302 404 200 200 200", kwargs={"pk": make_sweep}),
    Rule("sweep-cancel", "POST", "302 404 403 302 302", kwargs={"pk": make_sweep}),
    Rule("sweep-extend", "POST", "302 404 403 302 302", kwargs={"pk": make_sweep}, data={"count": 1}),
    Rule("version-predict", "GET", "302 404 200 200 200", kwargs={"version": make_dataset_version}),
    Rule("sweep-refit", "POST", "302 404 403 302 302", kwargs={"pk": make_sweep}, data={"params": "{}"}),
    Rule("sweep-delete", "POST", "302 404 403 403 302", kwargs={"pk": make_sweep}),  # the owner's sweep
    # experiments API
    Rule("api:create_run", "POST", "401 404 403 201 201", data=run_body),
    Rule("api:list_runs", "GET", "401 404 200 200 200"),
    Rule("api:get_run", "GET", "401 404 200 200 200"),
    Rule("api:get_metrics", "GET", "401 404 200 200 200"),
    Rule("api:cancel_run", "POST", "401 404 403 200 200"),
    Rule("api:rank_run_columns", "POST", "401 404 403 400 400"),  # the run has not trained
    Rule("api:reanalyse_run", "POST", "401 404 403 400 400"),  # the run has not trained
    Rule("api:set_run_threshold", "POST", "401 404 403 400 400", data={"threshold": 0.3}),  # not a tested classifier
    Rule("api:create_prediction_job", "POST", "401 404 403 400 400"),  # the run has not trained
    Rule("api:get_prediction_job", "GET", "401 404 200 200 200", kwargs={"job_id": make_prediction_job}),
    Rule("api:download_prediction_job", "GET", "401 404 200 200 200", kwargs={"job_id": make_prediction_job}),
    Rule("api:delete_prediction_job", "DELETE", "401 404 403 403 204", kwargs={"job_id": make_prediction_job}),
    Rule("api:delete_run", "DELETE", "401 404 403 403 204", kwargs={"run_id": make_finished_run}),
    Rule("api:update_run", "PATCH", "401 404 403 200 200", data={"starred": True, "notes": "good"}),
    Rule("api:continue_run", "POST", "401 404 403 400 400", data={"epochs": 3}),  # no checkpoint yet
    Rule("api:fork_run", "POST", "401 404 403 400 400", data={"from_epoch": 1}),
    Rule("api:predict", "POST", "401 404 400 400 400"),  # nothing to predict on, and no weights
    Rule("api:forecast", "POST", "401 404 400 400 400", data={"steps": 3}),  # a table run: no series to go past
    Rule("api:artifact_spec", "GET", "401 404 200 200 200"),
    Rule("api:artifact_weights", "GET", "401 404 404 404 404"),  # not trained yet
    Rule("api:artifact_onnx", "GET", "401 404 404 404 404"),
    Rule("api:artifact_preprocessing", "GET", "401 404 404 404 404"),  # its data not prepared yet
    Rule("api:spec_summary", "POST", "401 404 200 200 200", data={"spec": MATRIX_SPEC}),
    Rule("run-register", "POST", "302 404 403 302 302", kwargs={"pk": make_finished_run}, data={"model": "new"}),
    Rule("model-list", "GET", "302 404 200 200 200"),
    Rule("model-detail", "GET", "302 404 200 200 200", kwargs={"pk": make_model}),
    Rule("model-production", "POST", "302 404 403 302 302", kwargs={"pk": make_model}, data={"version": 1}),
    Rule("model-describe", "POST", "302 404 403 302 302", kwargs={"pk": make_model}, data={"description": "churn"}),
    Rule("model-drift-limits", "POST", "302 404 403 302 302", kwargs={"pk": make_model}, data={"psi": "0.3"}),
    Rule("api:update_model", "PATCH", "401 404 403 200 200", data={"description": "churn"}),
    # The editor did not register the version: refused with a message on the model's page.
    Rule("model-version-remove", "POST", "302 404 403 302 302", kwargs={"pk": make_model}),
    Rule("model-delete", "POST", "302 404 403 403 302", kwargs={"pk": make_model}),  # the owner's model
    Rule("api:register_run", "POST", "401 404 403 400 400", kwargs={"run_id": make_finished_run},
         data={"model": "new"}),  # the matrix run has no weights to register
    Rule("api:list_models", "GET", "401 404 200 200 200"),
    Rule("api:get_model", "GET", "401 404 200 200 200"),
    Rule("api:model_predictions", "GET", "401 404 200 200 200"),
    Rule("api:create_model_prediction_job", "POST", "401 404 403 400 400"),  # its run has no weights
    Rule("api:set_production", "POST", "401 404 403 200 200", data={"version": 1}),
    Rule("api:predict_with_model", "POST", "401 404 400 400 400"),  # nothing to predict on, and no weights
    Rule("api:forecast_with_model", "POST", "401 404 400 400 400", data={"steps": 3}),  # a table model
    Rule("api:model_artifact", "GET", "401 404 200 200 200"),
    Rule("api:delete_model", "DELETE", "401 404 403 403 204"),
    Rule("api:remove_version", "DELETE", "401 404 403 403 204"),
    Rule("api:create_sweep", "POST", "401 404 403 201 201", data=sweep_body),
    Rule("api:list_sweeps", "GET", "401 404 200 200 200"),
    Rule("api:get_sweep", "GET", "401 404 200 200 200", kwargs={"sweep_id": make_sweep}),
    Rule("api:extend_sweep", "POST", "401 404 403 400 400", kwargs={"sweep_id": make_sweep},
         data={"count": 1}),  # the matrix sweep is a grid: it has every point already
    Rule("api:refit_sweep", "POST", "401 404 403 400 400", kwargs={"sweep_id": make_sweep},
         data={"params": {}}),  # the matrix sweep is no cross-validation: nothing to refit
    Rule("api:cancel_sweep", "POST", "401 404 403 200 200", kwargs={"sweep_id": make_sweep}),
    Rule("api:delete_sweep", "DELETE", "401 404 403 403 204", kwargs={"sweep_id": make_sweep}),
    # datasets: pages
    Rule("dataset-list", "GET", "302 404 200 200 200"),
    Rule("dataset-upload", "GET", "302 404 403 200 200"),
    Rule("dataset-upload", "POST", "302 404 403 400 400", data={"name": "no file"}),
    Rule("dataset-load-sample", "POST", "302 404 403 302 302", data={"sample": "iris"}),
    Rule("dataset-detail", "GET", "302 404 200 200 200", kwargs={"pk": make_dataset}),
    Rule("dataset-new-version", "GET", "302 404 403 200 200", kwargs={"pk": make_dataset}),
    Rule("dataset-columns", "POST", "302 404 403 302 302", kwargs={"pk": make_dataset}, data={"target_column": "y"}),
    Rule("dataset-delete", "POST", "302 404 403 302 302", kwargs={"pk": make_dataset}),
    Rule("dataset-version-status", "GET", "302 404 200 200 200", kwargs={"pk": make_dataset}),
    Rule("dataset-version-image", "GET", "302 404 404 404 404", kwargs={"pk": make_dataset}),  # a table has no images
    # datasets API
    Rule("api:create_dataset", "POST", "401 404 403 400 400", data={"name": "no file"}),
    Rule("api:list_datasets", "GET", "401 404 200 200 200"),
    Rule("api:get_dataset", "GET", "401 404 200 200 200"),
    Rule("api:dataset_changes", "GET", "401 404 400 400 400"),  # one version: nothing to compare it with
    Rule("api:update_dataset", "PATCH", "401 404 403 200 200", data={"target_column": "y"}),
    Rule("api:delete_dataset", "DELETE", "401 404 403 204 204"),
]


# The walk ---------------------------------------------------------------------------------

def url_patterns(patterns=None, namespace="", prefix=""):
    """``(name, namespace, route, pattern)`` for every URL pattern; names carry their namespaces."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            inner = ":".join(filter(None, [namespace, entry.namespace]))
            yield from url_patterns(entry.url_patterns, inner, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or "")
            yield name, namespace, prefix + str(entry.pattern), entry


def _checked_names():
    for name, namespace, route, _ in url_patterns():
        if namespace.split(":")[0] in IGNORED_NAMESPACES:
            continue
        yield name, route


def test_every_url_pattern_has_an_access_rule():
    ruled = {rule.name for rule in RULES}
    unnamed = sorted(route for name, route in _checked_names() if not name)
    missing = sorted({name for name, _ in _checked_names() if name and name not in ruled and name not in PUBLIC})
    assert not unnamed, f"Give these URL patterns a name so the access matrix can check them: {unnamed}"
    assert not missing, (
        "These URL patterns have no access rule. Add a line per method to RULES in "
        f"tests/webapp/test_access_matrix.py (or to PUBLIC if anyone may open them): {missing}"
    )


def test_every_rule_lists_five_statuses_and_a_known_method():
    for rule in RULES:
        assert len(rule.expect.split()) == len(PERSONS), rule
        assert rule.method in {"GET", "POST", "PUT", "PATCH", "DELETE"}, rule


def _route_kwargs(name: str) -> list[str]:
    for pattern_name, _, _, pattern in url_patterns():
        if pattern_name == name:
            return list(pattern.pattern.converters) or _regex_groups(pattern)
    return []


def _regex_groups(pattern) -> list[str]:
    return list(pattern.pattern.regex.groupindex)


def _present_names() -> set[str]:
    return {name for name, _, _, _ in url_patterns()}


@pytest.mark.parametrize("rule,person", [(r, p) for r in RULES for p in PERSONS],
                         ids=[f"{r.name} {r.method} as {p}" for r in RULES for p in PERSONS])
def test_each_person_gets_the_status_the_table_says(client, people, rule, person):
    if rule.name not in _present_names():
        pytest.skip(f"{rule.name} is not mounted in this tree")
    kwargs = {}
    for key in _route_kwargs(rule.name):
        factory = rule.kwargs.get(key) or FACTORIES.get(key)
        assert factory is not None, f"No factory for the URL kwarg {key!r} of {rule.name}: add one to FACTORIES or kwargs="
        kwargs[key] = factory(people)
    url = reverse(rule.name, kwargs=kwargs)
    data = rule.data(people) if callable(rule.data) else rule.data
    headers = {}
    is_api = rule.name.startswith("api:")
    if person != "anonymous":
        user = getattr(people, person)
        if is_api:
            headers["HTTP_AUTHORIZATION"] = "Bearer " + ApiToken.issue(user=user, name="matrix-caller")[1]
        else:
            client.force_login(user)
    call = getattr(client, rule.method.lower())
    with rule.around(people) if rule.around else nullcontext():
        if rule.method == "GET":
            response = call(url, **headers)
        elif is_api:
            response = call(url, data or {}, content_type="application/json", **headers)
        else:
            response = call(url, data or {}, **headers)
    expected = rule.status_for(person)
    assert response.status_code == expected, f"{rule.method} {url} as {person}: {response.status_code}, not {expected}"
    if person == "anonymous" and expected == 302:
        assert response.headers["Location"].startswith(reverse("login")), "anonymous visitors go to the log-in page"
