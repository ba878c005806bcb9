import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from webapp.accounts import ratelimit, services
from webapp.accounts.models import LoginFailure, Membership, Role


def _login(client, username, password):
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_a_user_logs_in_and_out(client, people):
    response = _login(client, "olga", "pw-olga-123")
    assert response.status_code == 302
    assert client.get("/accounts/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/accounts/").status_code == 302


def test_log_in_is_refused_after_five_failures_with_a_clear_message(client, people):
    for _ in range(ratelimit.MAX_FAILURES):
        assert _login(client, "olga", "wrong").status_code == 200
    response = _login(client, "olga", "pw-olga-123")  # even the right password waits
    assert response.status_code == 200
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_rate_limit_is_per_username_and_address_and_ends_after_the_window(client, people):
    for _ in range(ratelimit.MAX_FAILURES):
        _login(client, "OLGA", "wrong")  # user names count case-insensitively
    assert _login(client, "vera", "pw-vera-123").status_code == 302  # another user from the same address
    client.post("/accounts/logout/")
    other = client.__class__(REMOTE_ADDR="10.0.0.9")
    assert _login(other, "olga", "pw-olga-123").status_code == 302  # same user from another address
    LoginFailure.objects.update(created_at=timezone.now() - ratelimit.WINDOW - timedelta(seconds=1))
    assert _login(client, "olga", "pw-olga-123").status_code == 302


def test_a_successful_log_in_clears_earlier_failures(client, people):
    for _ in range(ratelimit.MAX_FAILURES - 1):
        _login(client, "olga", "wrong")
    assert _login(client, "olga", "pw-olga-123").status_code == 302
    assert not LoginFailure.objects.filter(username="olga").exists()


def test_a_user_changes_their_password_with_the_validators(client, people):
    client.force_login(people.owner)
    weak = client.post("/accounts/password/", {"old_password": "pw-olga-123", "new_password1": "123",
                                               "new_password2": "123"})
    assert weak.status_code == 200 and b"too short" in weak.content
    response = client.post("/accounts/password/", {"old_password": "pw-olga-123",
                                                   "new_password1": "a-brand-new-passphrase-7",
                                                   "new_password2": "a-brand-new-passphrase-7"})
    assert response.status_code == 302
    people.owner.refresh_from_db()
    assert people.owner.check_password("a-brand-new-passphrase-7")


def test_password_reset_sends_a_link_that_sets_a_new_password(client, people):
    people.viewer.email = "vera@example.org"
    people.viewer.save()
    assert client.post("/accounts/password-reset/", {"email": "vera@example.org"}).status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    response = client.post(form.redirect_chain[-1][0], {"new_password1": "vera-new-passphrase-5",
                                                         "new_password2": "vera-new-passphrase-5"})
    assert response.status_code == 302
    people.viewer.refresh_from_db()
    assert people.viewer.check_password("vera-new-passphrase-5")


def test_the_site_admin_copies_a_reset_link_and_no_one_else_can(client, people, django_user_model):
    admin = django_user_model.objects.create_user("root", password="pw-root-12345", is_staff=True)
    client.force_login(people.owner)
    assert client.get("/accounts/reset-links/").status_code == 403
    assert client.post("/accounts/reset-links/", {"username": "vera"}).status_code == 403
    client.force_login(admin)
    response = client.post("/accounts/reset-links/", {"username": "vera"})
    assert response.status_code == 200
    url = re.search(r'value="(http://testserver/accounts/reset/[^"]+)"', response.content.decode()).group(1)
    client.logout()
    assert b"Choose a new password" in client.get(url, follow=True).content


# Sign-up modes ---------------------------------------------------------------------------

def _signup(client, username="newbie", query=""):
    return client.post(f"/accounts/signup/{query}", {"username": username, "password": "a-long-passphrase-9"})


@pytest.mark.django_db
def test_closed_sign_up_refuses_everyone(client, settings):
    settings.SIGNUP = "closed"
    assert client.get("/accounts/signup/").status_code == 403
    assert _signup(client).status_code == 403


def test_invite_only_sign_up_needs_a_valid_invitation(client, people, settings):
    settings.SIGNUP = "invite"
    page = client.get("/accounts/signup/")
    assert page.status_code == 403 and b"by invitation only" in page.content
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.VIEWER,
                                            days=1, multi_use=False)
    assert client.get(f"/accounts/signup/?invite={invitation.token}").status_code == 200
    response = _signup(client, query=f"?invite={invitation.token}")
    assert response.headers["Location"] == f"/w/{people.workspace.slug}/"
    assert Membership.objects.get(user__username="newbie").role == Role.VIEWER
    client.logout()
    assert _signup(client, "second", query=f"?invite={invitation.token}").status_code == 403  # used up


def test_open_sign_up_with_an_invitation_joins_the_workspace(client, people):
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.EDITOR,
                                            days=1, multi_use=True)
    _signup(client, query=f"?invite={invitation.token}")
    assert Membership.objects.get(user__username="newbie").workspace == people.workspace
