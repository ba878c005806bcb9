"""Fixtures shared by the whole suite: the three people, and the real runtime stack."""

from __future__ import annotations

import pytest


@pytest.fixture
def people(db):
    """Owner, editor, viewer of one workspace, and an outsider with a workspace of their own."""
    from django.contrib.auth import get_user_model

    from webapp.accounts.models import Membership, Role
    from webapp.accounts.services import workspace_create

    User = get_user_model()
    owner = User.objects.create_user("olga", password="pw-olga-123")
    editor = User.objects.create_user("eddie", password="pw-eddie-123")
    viewer = User.objects.create_user("vera", password="pw-vera-123")
    outsider = User.objects.create_user("oscar", password="pw-oscar-123")
    workspace = workspace_create(name="Lab", owner=owner)
    Membership.objects.create(workspace=workspace, user=editor, role=Role.EDITOR)
    Membership.objects.create(workspace=workspace, user=viewer, role=Role.VIEWER)
    other = workspace_create(name="Elsewhere", owner=outsider)

    class People:
        pass

    p = People()
    p.owner, p.editor, p.viewer, p.outsider, p.workspace, p.other_workspace = owner, editor, viewer, outsider, workspace, other
    return p


@pytest.fixture(scope="session")
def _session_stack(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Redis server and one real Celery worker process on the test database, for the
    whole session (tests take it through ``stack``)."""
    from tests.stack import Stack

    running = Stack(tmp_path_factory.mktemp("stack-logs"))
    with django_db_blocker.unblock():
        running.start_redis()
        try:
            running.start_worker()
        except Exception:
            running.stop()
            raise
    yield running
    running.stop()


@pytest.fixture
def stack(_session_stack, transactional_db):
    """The session's Redis server and worker, for one test; its rows are committed where the
    worker can read them. Before the test database is flushed, the worker finishes what the test
    left it doing (a flush under a worker's writes can deadlock on PostgreSQL)."""
    yield _session_stack
    if not _session_stack.wait_until_idle():
        import warnings

        warnings.warn("the worker was still busy a minute after the test; flushing anyway", stacklevel=1)


@pytest.fixture(autouse=True)
def _fresh_object_files():
    """Forget the files of runs and data sets after each test.

    Test databases start their ids again at 1, so a run of one test would otherwise find
    the checkpoints and weights that another test's run 1 left behind.
    """
    yield
    import shutil

    try:
        from django.conf import settings
    except ImportError:  # the engine's tests alone, where the web app is not installed (the GPU machine)
        return
    for folder in ("runs", "datasets"):
        shutil.rmtree(settings.DATA_DIR / folder, ignore_errors=True)
