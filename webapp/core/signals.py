"""Celery worker signals: announce presence while the worker runs."""

from celery.signals import worker_ready, worker_shutdown

from webapp.core import presence

_stop_events = {}


@worker_ready.connect
def _announce(sender, **kwargs):
    queues = sorted(q.name for q in sender.app.amqp.queues.consume_from.values()) if sender.app.amqp.queues.consume_from else []
    _stop_events[sender.hostname] = presence.start_heartbeat(sender.hostname, queues)


@worker_shutdown.connect
def _withdraw(sender, **kwargs):
    stop = _stop_events.pop(sender.hostname, None)
    if stop is not None:
        stop.set()
    presence.withdraw(sender.hostname)
