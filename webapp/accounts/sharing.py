"""Read-only public links: the registry that lets each app render its own shared pages.

The accounts app owns the links (token, expiry, revocation); the app that owns the object
says how to find it and how to draw it. In the app's ``AppConfig.ready()``::

    from webapp.accounts import sharing

    sharing.register_resolver("run", lambda workspace, target_id: Run.objects.filter(
        workspace=workspace, pk=target_id).first())
    sharing.register_renderer("run", shared_run_page)            # fn(request, run) -> HttpResponse
    sharing.register_data("run", "metrics", shared_run_metrics)   # fn(request, run) -> JsonResponse

``/s/<token>/`` calls the renderer; ``/s/<token>/data/<name>/`` calls the data function, so a
shared page polls its JSON without a login. Renderers draw with ``render_shared()`` (which
sets ``shared=True`` in the template context: no upload, train or member data). An existing
JSON endpoint may instead accept ``?share_token=…`` and check it with ``resolve()``.
Unknown, revoked and expired tokens all give the same 404.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.http import Http404
from django.shortcuts import render

_resolvers: dict[str, Callable] = {}
_renderers: dict[str, Callable] = {}
_data: dict[tuple[str, str], Callable] = {}


def register_resolver(target_type: str, fn: Callable[[Any, str], Any]) -> None:
    """``fn(workspace, target_id)`` returns the object of that workspace, or ``None``."""
    _resolvers[target_type] = fn


def register_renderer(target_type: str, fn: Callable) -> None:
    """``fn(request, obj)`` returns the read-only page for a shared object."""
    _renderers[target_type] = fn


def register_data(target_type: str, name: str, fn: Callable) -> None:
    """``fn(request, obj)`` returns JSON for the shared page, at ``/s/<token>/data/<name>/``."""
    _data[(target_type, name)] = fn


def unregister(target_type: str) -> None:
    """Forget everything registered for a type (tests use it to clean up)."""
    _resolvers.pop(target_type, None)
    _renderers.pop(target_type, None)
    for key in [k for k in _data if k[0] == target_type]:
        del _data[key]


@contextmanager
def override(target_type: str, *, resolver: Callable, renderer: Callable, data: dict[str, Callable] | None = None):
    """Register a type for the duration of a ``with`` block, then put back what was there (tests)."""
    saved = (dict(_resolvers), dict(_renderers), dict(_data))
    unregister(target_type)
    register_resolver(target_type, resolver)
    register_renderer(target_type, renderer)
    for name, fn in (data or {}).items():
        register_data(target_type, name, fn)
    try:
        yield
    finally:
        for live, old in zip((_resolvers, _renderers, _data), saved):
            live.clear()
            live.update(old)


def shareable_types() -> list[str]:
    return sorted(t for t in _resolvers if t in _renderers)


def resolve_target(workspace, target_type: str, target_id) -> Any | None:
    resolver = _resolvers.get(target_type)
    if resolver is None:
        return None
    try:
        return resolver(workspace, str(target_id))
    except (ValueError, TypeError):
        return None


@dataclass(frozen=True)
class Shared:
    link: Any  # the ShareLink
    obj: Any  # the object it points to

    @property
    def workspace(self):
        return self.link.workspace


def resolve(token: str, target_type: str | None = None) -> Shared | None:
    """The live link for ``token`` and its object, or ``None`` (unknown, revoked, expired, gone)."""
    from webapp.accounts.models import ShareLink

    if not token or len(token) > 64:
        return None
    link = ShareLink.objects.select_related("workspace").filter(token=token).first()
    if link is None or not link.is_live or (target_type is not None and link.target_type != target_type):
        return None
    obj = resolve_target(link.workspace, link.target_type, link.target_id)
    if obj is None:
        return None
    return Shared(link=link, obj=obj)


def get_shared_or_404(token: str) -> Shared:
    shared = resolve(token)
    if shared is None:
        raise Http404("No such link")
    return shared


def render_page(request, token: str):
    shared = get_shared_or_404(token)
    renderer = _renderers.get(shared.link.target_type)
    if renderer is None:
        raise Http404("No such link")
    request.share = shared
    return renderer(request, shared.obj)


def render_data(request, token: str, name: str):
    shared = get_shared_or_404(token)
    fn = _data.get((shared.link.target_type, name))
    if fn is None:
        raise Http404("No such data")
    request.share = shared
    return fn(request, shared.obj)


def render_shared(request, template: str, context: dict | None = None, **kwargs):
    """Render a shared page: ``shared=True``, ``share_link`` and ``share_data_url`` (ends with /data/)."""
    share = getattr(request, "share", None)
    context = {**(context or {}), "shared": True, "share_link": share.link if share else None,
               "share_data_url": f"/s/{share.link.token}/data/" if share else ""}
    response = render(request, template, context, **kwargs)
    # A shared page may be opened by anyone holding the link; keep it out of shared caches and referrers.
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
