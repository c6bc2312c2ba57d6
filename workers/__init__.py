"""Celery workers: the reconcile tasks that run the engine for every target (issue 4)."""
