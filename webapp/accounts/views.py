from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from webapp.accounts import services
from webapp.accounts.forms import SignUpForm, WorkspaceForm
from webapp.accounts.models import Membership


@require_http_methods(["GET", "POST"])
def signup(request):
    if settings.SIGNUP != "open":
        raise PermissionDenied("Sign-up is closed on this server; ask an administrator for an account.")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_sign_up(**form.cleaned_data)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to Cupola, {user.username}. Create a workspace to start.")
        return redirect("workspace-create")
    return render(request, "accounts/signup.html", {"form": form})


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
