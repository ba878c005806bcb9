"""Writes about accounts and workspaces."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from webapp.accounts.models import Membership, Role, Workspace


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
