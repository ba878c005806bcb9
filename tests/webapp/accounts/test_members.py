from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.accounts import services
from webapp.accounts.models import Activity, Invitation, Membership, Notification, Role


def _membership(people, user):
    return Membership.objects.get(workspace=people.workspace, user=user)


def test_every_member_sees_the_members_but_only_owners_get_the_controls(client, people):
    client.force_login(people.viewer)
    page = client.get(f"/w/{people.workspace.slug}/members/")
    assert page.status_code == 200
    assert b"eddie" in page.content and b"Add member" not in page.content
    client.force_login(people.owner)
    assert b"Add member" in client.get(f"/w/{people.workspace.slug}/members/").content


def test_owners_add_a_member_by_username_and_the_member_is_told(client, people):
    client.force_login(people.owner)
    response = client.post(f"/w/{people.workspace.slug}/members/add/", {"username": "OSCAR", "role": "editor"})
    assert response.status_code == 302
    assert _membership(people, people.outsider).role == Role.EDITOR
    assert Notification.objects.filter(user=people.outsider, workspace=people.workspace).exists()
    assert Activity.objects.filter(workspace=people.workspace, verb="added member").exists()


def test_adding_an_unknown_user_says_so(client, people):
    client.force_login(people.owner)
    response = client.post(f"/w/{people.workspace.slug}/members/add/", {"username": "nobody", "role": "viewer"})
    assert response.status_code == 400
    assert "There is no user called “nobody”".encode() in response.content


@pytest.mark.parametrize("who,status", [("editor", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_manage_members(client, people, who, status):
    client.force_login(getattr(people, who))
    target = _membership(people, people.viewer)
    slug = people.workspace.slug
    assert client.post(f"/w/{slug}/members/add/", {"username": "oscar", "role": "owner"}).status_code == status
    assert client.post(f"/w/{slug}/members/{target.pk}/role/", {"role": "owner"}).status_code == status
    assert client.post(f"/w/{slug}/members/{target.pk}/remove/").status_code == status
    assert _membership(people, people.viewer).role == Role.VIEWER
    assert not Membership.objects.filter(workspace=people.workspace, user=people.outsider).exists()


def test_a_role_change_takes_effect_at_once(client, people, shared_boards):
    viewer_client = client
    viewer_client.force_login(people.viewer)
    data = {"target_type": "comparison", "target_id": "7"}
    assert viewer_client.post(f"/w/{people.workspace.slug}/shares/", data).status_code == 403
    services.member_change_role(membership=_membership(people, people.viewer), actor=people.owner, role=Role.EDITOR)
    assert viewer_client.post(f"/w/{people.workspace.slug}/shares/", data).status_code == 302
    services.member_remove(membership=_membership(people, people.viewer), actor=people.owner)
    assert viewer_client.get(f"/w/{people.workspace.slug}/").status_code == 404


def test_the_last_owner_cannot_be_demoted_removed_or_leave(client, people):
    owner = _membership(people, people.owner)
    with pytest.raises(services.ServiceError):
        services.member_change_role(membership=owner, actor=people.owner, role=Role.EDITOR)
    with pytest.raises(services.ServiceError):
        services.member_remove(membership=owner, actor=people.owner)
    client.force_login(people.owner)
    response = client.post(f"/w/{people.workspace.slug}/leave/", follow=True)
    assert "needs at least one owner" in response.content.decode()
    assert _membership(people, people.owner).role == Role.OWNER


def test_an_owner_can_step_down_once_there_is_another_owner(client, people):
    services.member_change_role(membership=_membership(people, people.editor), actor=people.owner, role=Role.OWNER)
    client.force_login(people.owner)
    owner = _membership(people, people.owner)
    assert client.post(f"/w/{people.workspace.slug}/members/{owner.pk}/role/", {"role": "viewer"}).status_code == 302
    assert _membership(people, people.owner).role == Role.VIEWER


def test_a_member_can_leave_a_workspace(client, people):
    client.force_login(people.viewer)
    response = client.post(f"/w/{people.workspace.slug}/leave/")
    assert response.status_code == 302
    assert not Membership.objects.filter(workspace=people.workspace, user=people.viewer).exists()
    assert Activity.objects.filter(workspace=people.workspace, verb="left", actor=people.viewer).exists()


def test_html_in_names_is_escaped_on_the_team_pages(client, people, django_user_model):
    people.workspace.name = "<script>alert(1)</script>"
    people.workspace.save()
    django_user_model.objects.create_user("<img src=x onerror=alert(2)>", password="pw-x-12345678")
    services.member_add(workspace=people.workspace, actor=people.owner, username="<img src=x onerror=alert(2)>",
                        role=Role.VIEWER)
    client.force_login(people.owner)
    for path in ("members/", "activity/"):
        body = client.get(f"/w/{people.workspace.slug}/{path}").content.decode()
        assert "<script>alert(1)" not in body and "<img src=x" not in body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img src=x" not in client.get("/accounts/users/").content.decode()


# Invitations -----------------------------------------------------------------------------

@pytest.fixture
def invitation(people):
    return services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.EDITOR, days=7,
                                      multi_use=False)


def test_owners_create_invitation_links_that_show_on_the_members_page(client, people):
    client.force_login(people.owner)
    response = client.post(f"/w/{people.workspace.slug}/invitations/", {"role": "viewer", "days": "1"})
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert timedelta(hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=1)
    assert f"/invite/{invitation.token}/".encode() in client.get(f"/w/{people.workspace.slug}/members/").content
    client.force_login(people.editor)
    assert client.post(f"/w/{people.workspace.slug}/invitations/", {"role": "owner", "days": "1"}).status_code == 403


def test_an_invitation_link_adds_a_logged_in_user_with_its_role(client, people, invitation):
    client.force_login(people.outsider)
    assert b"Join as oscar" in client.get(f"/invite/{invitation.token}/").content
    response = client.post(f"/invite/{invitation.token}/")
    assert response.headers["Location"] == f"/w/{people.workspace.slug}/"
    assert _membership(people, people.outsider).role == Role.EDITOR


def test_a_single_use_invitation_works_once(client, people, invitation, django_user_model):
    client.force_login(people.outsider)
    client.post(f"/invite/{invitation.token}/")
    client.force_login(django_user_model.objects.create_user("newcomer", password="pw-new-12345"))
    assert client.get(f"/invite/{invitation.token}/").status_code == 404
    assert client.post(f"/invite/{invitation.token}/").status_code == 404


def test_a_multi_use_invitation_works_for_many(client, people, django_user_model):
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.VIEWER,
                                            days=1, multi_use=True)
    for name in ("ann", "ben", "cat"):
        client.force_login(django_user_model.objects.create_user(name, password="pw-12345678x"))
        assert client.post(f"/invite/{invitation.token}/").status_code == 302
    assert Invitation.objects.get().uses == 3


def test_an_expired_or_revoked_invitation_answers_404(client, people, invitation):
    client.force_login(people.outsider)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/invite/{invitation.token}/").status_code == 404
    assert client.post(f"/invite/{invitation.token}/").status_code == 404
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() + timedelta(days=1))
    services.invitation_revoke(invitation=invitation, actor=people.owner)
    assert client.post(f"/invite/{invitation.token}/").status_code == 404
    assert not Membership.objects.filter(workspace=people.workspace, user=people.outsider).exists()


def test_an_invitation_never_demotes_an_existing_member(client, people):
    invitation = services.invitation_create(workspace=people.workspace, actor=people.owner, role=Role.VIEWER,
                                            days=1, multi_use=False)
    client.force_login(people.editor)
    client.post(f"/invite/{invitation.token}/")
    assert _membership(people, people.editor).role == Role.EDITOR
