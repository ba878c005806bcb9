"""The API's documentation page works on a server with no way out: Swagger UI from Cupola's own static files."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders


@pytest.mark.django_db
def test_the_api_docs_load_swagger_ui_from_the_server_itself(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("reader", password="a-Long-pass-42"))
    page = client.get("/api/v1/docs").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any(s.endswith("swagger-ui-bundle.js") for s in sources), sources
    assert not [s for s in sources if s.startswith(("http://", "https://", "//"))], sources  # no CDN
    for source in sources:
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), f"{source} is not among the static files"
