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
        schedule["experiments-prune-prediction-logs"] = {"task": "experiments.prune_prediction_logs", "schedule": 3600.0,
                                                         "options": {"queue": "default", "expires": 3600.0}}
        app.conf.beat_schedule = schedule
        _register_sharing()
        # A deleted prediction job removes its file; a newer data set version is told to its models' people.
        from webapp.experiments import batch, registry  # noqa: F401


def _register_sharing() -> None:
    """Runs and comparisons can be shared read-only by link (the accounts app owns the links)."""
    from webapp.accounts import sharing
    from webapp.experiments import views
    from webapp.experiments.models import Run

    def resolve_run(workspace, target_id):
        return Run.objects.filter(workspace=workspace, pk=int(target_id)).first()

    def resolve_comparison(workspace, target_id):
        ids = [int(i) for i in str(target_id).split(",") if i.strip().isdigit()][: views.MAX_COMPARE]
        runs = list(Run.objects.filter(workspace=workspace, pk__in=ids))
        return sorted(runs, key=lambda r: ids.index(r.pk)) or None

    sharing.register_resolver("run", resolve_run)
    sharing.register_renderer("run", views.render_shared_run)
    sharing.register_data("run", "metrics", views.shared_run_metrics)
    sharing.register_resolver("comparison", resolve_comparison)
    sharing.register_renderer("comparison", views.render_shared_comparison)
