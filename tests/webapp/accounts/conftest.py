"""Fixtures of the accounts tests: a shareable test object type, log-in helpers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.http import JsonResponse

from webapp.accounts import sharing


@dataclass
class Board:
    """A stand-in for a run or comparison: an object of one workspace with a name."""

    workspace_id: int
    pk: str
    name: str
    secret_member_note: str = "members-only note"

    def __str__(self):
        return self.name


@pytest.fixture
def shared_boards(people):
    """Registers "comparison" as a test type with one object (id 7) in the Lab workspace."""
    boards = {(people.workspace.pk, "7"): Board(people.workspace.pk, "7", "Board <b>seven</b>")}

    def resolve(workspace, target_id):
        return boards.get((workspace.pk, target_id))

    def render_page(request, board):
        return sharing.render_shared(request, "accounts/shared_base.html", {"board": board})

    def metrics(request, board):
        return JsonResponse({"board": board.name, "loss": [0.9, 0.5, 0.3]})

    with sharing.override("comparison", resolver=resolve, renderer=render_page, data={"metrics": metrics}):
        yield boards


def api_headers(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
