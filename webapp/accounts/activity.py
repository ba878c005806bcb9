"""Recording what happens in a workspace, and telling the people it concerns."""

from __future__ import annotations

from webapp.accounts.models import Activity, Notification


def record(*, workspace, actor, verb: str, target_type: str = "", target_id="", target_label: str = "") -> Activity:
    return Activity.objects.create(
        workspace=workspace, actor=actor if getattr(actor, "is_authenticated", False) else None, verb=verb,
        target_type=target_type, target_id=str(target_id), target_label=str(target_label)[:200],
    )


def notify(*, user, message: str, link: str = "", level: str = "info", workspace=None) -> Notification:
    return Notification.objects.create(user=user, workspace=workspace, message=message[:300], link=link, level=level)
