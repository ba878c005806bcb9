"""The REST API, ``/api/v1/``: token or session auth, OpenAPI 3 at ``/api/v1/openapi.json``.

Each app adds its router here; the pages and the API call the same services.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import APIKeyHeader, HttpBearer, django_auth

from webapp.accounts.models import ApiToken
from webapp.core import health


class TokenAuth(HttpBearer):
    """``Authorization: Bearer cup_…`` with a personal API token."""

    def authenticate(self, request, token):
        user = ApiToken.authenticate(token)
        if user is not None:
            request.user = user
        return user


class TokenHeaderAuth(APIKeyHeader):
    param_name = "X-Api-Token"

    def authenticate(self, request, key):
        user = ApiToken.authenticate(key) if key else None
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="Cupola API",
    version="1",
    description="Data sets, runs, metrics and predictions of a Cupola server.",
    urls_namespace="api",
    auth=[TokenAuth(), TokenHeaderAuth(), django_auth],
)


def _error(request, status: int, detail, **extra):
    return api.create_response(request, {"detail": detail, **extra}, status=status)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return _error(request, 404, "Not found")


@api.exception_handler(PermissionDenied)
def _forbidden(request, exc):
    return _error(request, 403, str(exc) or "Permission denied")


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    return _error(request, 401, "Authentication required: send `Authorization: Bearer <token>` or log in")


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", [])[1:]) or None, "message": e.get("msg", "invalid")}
        for e in exc.errors
    ]
    return _error(request, 400, "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors), errors=errors)


@api.get("/health", auth=None, tags=["system"])
def get_health(request):
    """Database, broker and live workers (with each worker's device)."""
    result = health.check()
    return api.create_response(request, result, status=200 if result["database"]["ok"] else 503)


def _register_routers() -> None:
    from webapp.accounts.api import router as accounts_router
    from webapp.datasets.api import router as datasets_router
    from webapp.experiments.api import router as experiments_router

    api.add_router("/", accounts_router)
    api.add_router("/", datasets_router)
    api.add_router("/", experiments_router)


_register_routers()
