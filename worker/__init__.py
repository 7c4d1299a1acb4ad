"""The stalkflow worker entry point: ``celery -A worker.app worker``."""
