"""Browser end-to-end tests: Playwright driving Debian's Chromium against the live server.

The live server (pytest-django's ``live_server``, a thread of this process) and the stack's worker
share the test database file, so an upload made in the browser is ingested and a run is trained by
the real worker through the real Redis. Every page opened records its console errors and uncaught
exceptions; a test fails on any of them. Screenshots go to ``test-artifacts/e2e/<test>/``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(config, items):
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed (pip install playwright)"
    if reason:
        for item in items:
            if str(item.fspath).startswith(str(Path(__file__).parent)):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="package", autouse=True)
def _orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread, and Django then refuses ORM calls
    from it; here they are safe. Set only while this package's tests (and their browser) run, so
    the flag never reaches the rest of the suite or the processes it starts."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(_orm_beside_playwright):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Pages:
    """Pages opened in one browser context, each watched for console errors and uncaught exceptions."""

    def __init__(self, context, shots: Path):
        self.context = context
        self.shots = shots
        self.errors: list[str] = []
        self.count = 0
        context.on("page", self._watch)

    def _watch(self, page) -> None:
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console error on {page.url}: {message.text} {message.location}"))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught exception on {page.url}: {error}"))

    def new(self):
        page = self.context.new_page()
        page.set_default_timeout(20_000)
        return page

    def shot(self, page, name: str) -> None:
        self.count += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.shots / f"{self.count:02d}-{name}.png"), full_page=True)


@pytest.fixture
def pages(browser, request):
    """``pages.new()`` opens a watched page; at the end, the test fails on any JavaScript error seen."""
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    shutil.rmtree(ARTIFACTS / name, ignore_errors=True)  # this run's screenshots only
    contexts = []

    def open_context(label: str = "") -> Pages:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        watched = Pages(context, ARTIFACTS / name / label if label else ARTIFACTS / name)
        contexts.append(watched)
        return watched

    yield open_context
    errors = [e for watched in contexts for e in watched.errors]
    for watched in contexts:
        watched.context.close()
    assert not errors, "JavaScript errors in the browser:\n" + "\n".join(errors)
