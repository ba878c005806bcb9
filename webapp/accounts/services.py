"""Writes about accounts and workspaces: members, invitations, share links, API tokens.

Services take keyword arguments, never ``request``; they check the business rules (the
last owner stays) and record activity. Who may call them is decided by ``access``.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from webapp.accounts import activity, sharing, webhooks
from webapp.accounts.models import ApiToken, Invitation, Membership, Role, ShareLink, Webhook, Workspace


class ServiceError(Exception):
    """A rule the caller broke, with a message fit to show to the user."""


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "workspace"
    slug, n = base, 1
    while Workspace.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def workspace_create(*, name: str, owner) -> Workspace:
    workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    activity.record(workspace=workspace, actor=owner, verb="created", target_type="workspace",
                    target_id=workspace.pk, target_label=workspace.name)
    return workspace


@transaction.atomic
def user_sign_up(*, username: str, password: str, email: str = ""):
    """Create an account; the very first account on a server becomes its administrator."""
    User = get_user_model()
    first = not User.objects.exists()
    user = User.objects.create_user(username=username, password=password, email=email)
    if first:
        user.is_staff = user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    return user


# Members ---------------------------------------------------------------------------------

def _owner_count(workspace) -> int:
    return Membership.objects.filter(workspace=workspace, role=Role.OWNER).count()


def _check_keeps_an_owner(membership: Membership, new_role: str | None) -> None:
    # Lock the workspace's owner rows so two owners demoting each other cannot both succeed.
    list(Membership.objects.select_for_update().filter(workspace=membership.workspace, role=Role.OWNER))
    if membership.role == Role.OWNER and new_role != Role.OWNER and _owner_count(membership.workspace) <= 1:
        raise ServiceError("A workspace needs at least one owner: make someone else an owner first.")


@transaction.atomic
def member_add(*, workspace, actor, username: str, role: str) -> Membership:
    user = get_user_model().objects.filter(username__iexact=username.strip(), is_active=True).first()
    if user is None:
        raise ServiceError(f"There is no user called “{username}”.")
    if Membership.objects.filter(workspace=workspace, user=user).exists():
        raise ServiceError(f"{user.username} is already a member.")
    membership = Membership.objects.create(workspace=workspace, user=user, role=role)
    activity.record(workspace=workspace, actor=actor, verb="added member", target_type="member",
                    target_id=user.pk, target_label=f"{user.username} ({role})")
    activity.notify(user=user, workspace=workspace, message=f"{actor.username} added you to {workspace.name} as {role}.",
                    link=f"/w/{workspace.slug}/")
    webhooks.dispatch(workspace, "member.added", {"username": user.username, "role": role})
    return membership


@transaction.atomic
def member_change_role(*, membership: Membership, actor, role: str) -> Membership:
    if role not in Role.values:
        raise ServiceError("Unknown role.")
    _check_keeps_an_owner(membership, role)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    activity.record(workspace=membership.workspace, actor=actor, verb="changed role", target_type="member",
                    target_id=membership.user_id, target_label=f"{membership.user.username}: {old} → {role}")
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor) -> None:
    _check_keeps_an_owner(membership, None)
    workspace, user = membership.workspace, membership.user
    membership.delete()
    leaving = actor is not None and actor.pk == user.pk
    activity.record(workspace=workspace, actor=actor, verb="left" if leaving else "removed member",
                    target_type="member", target_id=user.pk, target_label=user.username)
    webhooks.dispatch(workspace, "member.removed", {"username": user.username})


# Invitations -----------------------------------------------------------------------------

@transaction.atomic
def invitation_create(*, workspace, actor, role: str, days: int, multi_use: bool) -> Invitation:
    invitation = Invitation.objects.create(
        workspace=workspace, role=role, created_by=actor, multi_use=multi_use,
        expires_at=timezone.now() + timedelta(days=days),
    )
    activity.record(workspace=workspace, actor=actor, verb="invited", target_type="invitation",
                    target_id=invitation.pk, target_label=f"{role}, {'multi' if multi_use else 'single'}-use link")
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor) -> None:
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        activity.record(workspace=invitation.workspace, actor=actor, verb="revoked", target_type="invitation",
                        target_id=invitation.pk, target_label=invitation.role)


@transaction.atomic
def invitation_accept(*, token: str, user) -> Membership:
    invitation = Invitation.objects.select_for_update().select_related("workspace").filter(token=token).first()
    if invitation is None or not invitation.is_usable:
        raise ServiceError("This invitation link has expired or is no longer valid.")
    existing = Membership.objects.filter(workspace=invitation.workspace, user=user).first()
    if existing is not None:
        return existing  # already in: using the link again changes nothing (and never demotes)
    membership = Membership.objects.create(workspace=invitation.workspace, user=user, role=invitation.role)
    invitation.uses += 1
    invitation.save(update_fields=["uses"])
    activity.record(workspace=invitation.workspace, actor=user, verb="joined", target_type="member",
                    target_id=user.pk, target_label=f"{user.username} ({invitation.role}) by invitation")
    webhooks.dispatch(invitation.workspace, "member.added", {"username": user.username, "role": invitation.role})
    return membership


# Share links -----------------------------------------------------------------------------

@transaction.atomic
def share_link_create(*, workspace, actor, target_type: str, target_id, days: int | None = None) -> ShareLink:
    target = sharing.resolve_target(workspace, target_type, target_id)
    if target is None:
        raise ServiceError(f"There is no {target_type} {target_id} in this workspace to share.")
    link = ShareLink.objects.create(
        workspace=workspace, target_type=target_type, target_id=str(target_id), target_label=str(target)[:200],
        created_by=actor, expires_at=timezone.now() + timedelta(days=days) if days else None,
    )
    activity.record(workspace=workspace, actor=actor, verb="shared", target_type=target_type,
                    target_id=target_id, target_label=link.target_label)
    return link


@transaction.atomic
def share_link_revoke(*, link: ShareLink, actor) -> ShareLink:
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.save(update_fields=["revoked_at"])
        activity.record(workspace=link.workspace, actor=actor, verb="revoked share link", target_type=link.target_type,
                        target_id=link.target_id, target_label=link.target_label)
    return link


# API tokens ------------------------------------------------------------------------------

@transaction.atomic
def token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """Issue a token; the key is returned once and never stored. Owners see it in their audit logs."""
    token, key = ApiToken.issue(user=user, name=name)
    for membership in Membership.objects.filter(user=user).select_related("workspace"):
        activity.record(workspace=membership.workspace, actor=user, verb="created API token",
                        target_type="api_token", target_id=token.pk, target_label=f"{name} ({token.prefix}…)")
    return token, key


@transaction.atomic
def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


# Webhooks --------------------------------------------------------------------------------

@transaction.atomic
def webhook_create(*, workspace, actor, url: str) -> Webhook:
    hook = Webhook.objects.create(workspace=workspace, url=webhooks.validate_url(url), created_by=actor)
    activity.record(workspace=workspace, actor=actor, verb="added webhook", target_type="webhook",
                    target_id=hook.pk, target_label=hook.url)
    return hook


@transaction.atomic
def webhook_delete(*, hook: Webhook, actor) -> None:
    activity.record(workspace=hook.workspace, actor=actor, verb="removed webhook", target_type="webhook",
                    target_id=hook.pk, target_label=hook.url)
    hook.delete()


@transaction.atomic
def webhook_send_test(*, hook: Webhook, actor) -> list:
    workspace = hook.workspace
    return webhooks.queue([hook], workspace, "ping", {"by": actor.username},
                          text=f"[{workspace.name}] Test event from Cupola, sent by {actor.username}")


# Notifications ---------------------------------------------------------------------------

def notifications_mark_read(*, user, pk: int | None = None) -> int:
    unread = user.notifications.filter(read_at__isnull=True)
    if pk is not None:
        unread = unread.filter(pk=pk)
    return unread.update(read_at=timezone.now())
