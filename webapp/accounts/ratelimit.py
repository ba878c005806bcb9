"""Log-in rate limiting: after too many failures for one user name from one address, wait.

Counts live in the database (``LoginFailure``) so every web process, on every machine,
sees the same numbers; Django's default cache is per process and would not.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from webapp.accounts.models import LoginFailure

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)


def client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is whatever the client says unless a proxy rewrites it.
    return (request.META.get("REMOTE_ADDR") or "unknown")[:45]


def _key(username: str) -> str:
    return (username or "").strip().lower()[:150]


def _recent(username: str, ip: str):
    return LoginFailure.objects.filter(username=_key(username), ip=ip, created_at__gt=timezone.now() - WINDOW)


def seconds_locked(username: str, ip: str) -> int:
    """How long this user name from this address must wait; 0 when it may try now."""
    recent = list(_recent(username, ip).order_by("-created_at").values_list("created_at", flat=True)[:MAX_FAILURES])
    if len(recent) < MAX_FAILURES:
        return 0
    unlock = recent[-1] + WINDOW
    return max(int((unlock - timezone.now()).total_seconds()) + 1, 1)


def record_failure(username: str, ip: str) -> None:
    now = timezone.now()
    LoginFailure.objects.create(username=_key(username), ip=ip, created_at=now)
    LoginFailure.objects.filter(created_at__lt=now - WINDOW).delete()


def clear(username: str, ip: str) -> None:
    LoginFailure.objects.filter(username=_key(username), ip=ip).delete()
