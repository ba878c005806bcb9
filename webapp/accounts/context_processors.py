from webapp.accounts.models import Membership


def workspaces(request):
    """The header: the user's workspaces, the one in the URL, and the unread notification count."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = list(Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name"))
    slug = (getattr(request, "resolver_match", None) and request.resolver_match.kwargs.get("ws")) or None
    current = next((m for m in memberships if m.workspace.slug == slug), None)
    return {"my_memberships": memberships, "current_membership": current,
            "current_workspace": current.workspace if current else None,
            "unread_notifications": user.notifications.filter(read_at__isnull=True).count()}
