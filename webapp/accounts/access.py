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


def get_owned_workspace(user, workspace_slug: str) -> tuple[Workspace, Membership]:
    """The workspace if the user owns it; 404 for outsiders, 403 for other members."""
    membership = get_membership(user, workspace_slug)
    require_owner(membership)
    return membership.workspace, membership


def get_in_workspace(model, membership: Membership, pk):
    """An object of ``model`` that belongs to the membership's workspace, or 404."""
    try:
        return model.objects.get(workspace=membership.workspace, pk=pk)
    except (model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None


def get_member_for_owner(user, workspace_slug: str, member_id) -> tuple[Membership, Membership]:
    """``(target membership, acting owner's membership)`` for managing members."""
    _, mine = get_owned_workspace(user, workspace_slug)
    target = get_in_workspace(Membership, mine, member_id)
    return target, mine


def get_share_link_for_revoke(user, workspace_slug: str, pk):
    """Owners revoke any of the workspace's links, editors their own, viewers none."""
    from webapp.accounts.models import ShareLink

    _, membership = get_workspace_for_user(user, workspace_slug, write=True)
    link = get_in_workspace(ShareLink, membership, pk)
    if not membership.is_owner and link.created_by_id != user.pk:
        raise PermissionDenied("Editors may revoke only the links they created")
    return link, membership
