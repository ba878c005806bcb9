import pytest

from webapp.accounts import services
from webapp.accounts.models import Activity, ApiToken, Membership, Role, ShareLink

from .conftest import api_headers


def test_a_token_is_shown_once_on_creation_and_then_only_its_prefix(client, people):
    client.force_login(people.editor)
    response = client.post("/accounts/tokens/", {"name": "laptop"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=people.editor)
    key = response.context["new_key"]["key"]
    assert key.startswith("cup_") and key.encode() in response.content
    assert ApiToken.authenticate(key) == people.editor
    page = client.get("/accounts/")
    assert key.encode() not in page.content and token.prefix.encode() in page.content
    assert Activity.objects.filter(workspace=people.workspace, verb="created API token", actor=people.editor).exists()


def test_a_user_revokes_only_their_own_tokens(client, people):
    token, key = ApiToken.issue(user=people.owner, name="ci")
    client.force_login(people.outsider)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    client.force_login(people.owner)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 302
    assert ApiToken.authenticate(key) is None


def test_the_api_accepts_a_valid_token_and_refuses_a_revoked_one(client, people):
    token, key = ApiToken.issue(user=people.viewer, name="script")
    response = client.get("/api/v1/workspaces", **api_headers(key))
    assert response.status_code == 200
    assert response.json() == [{"slug": people.workspace.slug, "name": "Lab", "role": "viewer"}]
    assert client.get("/api/v1/workspaces", HTTP_X_API_TOKEN=key).status_code == 200
    services.token_revoke(token=token)
    assert client.get("/api/v1/workspaces", **api_headers(key)).status_code == 401
    assert client.get("/api/v1/workspaces").status_code == 401


def test_the_api_lists_and_revokes_tokens(client, people):
    _, key = ApiToken.issue(user=people.editor, name="one")
    other, _ = ApiToken.issue(user=people.editor, name="two")
    outsiders, _ = ApiToken.issue(user=people.outsider, name="theirs")
    listed = client.get("/api/v1/tokens", **api_headers(key)).json()
    assert {t["name"] for t in listed} == {"one", "two"} and "key_hash" not in listed[0]
    assert client.delete(f"/api/v1/tokens/{outsiders.pk}", **api_headers(key)).status_code == 404
    assert client.delete(f"/api/v1/tokens/{other.pk}", **api_headers(key)).json()["revoked_at"]


@pytest.mark.parametrize("who,status", [("owner", 201), ("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_the_api_adds_members_for_owners_only(client, people, django_user_model, who, status):
    django_user_model.objects.create_user("newbie", password="pw-x-12345678")
    _, key = ApiToken.issue(user=getattr(people, who), name="t")
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/members", {"username": "newbie",
                           "role": "editor"}, content_type="application/json", **api_headers(key))
    assert response.status_code == status
    assert Membership.objects.filter(user__username="newbie").exists() == (status == 201)


def test_the_api_role_changes_and_removals_keep_the_last_owner(client, people):
    _, key = ApiToken.issue(user=people.owner, name="t")
    base = f"/api/v1/workspaces/{people.workspace.slug}/members"
    members = {m["username"]: m for m in client.get(base, **api_headers(key)).json()}
    assert members["vera"]["role"] == "viewer"
    response = client.patch(f"{base}/{members['vera']['id']}", {"role": "editor"}, content_type="application/json",
                            **api_headers(key))
    assert response.json()["role"] == "editor"
    response = client.delete(f"{base}/{members['olga']['id']}", **api_headers(key))
    assert response.status_code == 400 and "at least one owner" in response.json()["detail"]
    assert client.delete(f"{base}/{members['vera']['id']}", **api_headers(key)).status_code == 204


def test_a_role_change_reaches_the_api_at_once(client, people):
    _, key = ApiToken.issue(user=people.viewer, name="t")
    url = f"/api/v1/workspaces/{people.workspace.slug}/share-links"
    assert client.get(url, **api_headers(key)).status_code == 403
    membership = Membership.objects.get(workspace=people.workspace, user=people.viewer)
    services.member_change_role(membership=membership, actor=people.owner, role=Role.EDITOR)
    assert client.get(url, **api_headers(key)).status_code == 200


def test_the_api_creates_lists_and_revokes_share_links(client, people, shared_boards):
    _, key = ApiToken.issue(user=people.editor, name="t")
    url = f"/api/v1/workspaces/{people.workspace.slug}/share-links"
    created = client.post(url, {"target_type": "comparison", "target_id": "7", "days": 3},
                          content_type="application/json", **api_headers(key))
    assert created.status_code == 201
    body = created.json()
    assert body["live"] and body["url"].startswith("http://testserver/s/")
    assert client.get(body["url"]).status_code == 200
    assert [link["id"] for link in client.get(url, **api_headers(key)).json()] == [body["id"]]
    missing = client.post(url, {"target_type": "comparison", "target_id": "999"}, content_type="application/json",
                          **api_headers(key))
    assert missing.status_code == 400
    revoked = client.delete(f"{url}/{body['id']}", **api_headers(key)).json()
    assert revoked["live"] is False and client.get(body["url"]).status_code == 404
    assert ShareLink.objects.get().revoked_at is not None


def test_a_session_post_to_the_api_needs_the_csrf_token(people):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.owner)
    response = client.post(f"/api/v1/workspaces/{people.workspace.slug}/members", {"username": "oscar"},
                           content_type="application/json")
    assert response.status_code in (401, 403)
    assert not Membership.objects.filter(workspace=people.workspace, user=people.outsider).exists()
