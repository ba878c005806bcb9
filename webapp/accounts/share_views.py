"""The public side of share links: ``/s/<token>/`` and the JSON its page polls."""

from django.views.decorators.http import require_GET

from webapp.accounts import sharing


@require_GET
def share_page(request, token):
    return sharing.render_page(request, token)


@require_GET
def share_data(request, token, name):
    response = sharing.render_data(request, token, name)
    response["Cache-Control"] = "private, no-store"
    return response
