"""Workspace team pages: members, invitations, share links, the activity log, webhooks."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts import access, services, webhooks
from webapp.accounts.forms import InvitationForm, MemberAddForm, RoleForm, ShareLinkForm, WebhookForm
from webapp.accounts.models import Invitation, Role, ShareLink, Webhook, WebhookDelivery


def _members_page(request, ws, *, add_form=None, invite_form=None, status=200):
    workspace, membership = access.get_workspace_for_user(request.user, ws)
    context = {"workspace": workspace, "membership": membership, "section": "members", "roles": Role.choices,
               "members": workspace.memberships.select_related("user").order_by("user__username")}
    if membership.is_owner:
        context.update(add_form=add_form or MemberAddForm(), invite_form=invite_form or InvitationForm(),
                       invitations=workspace.invitations.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()))
    return render(request, "accounts/members.html", context, status=status)


@login_required
def members(request, ws):
    return _members_page(request, ws)


@login_required
@require_POST
def member_add(request, ws):
    workspace, _ = access.get_owned_workspace(request.user, ws)
    form = MemberAddForm(request.POST)
    if form.is_valid():
        try:
            added = services.member_add(workspace=workspace, actor=request.user, **form.cleaned_data)
        except services.ServiceError as error:
            form.add_error("username", str(error))
        else:
            messages.success(request, f"{added.user.username} joined as {added.get_role_display().lower()}.")
            return redirect("workspace-members", ws=ws)
    return _members_page(request, ws, add_form=form, status=400)


@login_required
@require_POST
def member_role(request, ws, member_id):
    target, _ = access.get_member_for_owner(request.user, ws, member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
    else:
        try:
            services.member_change_role(membership=target, actor=request.user, role=form.cleaned_data["role"])
            messages.success(request, f"{target.user.username} is now {target.get_role_display().lower()}.")
        except services.ServiceError as error:
            messages.error(request, str(error))
    return redirect("workspace-members", ws=ws)


@login_required
@require_POST
def member_remove(request, ws, member_id):
    target, _ = access.get_member_for_owner(request.user, ws, member_id)
    try:
        services.member_remove(membership=target, actor=request.user)
        messages.success(request, f"{target.user.username} was removed from the workspace.")
    except services.ServiceError as error:
        messages.error(request, str(error))
    if target.user_id == request.user.pk and not target.pk:
        return redirect("home")
    return redirect("workspace-members", ws=ws)


@login_required
@require_POST
def leave(request, ws):
    workspace, membership = access.get_workspace_for_user(request.user, ws)
    try:
        services.member_remove(membership=membership, actor=request.user)
    except services.ServiceError as error:
        messages.error(request, str(error))
        return redirect("workspace-members", ws=ws)
    messages.success(request, f"You left {workspace.name}.")
    return redirect("home")


@login_required
@require_POST
def invitation_create(request, ws):
    workspace, _ = access.get_owned_workspace(request.user, ws)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        return _members_page(request, ws, invite_form=form, status=400)
    invitation = services.invitation_create(workspace=workspace, actor=request.user, **form.cleaned_data)
    messages.success(request, "Invitation link created; copy it from the list below.")
    return redirect(f"/w/{ws}/members/#invitation-{invitation.pk}")


@login_required
@require_POST
def invitation_revoke(request, ws, pk):
    _, membership = access.get_owned_workspace(request.user, ws)
    invitation = access.get_in_workspace(Invitation, membership, pk)
    services.invitation_revoke(invitation=invitation, actor=request.user)
    messages.success(request, "Invitation link revoked.")
    return redirect("workspace-members", ws=ws)


@login_required
@require_http_methods(["GET", "POST"])
def share_links(request, ws):
    """The workspace's share links: owners and editors create them and see them all."""
    workspace, membership = access.get_workspace_for_user(request.user, ws, write=True)
    form = ShareLinkForm(request.POST or None, initial={"target_type": request.GET.get("type"),
                                                        "target_id": request.GET.get("id")})
    if request.method == "POST" and form.is_valid():
        try:
            link = services.share_link_create(workspace=workspace, actor=request.user, **form.cleaned_data)
        except services.ServiceError as error:
            form.add_error("target_id", str(error))
        else:
            messages.success(request, "Share link created: anyone with it can read this page until you revoke it.")
            return redirect(f"/w/{ws}/shares/?new={link.pk}#link-{link.pk}")
    links = ShareLink.objects.filter(workspace=workspace).select_related("created_by")
    return render(request, "accounts/share_links.html", {
        "workspace": workspace, "membership": membership, "section": "shares", "links": links, "form": form,
        "new_id": request.GET.get("new"), "now": timezone.now(),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def share_link_revoke(request, ws, pk):
    link, _ = access.get_share_link_for_revoke(request.user, ws, pk)
    services.share_link_revoke(link=link, actor=request.user)
    messages.success(request, "Share link revoked; it now answers “not found”.")
    return redirect("workspace-share-links", ws=ws)


@login_required
def activity(request, ws):
    workspace, membership = access.get_owned_workspace(request.user, ws)
    page = Paginator(workspace.activities.select_related("actor"), 50).get_page(request.GET.get("page"))
    return render(request, "accounts/activity.html",
                  {"workspace": workspace, "membership": membership, "section": "activity", "page": page})


@login_required
@require_http_methods(["GET", "POST"])
def webhooks_page(request, ws):
    workspace, membership = access.get_owned_workspace(request.user, ws)
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.webhook_create(workspace=workspace, actor=request.user, url=form.cleaned_data["url"])
        messages.success(request, "Webhook added. Send a test event to check it.")
        return redirect("workspace-webhooks", ws=ws)
    hooks = workspace.webhooks.all()
    log = WebhookDelivery.objects.filter(webhook__workspace=workspace).select_related("webhook")
    deliveries = Paginator(log, 30).get_page(request.GET.get("page"))
    return render(request, "accounts/webhooks.html", {
        "workspace": workspace, "membership": membership, "section": "webhooks", "form": form, "hooks": hooks,
        "deliveries": deliveries, "max_attempts": webhooks.MAX_ATTEMPTS,
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def webhook_delete(request, ws, pk):
    _, membership = access.get_owned_workspace(request.user, ws)
    hook = access.get_in_workspace(Webhook, membership, pk)
    services.webhook_delete(hook=hook, actor=request.user)
    messages.success(request, "Webhook removed.")
    return redirect("workspace-webhooks", ws=ws)


@login_required
@require_POST
def webhook_test(request, ws, pk):
    _, membership = access.get_owned_workspace(request.user, ws)
    hook = access.get_in_workspace(Webhook, membership, pk)
    services.webhook_send_test(hook=hook, actor=request.user)
    messages.success(request, "Test event queued; its delivery appears in the log below.")
    return redirect("workspace-webhooks", ws=ws)
