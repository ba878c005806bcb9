import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

import pytest
from celery.exceptions import Retry
from django.core.exceptions import ValidationError

from webapp.accounts import services, webhooks
from webapp.accounts.models import Webhook, WebhookDelivery
from webapp.accounts.tasks import deliver_webhook


class Receiver:
    """A local HTTP server on 127.0.0.1 that records POSTs and answers with the statuses it is given."""

    def __init__(self, statuses=(200,)):
        self.requests, self.statuses = [], list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if status in (301, 302):
                    self.send_header("Location", "file:///etc/passwd")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses):
        made.append(Receiver(statuses or (200,)))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/x", "javascript:alert(1)", "gopher://x",
                                 "http://", "https://user:pw@example.org/", "example.org/hook", "",
                                 "https://example.org/" + "a" * 600, "http://exa mple.org/"])
def test_webhook_urls_must_be_plain_http_or_https(url):
    with pytest.raises(ValidationError):
        webhooks.validate_url(url)


def test_a_good_url_passes_validation():
    assert webhooks.validate_url(" https://hooks.slack.com/services/T0/B0/x ") == "https://hooks.slack.com/services/T0/B0/x"


def test_only_owners_manage_webhooks(client, people):
    for who, status in (("editor", 403), ("viewer", 403), ("outsider", 404)):
        client.force_login(getattr(people, who))
        assert client.post(f"/w/{people.workspace.slug}/webhooks/", {"url": "https://example.org/h"}).status_code == status
    client.force_login(people.owner)
    assert client.post(f"/w/{people.workspace.slug}/webhooks/", {"url": "file:///etc/passwd"}).status_code == 400
    assert client.post(f"/w/{people.workspace.slug}/webhooks/", {"url": "https://example.org/h"}).status_code == 302
    assert Webhook.objects.get().url == "https://example.org/h"


def test_dispatch_queues_a_delivery_only_after_the_transaction_commits(people, django_capture_on_commit_callbacks):
    Webhook.objects.create(workspace=people.workspace, url="https://example.org/h")
    Webhook.objects.create(workspace=people.workspace, url="https://example.org/off", active=False)
    with mock.patch.object(deliver_webhook, "apply_async") as apply_async:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            webhooks.dispatch(people.workspace, "run.succeeded", {"run": 3, "accuracy": 0.97})
        assert apply_async.call_count == 0 and len(callbacks) == 1
        callbacks[0]()
    delivery = WebhookDelivery.objects.get()
    apply_async.assert_called_once_with(args=[delivery.pk], queue="default")
    assert delivery.payload["event"] == "run.succeeded" and delivery.payload["data"]["accuracy"] == 0.97
    assert delivery.payload["text"] == "[Lab] run.succeeded"


def test_dispatch_without_webhooks_does_nothing(people):
    assert webhooks.dispatch(people.workspace, "run.failed", {}) == []


def test_a_delivery_posts_signed_json_to_the_receiver(people, receiver):
    local = receiver(200)
    hook = Webhook.objects.create(workspace=people.workspace, url=local.url)
    [delivery] = webhooks.dispatch(people.workspace, "run.failed", {"run": 5, "reason": "NaN loss"})
    assert deliver_webhook.run(delivery.pk) == "delivered"
    headers, body = local.requests[0]
    assert json.loads(body)["data"] == {"run": 5, "reason": "NaN loss"}
    assert headers["Content-Type"] == "application/json" and headers["X-Cupola-Event"] == "run.failed"
    expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Cupola-Signature"] == expected
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)


def test_a_failing_receiver_is_retried_with_growing_pauses_up_to_five_tries(people, receiver):
    local = receiver(500)
    Webhook.objects.create(workspace=people.workspace, url=local.url)
    [delivery] = webhooks.dispatch(people.workspace, "ping", {})
    countdowns = []
    with mock.patch.object(deliver_webhook, "retry", side_effect=lambda **kw: Retry()) as retry:
        for _ in range(webhooks.MAX_ATTEMPTS - 1):
            with pytest.raises(Retry):
                deliver_webhook.run(delivery.pk)
            countdowns.append(retry.call_args.kwargs["countdown"])
        assert deliver_webhook.run(delivery.pk) == "failed"
    assert countdowns == [30, 60, 120, 240]
    assert retry.call_args.kwargs["queue"] == "default"
    assert len(local.requests) == webhooks.MAX_ATTEMPTS
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("failed", 5, 500)
    assert deliver_webhook.run(delivery.pk) == "skipped"


def test_a_receiver_that_recovers_ends_the_retries(people, receiver):
    local = receiver(503, 200)
    Webhook.objects.create(workspace=people.workspace, url=local.url)
    [delivery] = webhooks.dispatch(people.workspace, "ping", {})
    assert webhooks.deliver(delivery) is False
    assert webhooks.deliver(delivery) is True
    assert delivery.status == "succeeded" and delivery.attempts == 2 and delivery.error == ""


def test_redirects_are_not_followed(people, receiver):
    local = receiver(302)
    Webhook.objects.create(workspace=people.workspace, url=local.url)
    [delivery] = webhooks.dispatch(people.workspace, "ping", {})
    assert webhooks.deliver(delivery) is False
    assert delivery.response_code == 302 and len(local.requests) == 1


def test_an_unreachable_receiver_is_logged_as_an_error(people):
    Webhook.objects.create(workspace=people.workspace, url="http://127.0.0.1:9/nothing")
    [delivery] = webhooks.dispatch(people.workspace, "ping", {})
    assert webhooks.deliver(delivery) is False
    assert delivery.response_code is None and delivery.error


def test_the_test_button_sends_a_ping_and_the_log_shows_it(client, people, receiver, django_capture_on_commit_callbacks):
    local = receiver(200)
    hook = services.webhook_create(workspace=people.workspace, actor=people.owner, url=local.url)
    client.force_login(people.owner)
    with (mock.patch.object(deliver_webhook, "apply_async", side_effect=lambda args, queue: deliver_webhook.run(*args)),
          django_capture_on_commit_callbacks(execute=True)):
            assert client.post(f"/w/{people.workspace.slug}/webhooks/{hook.pk}/test/").status_code == 302
    assert json.loads(local.requests[0][1])["event"] == "ping"
    page = client.get(f"/w/{people.workspace.slug}/webhooks/")
    assert b"Succeeded" in page.content and b"HTTP 200" in page.content


def test_member_changes_are_sent_to_webhooks(people, django_capture_on_commit_callbacks):
    Webhook.objects.create(workspace=people.workspace, url="https://example.org/h")
    with mock.patch.object(deliver_webhook, "apply_async"), django_capture_on_commit_callbacks(execute=True):
        services.member_add(workspace=people.workspace, actor=people.owner, username="oscar", role="viewer")
    assert WebhookDelivery.objects.get().event == "member.added"
