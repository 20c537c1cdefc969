# gunicorn -c conf/gunicorn.conf.py wsgi:app
# The settings live in the package so `dheera_ai` and plain gunicorn serve the same way.
from proxy_app.gunicorn_settings import *  # noqa: F401,F403
