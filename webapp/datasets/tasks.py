from celery import shared_task

from webapp.datasets import services


@shared_task(name="datasets.ingest", queue="default", acks_late=True)
def ingest_dataset_version(version_id: int) -> str | None:
    """Ingest one uploaded data set version on a worker (see ``services.ingest_version``)."""
    version = services.ingest_version(version_id)
    return version.status if version else None
