from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.accounts import services, sharing
from webapp.accounts.models import Activity, ShareLink


@pytest.fixture
def link(people, shared_boards):
    return services.share_link_create(workspace=people.workspace, actor=people.editor, target_type="comparison",
                                      target_id="7")


def test_a_share_link_token_is_long_and_unguessable(link):
    assert len(link.token) >= 43
    assert link.token != services.share_link_create(
        workspace=link.workspace, actor=link.created_by, target_type="comparison", target_id="7").token


def test_a_valid_link_shows_the_read_only_page_without_a_login(client, link):
    response = client.get(f"/s/{link.token}/")
    assert response.status_code == 200
    assert response.context["shared"] is True
    assert response.context["share_link"] == link
    assert b"Read-only view" in response.content
    assert response["Cache-Control"] == "private, no-store"


def test_the_shared_page_does_not_show_member_data(client, link, people):
    client.force_login(people.outsider)
    body = client.get(f"/s/{link.token}/").content.decode()
    for private in ("members-only note", "eddie", "vera", "olga", "/members/", "Team"):
        assert private not in body


def test_a_shared_page_polls_its_data_through_the_token(client, link):
    response = client.get(f"/s/{link.token}/data/metrics/")
    assert response.status_code == 200
    assert response.json()["loss"] == [0.9, 0.5, 0.3]
    assert client.get(f"/s/{link.token}/data/nothing-here/").status_code == 404


@pytest.mark.parametrize("state", ["revoked", "expired", "unknown", "object gone"])
def test_revoked_expired_and_unknown_links_all_answer_404(client, link, shared_boards, state):
    token = link.token
    if state == "revoked":
        services.share_link_revoke(link=link, actor=link.created_by)
    elif state == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "unknown":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    else:
        shared_boards.clear()
    assert client.get(f"/s/{token}/").status_code == 404
    assert client.get(f"/s/{token}/data/metrics/").status_code == 404
    assert sharing.resolve(token) is None


def test_a_link_with_a_future_expiry_works_until_then(client, people, shared_boards):
    link = services.share_link_create(workspace=people.workspace, actor=people.owner, target_type="comparison",
                                      target_id="7", days=7)
    assert link.expires_at > timezone.now() + timedelta(days=6)
    assert client.get(f"/s/{link.token}/").status_code == 200


def test_resolve_checks_the_target_type_for_endpoints_that_take_a_share_token(link):
    assert sharing.resolve(link.token, "comparison").obj.name == "Board <b>seven</b>"
    assert sharing.resolve(link.token, "run") is None


def test_only_objects_of_the_workspace_can_be_shared(people, shared_boards):
    with pytest.raises(services.ServiceError):
        services.share_link_create(workspace=people.other_workspace, actor=people.outsider,
                                   target_type="comparison", target_id="7")
    with pytest.raises(services.ServiceError):
        services.share_link_create(workspace=people.workspace, actor=people.owner, target_type="comparison",
                                   target_id="8")


def test_editors_create_links_from_the_list_page_and_it_is_recorded(client, people, shared_boards):
    client.force_login(people.editor)
    response = client.post(f"/w/{people.workspace.slug}/shares/", {"target_type": "comparison", "target_id": "7"})
    assert response.status_code == 302
    link = ShareLink.objects.get()
    assert link.created_by == people.editor and link.expires_at is None
    page = client.get(response.headers["Location"])
    assert link.token.encode() in page.content
    assert b"Board &lt;b&gt;seven&lt;/b&gt;" in page.content
    assert Activity.objects.filter(workspace=people.workspace, verb="shared", actor=people.editor).exists()


def test_viewers_and_outsiders_cannot_create_links(client, people, shared_boards):
    data = {"target_type": "comparison", "target_id": "7"}
    client.force_login(people.viewer)
    assert client.post(f"/w/{people.workspace.slug}/shares/", data).status_code == 403
    client.force_login(people.outsider)
    assert client.post(f"/w/{people.workspace.slug}/shares/", data).status_code == 404
    assert not ShareLink.objects.exists()


def test_editors_revoke_their_own_links_and_owners_revoke_any(client, people, shared_boards):
    mine = services.share_link_create(workspace=people.workspace, actor=people.editor, target_type="comparison",
                                      target_id="7")
    owners = services.share_link_create(workspace=people.workspace, actor=people.owner, target_type="comparison",
                                        target_id="7")
    client.force_login(people.editor)
    assert client.post(f"/w/{people.workspace.slug}/shares/{owners.pk}/revoke/").status_code == 403
    assert client.post(f"/w/{people.workspace.slug}/shares/{mine.pk}/revoke/").status_code == 302
    client.force_login(people.owner)
    assert client.post(f"/w/{people.workspace.slug}/shares/{owners.pk}/revoke/").status_code == 302
    assert ShareLink.objects.filter(revoked_at__isnull=False).count() == 2
    assert client.get(f"/s/{mine.token}/").status_code == 404


def test_a_link_cannot_be_revoked_through_another_workspace(client, people, shared_boards):
    link = services.share_link_create(workspace=people.workspace, actor=people.owner, target_type="comparison",
                                      target_id="7")
    client.force_login(people.outsider)
    assert client.post(f"/w/{people.other_workspace.slug}/shares/{link.pk}/revoke/").status_code == 404
    assert ShareLink.objects.get().revoked_at is None
