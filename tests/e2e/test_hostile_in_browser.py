"""Hostile uploads seen in a real browser: the message reaches the person, and markup in a file's
column names or a data set's name never runs — not in the page, not in the Plotly charts."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XSS_COLUMNS = [
    '<img src=x onerror="window.__xss=1">',
    '<a href="javascript:window.__xss=2">click</a>',
    "<script>window.__xss=3</script>",
    '<b onmouseover="window.__xss=4">bold</b>',
]


def _log_in(page, base: str, username: str) -> str:
    from django.contrib.auth import get_user_model

    from webapp.accounts.services import workspace_create

    user = get_user_model().objects.create_user(username, password="a-Long-e2e-pass-42")
    workspace = workspace_create(name=f"{username} lab", owner=user)
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("a-Long-e2e-pass-42")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(rf"/w/{workspace.slug}/$"))
    return workspace.slug


def _upload(page, base: str, ws: str, path, name: str) -> None:
    page.goto(f"{base}/w/{ws}/datasets/upload/")
    page.set_input_files("#id_file", str(path))
    page.fill("#id_name", name)
    page.click("#upload-button")


def test_a_broken_file_shows_its_reason_and_markup_in_column_names_never_runs(live_server, stack, transactional_db,
                                                                                pages, tmp_path, settings):
    base = live_server.url
    watched = pages()
    page = watched.new()
    ws = _log_in(page, base, "mallory")

    ragged = tmp_path / "ragged.csv"
    ragged.write_bytes(b"a,b,c\n1,2,3\n4,5\n6,7,8\n")
    _upload(page, base, ws, ragged, "Ragged")
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    error = page.locator("[data-testid=ingest-error]")
    error.wait_for(timeout=60_000)  # the page polls the worker's verdict and reloads itself
    assert "Line 3" in error.text_content()
    watched.shot(page, "ingest-error")

    picture = tmp_path / "table.csv"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    _upload(page, base, ws, picture, "A picture")
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    page.locator("[data-testid=ingest-error]").wait_for(timeout=60_000)
    assert "PNG image" in page.locator("[data-testid=ingest-error]").text_content()

    settings.MAX_UPLOAD_MB = 1  # the page checks the size before sending anything
    page.goto(f"{base}/w/{ws}/datasets/upload/")
    big = tmp_path / "big.csv"
    big.write_bytes(b"a,b\n" + b"1,2\n" * 400_000)
    page.set_input_files("#id_file", str(big))
    page.click("#upload-button")
    assert "upload limit" in page.locator("#upload-errors").text_content()
    watched.shot(page, "too-large")

    hostile = tmp_path / "hostile.csv"
    rows = "\n".join(",".join(str((i * 7 + j) % 5) for j in range(len(XSS_COLUMNS))) + f",{'ab'[i % 2]}"
                     for i in range(30))
    hostile.write_text(",".join(f'"{c}"' for c in XSS_COLUMNS) + ",label\n" + rows + "\n")
    _upload(page, base, ws, hostile, '<img src=x onerror="window.__xss=5">')
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    page.wait_for_selector("[data-testid=hash]", timeout=60_000)
    page.wait_for_selector("#column-charts .main-svg")
    for link in page.locator("#column-charts a").all():  # Plotly renders <a> in titles; clicking must do nothing
        link.click()
    page.hover("#column-charts .main-svg")
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None, "markup from the upload ran on the data set page"
    watched.shot(page, "hostile-columns")
    page.goto(f"{base}/w/{ws}/datasets/")
    assert page.evaluate("window.__xss") is None, "markup from the upload ran on the data set list"
    page.goto(f"{base}/w/{ws}/runs/new/")
    page.wait_for_function("document.getElementById('total-params').textContent.trim() !== '—'", timeout=30_000)
    watched.shot(page, "hostile-builder")
    assert page.evaluate("window.__xss") is None, "markup from the upload ran in the model builder"
