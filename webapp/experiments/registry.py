"""The model registry: a workspace's named models, each a list of numbered versions (runs that
finished with their weights) with one of them in production, so that predictions and downloads can ask for a model by
its name and get whichever run the team has put there.

The first version of a model goes into production at once; a later one when someone with write
access says so. A registered run cannot be deleted (``services.run_delete`` says which model holds
it) until its version is removed; deleting a model (its owner, or the editor who created it)
leaves its runs as they were.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.dispatch import receiver

from webapp.accounts import activity, webhooks
from webapp.datasets.services import version_ready
from webapp.experiments import checkpoints
from webapp.experiments.models import ModelVersion, RegisteredModel, Run, RunStatus
from webapp.experiments.services import InvalidInput, _check_text, may_delete

MAX_NAME = 100
MAX_NOTE = 2000
KEEPS_WEIGHTS = (RunStatus.SUCCEEDED, RunStatus.CANCELLED)  # a cancelled run keeps what it had learned


def has_final_weights(run: Run) -> bool:
    return run.status in KEEPS_WEIGHTS and checkpoints.weights_path(run).exists()


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("model: a model needs a name", "model")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise InvalidInput(f"model: a name of at most {MAX_NAME} characters, got {len(name)}", "model")
    _check_text(name, "model")
    return name


def register(*, run: Run, user, name, note: str = "") -> ModelVersion:
    """Add ``run`` as the next version of the workspace's model ``name`` (created if new, its name
    compared without regard to case); the first version is put in production."""
    name = _check_name(name)
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise InvalidInput(f"note: text of at most {MAX_NOTE} characters", "note")
    _check_text(note, "note")
    if not has_final_weights(run):
        state = run.status if run.status not in KEEPS_WEIGHTS else f"{run.status} without final weights"
        raise InvalidInput(f"run: only a run that finished with its weights (succeeded, or cancelled after "
                           f"training) can be a model version; {run.display_name} is {state}", "run")
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.select_for_update().filter(workspace=run.workspace,
                                                                       name__iexact=name).first()
            if model is None:
                model = RegisteredModel.objects.create(workspace=run.workspace, name=name, created_by=user)
            held = model.versions.filter(run=run).first()
            if held is not None:
                raise InvalidInput(f"run: {run.display_name} is already version {held.number} of {model.name}", "run")
            number = (model.versions.aggregate(last=Max("number"))["last"] or 0) + 1
            version = ModelVersion.objects.create(model=model, number=number, run=run, note=note.strip(),
                                                  created_by=user)
            if model.production_id is None:
                model.production = version
                model.save(update_fields=["production"])
    except IntegrityError:  # another request created the same name or number first
        raise InvalidInput(f"model: {name} was changed by someone else just now; try again", "model") from None
    activity.record(workspace=run.workspace, actor=user, verb="registered", target_type="model", target_id=model.pk,
                    target_label=f"{model.name} v{number} ({run.display_name})")
    _announce(model, "model.registered", version, user, f"{run.display_name} is now version {number} of {model.name}")
    return version


def _announce(model: RegisteredModel, event: str, version: ModelVersion, user, message: str) -> None:
    """The workspace's webhooks hear of a new version or a new version in production."""
    production = model.production_id == version.pk
    webhooks.dispatch(model.workspace, event, {
        "model": model.pk, "name": model.name, "version": version.number, "run": version.run_id,
        "in_production": production, "path": model.get_absolute_url(),
        "by": getattr(user, "username", None)}, text=f"[{model.workspace.name}] {message}"
                                                      + (" (in production)" if production else ""))


def set_production(*, model: RegisteredModel, number, user) -> RegisteredModel:
    """Put version ``number`` of the model in production."""
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidInput("version: must be a version number", "version")
    version = model.versions.filter(number=number).first()
    if version is None:
        raise InvalidInput(f"version: {model.name} has no version {number}", "version")
    RegisteredModel.objects.filter(pk=model.pk).update(production=version)
    model.production = version
    activity.record(workspace=model.workspace, actor=user, verb="put in production", target_type="model",
                    target_id=model.pk, target_label=f"{model.name} v{number}")
    _announce(model, "model.production", version, user, f"{model.name}: version {number}")
    return model


def describe(*, model: RegisteredModel, description, user) -> RegisteredModel:
    """Set what the model is for (shown on its page and in the API)."""
    if not isinstance(description, str) or len(description) > MAX_NOTE:
        raise InvalidInput(f"description: text of at most {MAX_NOTE} characters", "description")
    _check_text(description, "description")
    model.description = description.strip()
    model.save(update_fields=["description"])
    activity.record(workspace=model.workspace, actor=user, verb="described", target_type="model", target_id=model.pk,
                    target_label=model.name)
    return model


@receiver(version_ready)
def _tell_of_newer_data(sender, version, **kwargs) -> None:
    """A data set version is ready: tell whoever registered each model of its workspace whose version in production
    trained on an earlier version of that data set (and who registered that version), pointing at the model page,
    which offers to score it on the new one and to train it again there."""
    models = (RegisteredModel.objects.filter(workspace_id=version.dataset.workspace_id,
                                             production__run__dataset_version__dataset_id=version.dataset_id,
                                             production__run__dataset_version__number__lt=version.number)
              .select_related("created_by", "production__created_by", "production__run__dataset_version"))
    for model in models:
        production = model.production
        message = (f"{version} is ready, newer than the v{production.run.dataset_version.number} that {model.name} "
                   f"v{production.number} (in production) trained on: score it there, or train it again, from its page")
        for user in {u.pk: u for u in (model.created_by, production.created_by) if u is not None}.values():
            activity.notify(user=user, workspace=model.workspace, message=message, link=model.get_absolute_url())


def set_drift_limits(*, model: RegisteredModel, limits, user) -> RegisteredModel:
    """Set the limits its drift is judged by (``monitoring.check_limits``; ``{}`` or a limit's ``None`` for the
    default), then judge what it served by them at once: a turn notifies and posts as after a request."""
    from webapp.experiments import monitoring

    try:
        model.drift_limits = monitoring.check_limits(limits)
    except ValueError as error:
        field = str(error).split(":", 1)[0]
        raise InvalidInput(str(error), field) from None
    model.drift_checked_at = None
    model.save(update_fields=["drift_limits", "drift_checked_at"])
    activity.record(workspace=model.workspace, actor=user, verb="set the drift limits of", target_type="model",
                    target_id=model.pk, target_label=model.name)
    monitoring.check_drift(model)
    return model


def version_for(model: RegisteredModel, number=None) -> ModelVersion:
    """The version asked for (by number), or the one in production."""
    if number in (None, ""):
        if model.production_id is None:
            raise InvalidInput(f"version: {model.name} has no version in production", "version")
        return model.production
    try:
        number = int(number)
    except (TypeError, ValueError):
        raise InvalidInput(f"version: must be a version number, got {number!r}", "version") from None
    version = model.versions.select_related("run").filter(number=number).first()
    if version is None:
        raise InvalidInput(f"version: {model.name} has no version {number}", "version")
    return version


def delete(*, model: RegisteredModel, user, membership) -> None:
    """Delete the model and its versions; the runs stay."""
    if not may_delete(model, membership):
        raise PermissionDenied(f"{model.name}: only the person who created it or a workspace owner may delete it")
    pk, name = model.pk, model.name
    with transaction.atomic():
        RegisteredModel.objects.filter(pk=pk).update(production=None)
        model.delete()
    activity.record(workspace=model.workspace, actor=user, verb="deleted", target_type="model", target_id=pk,
                    target_label=name)


def remove_version(*, version: ModelVersion, user, membership) -> None:
    """Take a version out of its model (the run stays, and may then be deleted). The version in
    production goes only when it is the last: otherwise another one is put there first."""
    model = version.model
    if not may_delete(version, membership):
        raise PermissionDenied(f"{model.name} v{version.number}: only the person who registered it or a workspace "
                               f"owner may remove it")
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        if model.production_id == version.pk:
            if model.versions.exclude(pk=version.pk).exists():
                raise InvalidInput(f"version: v{version.number} is in production; put another version there "
                                   f"first", "version")
            RegisteredModel.objects.filter(pk=model.pk).update(production=None)
        version.delete()
    activity.record(workspace=model.workspace, actor=user, verb="removed", target_type="model", target_id=model.pk,
                    target_label=f"{model.name} v{version.number}")
