import os
import socket

from celery import shared_task

from webapp.core import signals  # noqa: F401  (connects the worker's presence signals)
from webapp.core.presence import describe_device


@shared_task(name="core.ping")
def ping(payload: str) -> dict:
    """A trivial round trip through the broker and a worker, used by health checks and tests."""
    return {"echo": payload, "pid": os.getpid(), "host": socket.gethostname(), "device": describe_device()}


@shared_task(name="core.clean_tmp")
def clean_tmp() -> int:
    """Periodic housekeeping on Celery beat: stale partial uploads in DATA_DIR/tmp."""
    from webapp.core import housekeeping

    return len(housekeeping.clean_tmp())
