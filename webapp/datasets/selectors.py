"""Reads about data sets, always through the workspace's access rules."""

from __future__ import annotations

from django.http import Http404

from webapp.accounts.access import get_object_in_workspace, require_write
from webapp.accounts.models import Membership
from webapp.datasets.models import Dataset, DatasetVersion, VersionStatus


def get_dataset_for_user(user, pk, *, write: bool = False) -> tuple[Dataset, Membership]:
    """``(dataset, membership)``; 404 for outsiders and missing ids, PermissionDenied for viewers on writes."""
    return get_object_in_workspace(Dataset, user, pk, write=write)


def get_version_for_user(user, pk, *, write: bool = False) -> tuple[DatasetVersion, Membership]:
    """``(version, membership)`` with the same rules, through the version's data set."""
    if not user.is_authenticated:
        raise Http404("Not found")
    try:
        version = DatasetVersion.objects.select_related("dataset__workspace").get(pk=pk)
    except (DatasetVersion.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None
    membership = Membership.objects.filter(user=user, workspace=version.dataset.workspace).first()
    if membership is None:
        raise Http404("Not found")
    if write:
        require_write(membership)
    return version, membership


def datasets_in_workspace(workspace, *, search: str = ""):
    queryset = Dataset.objects.filter(workspace=workspace).select_related("created_by")
    if search:
        queryset = queryset.filter(name__icontains=search.strip())
    return queryset.prefetch_related("versions")


def ready_versions_in_workspace(workspace):
    """Every ready version in the workspace, newest first: what a run can be trained on."""
    return (DatasetVersion.objects.filter(dataset__workspace=workspace, status=VersionStatus.READY)
            .select_related("dataset").order_by("dataset__name", "-number"))
