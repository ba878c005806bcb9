"""The one place that decides who may see and change what.

Every view and API endpoint resolves its objects through a helper here. Outsiders get
``Http404`` — the same answer as for objects that do not exist — and members whose role
does not allow a write get ``PermissionDenied``.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from webapp.accounts.models import Membership, Role, Workspace


def get_membership(user, workspace_slug: str) -> Membership:
    if not user.is_authenticated:
        raise Http404("No such workspace")
    membership = (
        Membership.objects.select_related("workspace")
        .filter(user=user, workspace__slug=workspace_slug)
        .first()
    )
    if membership is None:
        raise Http404("No such workspace")
    return membership


def require_write(membership: Membership) -> None:
    if not membership.can_write:
        raise PermissionDenied("Your role in this workspace is read-only")


def require_owner(membership: Membership) -> None:
    if membership.role != Role.OWNER:
        raise PermissionDenied("Only the workspace's owners may do this")


def get_workspace_for_user(user, workspace_slug: str, *, write: bool = False) -> tuple[Workspace, Membership]:
    membership = get_membership(user, workspace_slug)
    if write:
        require_write(membership)
    return membership.workspace, membership


def get_object_in_workspace(model, user, pk, *, write: bool = False, workspace_field: str = "workspace"):
    """Fetch ``model`` by pk if the user is a member of its workspace: ``(obj, membership)``."""
    if not user.is_authenticated:
        raise Http404("Not found")
    try:
        obj = model.objects.select_related(workspace_field).get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None
    workspace = getattr(obj, workspace_field)
    membership = Membership.objects.filter(user=user, workspace=workspace).first()
    if membership is None:
        raise Http404("Not found")
    if write:
        require_write(membership)
    return obj, membership
