"""Full URLs for links that leave the page: e-mails, webhooks, copied invitation and share links.

``CUPOLA_BASE_URL`` (``settings.BASE_URL``) names the server's public address; behind a proxy the
request's host may be the proxy's view of the server, and a webhook has no request at all.
"""
from django.conf import settings


def absolute_url(path: str, request=None) -> str:
    """``path`` (starting with /) under the public address; without one, under the request's host;
    without either, the path itself."""
    if settings.BASE_URL:
        return settings.BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path
