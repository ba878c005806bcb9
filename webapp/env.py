"""Strict readers for settings that come from the environment.

Each reader fails loudly with the variable's name, so a typo in a deployment is found at
start-up rather than as odd behaviour later. No Django imports: settings use this module.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A setting from the environment is malformed; the message names the variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return parse_int(name, raw, minimum=minimum, maximum=maximum)


def parse_int(name: str, raw: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer; got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}; got {value}")
    return value


def env_count_or_all(name: str, default: int) -> int | None:
    """A whole number of at least 0, or None for "all"."""
    raw = os.environ.get(name)
    if raw is not None and raw.strip().lower() == "all":
        return None
    return env_int(name, default, minimum=0)


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_DB_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "sqlite": "django.db.backends.sqlite3",
}


def parse_database_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Turn `postgres://user:pass@host:5432/db` or `sqlite:////abs/path.db` into a DATABASES entry."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{name} is not a valid URL ({error}); got {url!r}") from None
    engine = _DB_ENGINES.get(parts.scheme)
    if engine is None:
        raise ConfigError(
            f"{name} must start with postgres://, postgresql:// or sqlite://; got {url!r}"
        )
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if path.startswith("//"):  # sqlite:////abs/path.db names /abs/path.db
            path = path[1:]
        if not path or path == "/":
            raise ConfigError(f"{name} names no SQLite file; got {url!r}")
        return {"ENGINE": engine, "NAME": path}
    database = unquote(parts.path.lstrip("/"))
    if not database or not parts.hostname:
        raise ConfigError(f"{name} must name a host and a database, as postgres://user:pass@host:5432/db; got {url!r}")
    return {
        "ENGINE": engine,
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 60,
    }


def validate_redis_url(url: str, *, name: str = "REDIS_URL") -> str:
    scheme = urlsplit(url.strip()).scheme
    if scheme not in {"redis", "rediss", "redis+socket", "unix"}:
        raise ConfigError(f"{name} must start with redis://, rediss:// or redis+socket://; got {url!r}")
    return url.strip()


def parse_base_url(url: str, *, name: str = "CUPOLA_BASE_URL") -> str:
    """The server's public address, ``https://cupola.example.org`` (a port allowed, nothing after
    the host): what links in e-mails, webhooks and copied text start with. "" when unset."""
    url = url.strip().rstrip("/")
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError as error:
        raise ConfigError(f"{name} is not a valid URL ({error}); got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be http:// or https:// and a host name, as https://cupola.example.org; "
                          f"got {url!r}")
    if parts.username or parts.password or parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be the scheme and host alone (no user, path, query or fragment); got {url!r}")
    return url
