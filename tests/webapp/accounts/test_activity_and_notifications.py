from webapp.accounts import activity, services
from webapp.accounts.models import Activity, Role


def test_owners_read_the_activity_feed_and_others_cannot(client, people):
    services.member_add(workspace=people.workspace, actor=people.owner, username="oscar", role=Role.VIEWER)
    client.force_login(people.owner)
    page = client.get(f"/w/{people.workspace.slug}/activity/")
    assert page.status_code == 200
    assert b"added member" in page.content and b"oscar (viewer)" in page.content
    client.force_login(people.editor)
    assert client.get(f"/w/{people.workspace.slug}/activity/").status_code == 403
    client.force_login(people.outsider)
    assert client.get(f"/w/{people.other_workspace.slug}/activity/").status_code == 200
    assert b"added member" not in client.get(f"/w/{people.other_workspace.slug}/activity/").content


def test_the_activity_feed_is_paged(client, people):
    Activity.objects.bulk_create([Activity(workspace=people.workspace, actor=people.editor, verb="uploaded",
                                           target_type="dataset", target_label=f"set {i}") for i in range(120)])
    client.force_login(people.owner)
    first = client.get(f"/w/{people.workspace.slug}/activity/")
    assert first.context["page"].paginator.num_pages == 3
    assert client.get(f"/w/{people.workspace.slug}/activity/?page=3").status_code == 200
    assert client.get(f"/w/{people.workspace.slug}/activity/?page=oops").status_code == 200


def test_notifications_show_an_unread_count_in_the_header_until_read(client, people):
    note = activity.notify(user=people.editor, workspace=people.workspace, message="Run “<b>mnist</b>” finished",
                           link=f"/w/{people.workspace.slug}/", level="success")
    activity.notify(user=people.editor, message="Run 2 failed", level="error")
    activity.notify(user=people.viewer, message="not for eddie")
    client.force_login(people.editor)
    page = client.get("/notifications/")
    assert page.context["unread_notifications"] == 2
    assert b'data-testid="unread-count">2<' in page.content
    assert b"Run \xe2\x80\x9c&lt;b&gt;mnist&lt;/b&gt;\xe2\x80\x9d finished" in page.content
    assert b"not for eddie" not in page.content
    response = client.post(f"/notifications/{note.pk}/read/")
    assert response.headers["Location"] == f"/w/{people.workspace.slug}/"
    assert client.get("/notifications/").context["unread_notifications"] == 1
    client.post("/notifications/read/")
    assert b"unread-count" not in client.get("/notifications/").content


def test_a_notification_belongs_to_its_user_only(client, people):
    note = activity.notify(user=people.viewer, message="mine")
    client.force_login(people.editor)
    assert client.post(f"/notifications/{note.pk}/read/").status_code == 404
    note.refresh_from_db()
    assert note.read_at is None


def test_a_notification_never_redirects_off_site(client, people):
    note = activity.notify(user=people.viewer, message="phish", link="//evil.example/")
    client.force_login(people.viewer)
    assert client.post(f"/notifications/{note.pk}/read/").headers["Location"] == "/notifications/"


def test_the_users_page_lists_the_people_in_workspaces_i_own(client, people):
    client.force_login(people.owner)
    page = client.get("/accounts/users/")
    assert page.status_code == 200
    names = [p.username for p in page.context["people"]]
    assert names == ["eddie", "olga", "vera"]
    client.force_login(people.viewer)
    assert client.get("/accounts/users/").status_code == 403
