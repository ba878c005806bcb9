from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "webapp.core"
    label = "core"
    verbose_name = "Cupola runtime"

    def ready(self):
        # Housekeeping runs on Celery beat (`up` starts its worker with --beat) as well as at `up`.
        from webapp.celery import app
        from webapp.core.housekeeping import CLEAN_EVERY

        schedule = dict(app.conf.beat_schedule or {})
        schedule["core-clean-tmp"] = {"task": "core.clean_tmp", "schedule": CLEAN_EVERY,
                                      "options": {"queue": "default", "expires": CLEAN_EVERY}}
        app.conf.beat_schedule = schedule
