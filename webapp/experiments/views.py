from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from webapp.accounts.access import get_workspace_for_user


@login_required
def dashboard(request, ws):
    workspace, membership = get_workspace_for_user(request.user, ws)
    return render(request, "experiments/dashboard.html", {"workspace": workspace, "membership": membership})
