"""Account pages: sign-up, log-in, the account page with API tokens, notifications, invitations."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import url_has_allowed_host_and_scheme, urlsafe_base64_encode
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts import services
from webapp.accounts.forms import ResetLinkForm, SignUpForm, TokenForm, WorkspaceForm
from webapp.accounts.models import ApiToken, Invitation, Membership, Role
from webapp.core.links import absolute_url


def _usable_invitation(token: str | None) -> Invitation | None:
    if not token:
        return None
    invitation = Invitation.objects.select_related("workspace").filter(token=token[:64]).first()
    return invitation if invitation is not None and invitation.is_usable else None


@require_http_methods(["GET", "POST"])
def signup(request):
    invite_token = request.POST.get("invite") or request.GET.get("invite")
    invitation = _usable_invitation(invite_token)
    if settings.SIGNUP == "closed" or (settings.SIGNUP == "invite" and invitation is None):
        return render(request, "accounts/signup_closed.html", {"mode": settings.SIGNUP}, status=403)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_sign_up(**form.cleaned_data)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if invitation is not None:
            try:
                membership = services.invitation_accept(token=invitation.token, user=user)
            except services.ServiceError as error:
                messages.error(request, str(error))
            else:
                messages.success(request, f"Welcome to Cupola, {user.username}. You joined {membership.workspace.name}.")
                return redirect("workspace-dashboard", ws=membership.workspace.slug)
        messages.success(request, f"Welcome to Cupola, {user.username}. Create a workspace to start.")
        return redirect("workspace-create")
    return render(request, "accounts/signup.html", {"form": form, "invitation": invitation})


@login_required
def home(request):
    membership = Membership.objects.filter(user=request.user).select_related("workspace").order_by("workspace__name").first()
    if membership is None:
        return redirect("workspace-create")
    return redirect("workspace-dashboard", ws=membership.workspace.slug)


@login_required
@require_http_methods(["GET", "POST"])
def workspace_create(request):
    form = WorkspaceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        workspace = services.workspace_create(name=form.cleaned_data["name"], owner=request.user)
        messages.success(request, f"Workspace “{workspace.name}” created.")
        return redirect("workspace-dashboard", ws=workspace.slug)
    return render(request, "accounts/workspace_create.html", {"form": form})


def _account_page(request, *, token_form=None, new_key=None, status=200):
    memberships = Membership.objects.filter(user=request.user).select_related("workspace").order_by("workspace__name")
    return render(request, "accounts/account.html", {
        "memberships": memberships, "tokens": ApiToken.objects.filter(user=request.user),
        "token_form": token_form or TokenForm(), "new_key": new_key, "section": "account",
    }, status=status)


@login_required
def account(request):
    return _account_page(request)


@login_required
@require_POST
def token_create(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _account_page(request, token_form=form, status=400)
    token, key = services.token_create(user=request.user, name=form.cleaned_data["name"])
    response = _account_page(request, new_key={"token": token, "key": key})
    response["Cache-Control"] = "no-store"  # the key is shown this once
    return response


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    services.token_revoke(token=token)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("account")


@login_required
def notifications(request):
    page = Paginator(request.user.notifications.select_related("workspace"), 30).get_page(request.GET.get("page"))
    return render(request, "accounts/notifications.html", {"page": page})


@login_required
@require_POST
def notifications_read_all(request):
    services.notifications_mark_read(user=request.user)
    return redirect("notifications")


@login_required
@require_POST
def notification_read(request, pk):
    notification = get_object_or_404(request.user.notifications, pk=pk)
    services.notifications_mark_read(user=request.user, pk=notification.pk)
    link = notification.link
    if link and link.startswith("/") and url_has_allowed_host_and_scheme(link, allowed_hosts=None):
        return redirect(link)
    return redirect("notifications")


@require_http_methods(["GET", "POST"])
def invitation(request, token):
    invitation = _usable_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except services.ServiceError as error:
            messages.error(request, str(error))
            return redirect("home")
        messages.success(request, f"You are now a member of {membership.workspace.name}.")
        return redirect("workspace-dashboard", ws=membership.workspace.slug)
    already = request.user.is_authenticated and Membership.objects.filter(
        workspace=invitation.workspace, user=request.user).exists()
    return render(request, "accounts/invitation.html", {
        "invitation": invitation, "already_member": already, "signup_allowed": settings.SIGNUP != "closed",
    })


@login_required
def users(request):
    """Workspace owners' view of the people in the workspaces they own."""
    owned = list(Membership.objects.filter(user=request.user, role=Role.OWNER).values_list("workspace_id", flat=True))
    if not owned:
        raise PermissionDenied("Only workspace owners can see this page")
    in_mine = Membership.objects.filter(workspace_id__in=owned).select_related("workspace").order_by("workspace__name")
    people = (get_user_model().objects.filter(memberships__workspace_id__in=owned).distinct().order_by("username")
              .prefetch_related(Prefetch("memberships", queryset=in_mine, to_attr="shared_memberships")))
    return render(request, "accounts/users.html", {"people": people, "section": "users"})


class PasswordResetView(auth_views.PasswordResetView):
    """Django's, with the e-mailed link under CUPOLA_BASE_URL when one is set (behind a proxy the
    request's host may not be the address people reach)."""

    @property
    def extra_email_context(self):
        return {"base_url": settings.BASE_URL}


@login_required
@require_http_methods(["GET", "POST"])
def password_reset_links(request):
    """The site admin copies a reset link for a user, for servers without a mail server."""
    if not request.user.is_staff:
        raise PermissionDenied("Only the site administrator can make password reset links")
    form = ResetLinkForm(request.POST or None)
    link = None
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["username"]
        path = reverse("password-reset-confirm", kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": default_token_generator.make_token(user)})
        link = {"user": user, "url": absolute_url(path, request)}
    console_mail = settings.EMAIL_BACKEND.endswith(("console.EmailBackend", "locmem.EmailBackend", "dummy.EmailBackend"))
    response = render(request, "accounts/password_reset_links.html",
                      {"form": form, "link": link, "console_mail": console_mail})
    response["Cache-Control"] = "no-store"
    return response
