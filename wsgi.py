"""The WSGI entry point for gunicorn: `gunicorn -c conf/gunicorn.conf.py wsgi:app`."""

from proxy_app import create_app

app = create_app()
