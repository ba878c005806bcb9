"""Workspace webhooks: a JSON POST to a URL the owner set, for each event, retried on failure.

Other apps call ``dispatch(workspace, "run.succeeded", {...})`` inside their transaction; the
deliveries are queued once it commits and sent by a worker (queue ``default``), with
exponential backoff, at most ``MAX_ATTEMPTS`` tries. Each body is signed:
``X-Cupola-Signature: sha256=<hex HMAC of the body with the webhook's secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from webapp.core.links import absolute_url

MAX_ATTEMPTS = 5
MAX_URL_LENGTH = 500
TIMEOUT_SECONDS = 10
BACKOFF_BASE_SECONDS = 30  # 30 s, 1 min, 2 min, 4 min between the five tries


def validate_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials; never file:, ftp:, javascript: …"""
    url = (url or "").strip()
    if not url:
        raise ValidationError("Enter the URL that should receive the events.")
    if len(url) > MAX_URL_LENGTH:
        raise ValidationError(f"The URL is too long (at most {MAX_URL_LENGTH} characters).")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError:
        raise ValidationError("This is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http:// and https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise ValidationError("The URL needs a host name.")
    if parts.username or parts.password:
        raise ValidationError("Put no user name or password in the URL.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationError("The URL may not contain spaces or control characters.")
    return url


def dispatch(workspace, event: str, payload: dict, *, text: str = "") -> list:
    """Queue ``event`` for every active webhook of ``workspace``; sent after the commit.

    ``payload`` must be JSON-serialisable (dates and decimals are fine). ``text`` is a one-line
    summary for chat tools (Slack reads the ``text`` field); a default is made from the event.
    A payload's ``path`` (the page of the run or model) gets a full ``url`` beside it, also at the
    end of the text, when CUPOLA_BASE_URL names the server's public address.
    """
    return queue(list(workspace.webhooks.filter(active=True)), workspace, event, payload, text=text)


def queue(hooks, workspace, event: str, payload: dict, *, text: str = "") -> list:
    from webapp.accounts.models import WebhookDelivery

    if not hooks:
        return []
    text = text or f"[{workspace.name}] {event}"
    if payload.get("path") and settings.BASE_URL:  # a link the receiver can follow (Slack shows it)
        payload = {**payload, "url": absolute_url(payload["path"])}
        text = f"{text} {payload['url']}"
    body = json.loads(json.dumps({
        "event": event, "workspace": workspace.slug, "text": text, "sent_at": timezone.now(), "data": payload,
    }, cls=DjangoJSONEncoder))
    deliveries = [WebhookDelivery.objects.create(webhook=hook, event=event[:60], payload=body) for hook in hooks]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: _enqueue(pk))
    return deliveries


def _enqueue(delivery_id: int) -> None:
    from webapp.accounts.tasks import deliver_webhook

    deliver_webhook.apply_async(args=[delivery_id], queue="default")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could point anywhere (another scheme, another host); treat it as the answer.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(delivery) -> bool:
    """Make one try; record its outcome. True when the receiver answered 2xx."""
    hook = delivery.webhook
    body = json.dumps(delivery.payload).encode()
    delivery.attempts += 1
    code, error = None, ""
    try:
        request = urllib.request.Request(validate_url(hook.url), data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "Cupola-Webhook/1",
            "X-Cupola-Event": delivery.event, "X-Cupola-Delivery": str(delivery.pk),
            "X-Cupola-Signature": sign(hook.secret, body),
        })
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code, error = exc.code, f"HTTP {exc.code}"
    except ValidationError as exc:
        error = "; ".join(exc.messages)[:300]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        error = str(getattr(exc, "reason", exc))[:300] or exc.__class__.__name__
    ok = code is not None and 200 <= code < 300
    delivery.response_code, delivery.error = code, ("" if ok else error or f"HTTP {code}")
    if ok:
        delivery.status, delivery.finished_at = delivery.Status.SUCCEEDED, timezone.now()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status, delivery.finished_at = delivery.Status.FAILED, timezone.now()
    delivery.save(update_fields=["attempts", "response_code", "error", "status", "finished_at"])
    return ok


def backoff_seconds(attempts: int) -> int:
    return BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)
