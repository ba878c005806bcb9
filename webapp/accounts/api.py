"""REST endpoints for workspaces, members, share links and API tokens (``/api/v1/``).

The same access helpers and services as the pages: outsiders get 404, members without the
role 403.
"""

from __future__ import annotations

from datetime import datetime

from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from webapp.accounts import access, services
from webapp.accounts.models import ApiToken, Membership, Role, ShareLink, ShareTarget
from webapp.core.links import absolute_url

router = Router(tags=["workspaces"])


class WorkspaceOut(Schema):
    slug: str
    name: str
    role: str


class MemberOut(Schema):
    id: int
    username: str
    role: str
    joined_at: datetime


class MemberIn(Schema):
    username: str
    role: Role = Role.VIEWER


class RoleIn(Schema):
    role: Role


class ShareLinkOut(Schema):
    id: int
    target_type: str
    target_id: str
    target_label: str
    url: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    live: bool


class ShareLinkIn(Schema):
    target_type: ShareTarget
    target_id: str
    days: int | None = None


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _member(m: Membership) -> dict:
    return {"id": m.pk, "username": m.user.username, "role": m.role, "joined_at": m.created_at}


def _link(request, link: ShareLink) -> dict:
    return {"id": link.pk, "target_type": link.target_type, "target_id": link.target_id,
            "target_label": link.target_label, "url": absolute_url(f"/s/{link.token}/", request),
            "created_by": link.created_by.username if link.created_by else None, "created_at": link.created_at,
            "expires_at": link.expires_at, "revoked_at": link.revoked_at, "live": link.is_live}


@router.get("/workspaces", response=list[WorkspaceOut])
def list_workspaces(request):
    """The workspaces you belong to, with your role in each."""
    memberships = Membership.objects.filter(user=request.user).select_related("workspace").order_by("workspace__name")
    return [{"slug": m.workspace.slug, "name": m.workspace.name, "role": m.role} for m in memberships]


@router.get("/workspaces/{ws}/members", response=list[MemberOut])
def list_members(request, ws: str):
    workspace, _ = access.get_workspace_for_user(request.user, ws)
    return [_member(m) for m in workspace.memberships.select_related("user").order_by("user__username")]


@router.post("/workspaces/{ws}/members", response={201: MemberOut})
def add_member(request, ws: str, body: MemberIn):
    """Add an existing user by name (owners only)."""
    workspace, _ = access.get_owned_workspace(request.user, ws)
    try:
        membership = services.member_add(workspace=workspace, actor=request.user, username=body.username,
                                         role=body.role.value)
    except services.ServiceError as error:
        raise HttpError(400, str(error)) from None
    return Status(201, _member(membership))


@router.patch("/workspaces/{ws}/members/{member_id}", response=MemberOut)
def change_member_role(request, ws: str, member_id: int, body: RoleIn):
    target, _ = access.get_member_for_owner(request.user, ws, member_id)
    try:
        services.member_change_role(membership=target, actor=request.user, role=body.role.value)
    except services.ServiceError as error:
        raise HttpError(400, str(error)) from None
    return _member(target)


@router.delete("/workspaces/{ws}/members/{member_id}", response={204: None})
def remove_member(request, ws: str, member_id: int):
    target, _ = access.get_member_for_owner(request.user, ws, member_id)
    try:
        services.member_remove(membership=target, actor=request.user)
    except services.ServiceError as error:
        raise HttpError(400, str(error)) from None
    return Status(204, None)


@router.get("/workspaces/{ws}/share-links", response=list[ShareLinkOut], tags=["sharing"])
def list_share_links(request, ws: str):
    workspace, _ = access.get_workspace_for_user(request.user, ws, write=True)
    return [_link(request, link) for link in ShareLink.objects.filter(workspace=workspace).select_related("created_by")]


@router.post("/workspaces/{ws}/share-links", response={201: ShareLinkOut}, tags=["sharing"])
def create_share_link(request, ws: str, body: ShareLinkIn):
    """A read-only public link to a run, comparison or data set (owners and editors)."""
    workspace, _ = access.get_workspace_for_user(request.user, ws, write=True)
    if body.days is not None and not 1 <= body.days <= 365:
        raise HttpError(400, "days: between 1 and 365, or null for no expiry")
    try:
        link = services.share_link_create(workspace=workspace, actor=request.user, target_type=body.target_type.value,
                                          target_id=body.target_id, days=body.days)
    except services.ServiceError as error:
        raise HttpError(400, str(error)) from None
    return Status(201, _link(request, link))


@router.delete("/workspaces/{ws}/share-links/{link_id}", response=ShareLinkOut, tags=["sharing"])
def revoke_share_link(request, ws: str, link_id: int):
    """Revoke a link: owners any, editors their own. It answers 404 from then on."""
    link, _ = access.get_share_link_for_revoke(request.user, ws, link_id)
    return _link(request, services.share_link_revoke(link=link, actor=request.user))


@router.get("/tokens", response=list[TokenOut], tags=["tokens"])
def list_tokens(request):
    """Your API tokens (their keys are never shown again)."""
    return list(ApiToken.objects.filter(user=request.user))


@router.delete("/tokens/{token_id}", response=TokenOut, tags=["tokens"])
def revoke_token(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    return services.token_revoke(token=token)
