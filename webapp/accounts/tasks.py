"""Celery tasks of the accounts app: thin wrappers that load rows and call a service."""

from __future__ import annotations

from celery import shared_task

from webapp.accounts import webhooks


@shared_task(bind=True, name="accounts.deliver_webhook", max_retries=webhooks.MAX_ATTEMPTS - 1)
def deliver_webhook(self, delivery_id: int) -> str:
    from webapp.accounts.models import WebhookDelivery

    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return "skipped"
    if webhooks.deliver(delivery):
        return "delivered"
    if delivery.attempts >= webhooks.MAX_ATTEMPTS:
        return "failed"
    raise self.retry(countdown=webhooks.backoff_seconds(delivery.attempts), queue="default")
