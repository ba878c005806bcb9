from django.apps import AppConfig

WATCHDOG_EVERY = 15.0  # seconds


class ExperimentsConfig(AppConfig):
    name = "webapp.experiments"
    label = "experiments"

    def ready(self):
        # The heartbeat watchdog runs on Celery beat (`up` starts its worker with --beat).
        from webapp.celery import app

        schedule = dict(app.conf.beat_schedule or {})
        schedule["experiments-check-runs"] = {"task": "experiments.check_runs", "schedule": WATCHDOG_EVERY,
                                              "options": {"queue": "default", "expires": WATCHDOG_EVERY}}
        app.conf.beat_schedule = schedule
