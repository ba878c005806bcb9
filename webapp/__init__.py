"""Cupola's Django project. Importing it makes the Celery app available as ``webapp.celery_app``."""

from webapp.celery import app as celery_app

__all__ = ["celery_app"]
