import pytest
from django.contrib.auth import get_user_model

from webapp.accounts.models import ApiToken, Membership, Role


@pytest.mark.django_db
def test_the_first_account_to_sign_up_becomes_the_administrator(client):
    response = client.post("/accounts/signup/", {"username": "ada", "password": "a-long-passphrase-9"})
    assert response.status_code == 302
    assert get_user_model().objects.get(username="ada").is_superuser
    client.post("/accounts/logout/")
    client.post("/accounts/signup/", {"username": "bob", "password": "another-passphrase-9"})
    assert not get_user_model().objects.get(username="bob").is_superuser


@pytest.mark.django_db
def test_sign_up_rejects_a_weak_password_with_a_message(client):
    response = client.post("/accounts/signup/", {"username": "ada", "password": "123"})
    assert response.status_code == 200
    assert b"This password is too short" in response.content
    assert not get_user_model().objects.exists()


@pytest.mark.django_db
def test_creating_a_workspace_makes_its_creator_the_owner(client, django_user_model):
    user = django_user_model.objects.create_user("ada", password="pw-ada-12345")
    client.force_login(user)
    response = client.post("/workspaces/new/", {"name": "Vision <team>"})
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert response.headers["Location"] == f"/w/{membership.workspace.slug}/"
    page = client.get(response.headers["Location"])
    assert b"Vision &lt;team&gt;" in page.content


def test_outsiders_get_404_for_a_workspace(people, client):
    client.force_login(people.outsider)
    assert client.get(f"/w/{people.workspace.slug}/").status_code == 404
    assert client.get("/w/no-such-workspace/").status_code == 404
    client.force_login(people.viewer)
    assert client.get(f"/w/{people.workspace.slug}/").status_code == 200


def test_api_tokens_authenticate_until_revoked(people):
    from django.utils import timezone

    token, key = ApiToken.issue(user=people.owner, name="laptop")
    assert ApiToken.authenticate(key) == people.owner
    assert ApiToken.authenticate(key + "x") is None
    token.revoked_at = timezone.now()
    token.save()
    assert ApiToken.authenticate(key) is None
