"""When the broker (Redis) is down, every workspace page says so in its health banner, and stops
saying so once it is back — in a real browser, against the stack's real Redis."""

from __future__ import annotations

import pytest
from django.conf import settings

from webapp.core import runtime

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_the_pages_show_a_broker_outage_in_the_health_banner(live_server, stack, transactional_db, pages):
    if stack.redis is None:
        pytest.skip("Redis comes from REDIS_URL here; this test stops the embedded one")
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import workspace_create

    user = get_user_model().objects.create_user("linus", password="a-Long-e2e-pass-42")
    workspace = workspace_create(name="Outage lab", owner=user)
    watched = pages()
    page = watched.new()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("linus")
    page.get_by_label("Password").fill("a-Long-e2e-pass-42")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/w/{workspace.slug}/")
    page.wait_for_timeout(1500)  # the banner's first health check
    assert page.locator("#health-banner").is_hidden()

    stack.redis.stop()
    try:
        page.goto(f"{live_server.url}/w/{workspace.slug}/datasets/")
        banner = page.locator("#health-banner")
        banner.wait_for(state="visible", timeout=15_000)
        text = banner.text_content()
        assert "broker" in text.lower() or "redis" in text.lower(), text
        watched.shot(page, "broker-down-banner")
    finally:
        if not stack.redis.running():
            stack.redis.start()
            runtime.wait_for_socket(settings.REDIS_SOCKET, stack.redis)
    stack.wait_for_workers(1, timeout=30)
    page.reload()
    page.wait_for_timeout(1500)
    assert page.locator("#health-banner").is_hidden(), page.locator("#health-banner").text_content()
