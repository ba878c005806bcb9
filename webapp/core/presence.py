"""Worker presence: each worker keeps a short-lived key in Redis saying it is alive.

The health endpoint reads the keys instead of broadcasting to workers, so it answers in
milliseconds; a worker that dies stops renewing its key and drops out within ``TTL``.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from webapp.core.broker import redis_client

log = logging.getLogger(__name__)

KEY_PREFIX = "cupola:worker:"
TTL = 15
INTERVAL = 5


def describe_device() -> str:
    try:
        import trainer

        return str(trainer.get_device())
    except Exception:  # noqa: BLE001 - the engine is optional for presence: a worker without it still runs tasks
        return "cpu"


def announce(hostname: str, queues: list[str], device: str) -> None:
    payload = json.dumps({"hostname": hostname, "queues": queues, "device": device, "seen": time.time()})
    redis_client().set(KEY_PREFIX + hostname, payload, ex=TTL)


def withdraw(hostname: str) -> None:
    try:
        redis_client().delete(KEY_PREFIX + hostname)
    except Exception:  # noqa: BLE001 - the broker may be down
        log.warning("could not withdraw worker %s from the presence list", hostname)


def live_workers() -> list[dict]:
    client = redis_client()
    keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=100))
    if not keys:
        return []
    return [json.loads(raw) for raw in client.mget(keys) if raw]


def start_heartbeat(hostname: str, queues: list[str]) -> threading.Event:
    """Renew this worker's key every few seconds until the returned event is set."""
    stop = threading.Event()
    device = describe_device()

    def beat():
        while not stop.is_set():
            try:
                announce(hostname, queues, device)
            except Exception as error:  # noqa: BLE001 - the broker may be down for a while; keep trying
                log.warning("worker presence: %s", error)
            stop.wait(INTERVAL)

    threading.Thread(target=beat, name="cupola-presence", daemon=True).start()
    return stop


def withdraw_all() -> None:
    """Forget every worker (tests restart theirs; a real deployment never needs this)."""
    client = redis_client()
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=100):
        client.delete(key)
