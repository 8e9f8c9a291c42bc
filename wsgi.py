"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

from gevent import monkey

monkey.patch_all()

from app import create_worker_app  # noqa: E402

app = create_worker_app()
