"""A plain Redis client on the broker's server, for worker presence and quick checks."""

from __future__ import annotations

import redis
from django.conf import settings


def redis_url_for_client(url: str) -> str:
    # redis-py spells unix sockets unix://; Celery spells them redis+socket://.
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://"):]
    return url


def redis_client(timeout: float = 1.0) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url_for_client(settings.REDIS_URL), socket_timeout=timeout, socket_connect_timeout=timeout
    )
