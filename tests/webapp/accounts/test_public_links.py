"""CUPOLA_BASE_URL: the links that leave the page start with the server's public address."""
import re

import pytest
from django.core import mail
from django.test import override_settings

from webapp import env
from webapp.accounts import services, webhooks
from webapp.accounts.models import Role, ShareLink, Webhook, WebhookDelivery

PUBLIC = "https://cupola.example.org"


@pytest.mark.parametrize("raw, expected", [("", ""), ("  ", ""), ("https://cupola.example.org/", PUBLIC),
                                           ("http://10.0.0.5:8080", "http://10.0.0.5:8080")])
def test_it_reads_a_base_url(raw, expected):
    assert env.parse_base_url(raw) == expected


@pytest.mark.parametrize("raw, message", [
    ("cupola.example.org", "must be http:// or https://"), ("ftp://cupola.example.org", "must be http:// or https://"),
    ("https://", "must be http:// or https://"), ("https://cupola.example.org/app", "scheme and host alone"),
    ("https://me:pw@cupola.example.org", "scheme and host alone"), ("https://cupola.example.org:http", "not a valid URL"),
])
def test_it_rejects_a_base_url_with_a_message_naming_it(raw, message):
    with pytest.raises(env.ConfigError, match=f"^CUPOLA_BASE_URL .*{re.escape(message)}"):
        env.parse_base_url(raw)


@pytest.mark.parametrize("base", ["", PUBLIC])
def test_a_webhook_gets_the_full_link_of_the_page_when_the_public_address_is_set(people, base):
    Webhook.objects.create(workspace=people.workspace, url="https://example.org/h")
    with override_settings(BASE_URL=base):
        webhooks.dispatch(people.workspace, "run.succeeded", {"run": 3, "path": "/w/lab/runs/3/"}, text="[Lab] run 3 done")
    data, text = WebhookDelivery.objects.get().payload["data"], WebhookDelivery.objects.get().payload["text"]
    if base:
        assert data["url"] == f"{PUBLIC}/w/lab/runs/3/" and text == f"[Lab] run 3 done {PUBLIC}/w/lab/runs/3/"
    else:
        assert "url" not in data and text == "[Lab] run 3 done"


@override_settings(BASE_URL=PUBLIC)
def test_the_reset_mail_and_copied_links_use_the_public_address_not_the_requests_host(client, people, shared_boards):
    people.viewer.email = "vera@example.org"
    people.viewer.save()
    assert client.post("/accounts/password-reset/", {"email": "vera@example.org"}).status_code == 302
    assert re.search(rf"^{re.escape(PUBLIC)}/accounts/reset/\S+$", mail.outbox[0].body, re.MULTILINE)

    client.force_login(people.owner)
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.VIEWER, days=1,
                                              multi_use=False)
    members = client.get(f"/w/{people.workspace.slug}/members/").content.decode()
    assert f"{PUBLIC}/invite/{invitation.token}/" in members and "http://testserver/invite/" not in members

    client.post(f"/w/{people.workspace.slug}/shares/", {"target_type": "comparison", "target_id": "7"})
    link = ShareLink.objects.get()
    shares = client.get(f"/w/{people.workspace.slug}/shares/").content.decode()
    assert f"{PUBLIC}/s/{link.token}/" in shares


def test_without_a_public_address_copied_links_use_the_requests_host(client, people):
    client.force_login(people.owner)
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.VIEWER, days=1,
                                              multi_use=False)
    assert f"http://testserver/invite/{invitation.token}/" in client.get(f"/w/{people.workspace.slug}/members/").content.decode()
