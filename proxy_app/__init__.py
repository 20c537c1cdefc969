"""The WSGI gateway.

Kept free of imports on purpose: gunicorn's master imports this package (for its settings)
before forking, and nothing that opens sockets or loads `requests` may be imported before
gevent patches the standard library in the worker.
"""


def create_app(test_config=None, load_entrypoints=True, plugins=()):
    from proxy_app.app import create_app as _create_app

    return _create_app(test_config, load_entrypoints=load_entrypoints, plugins=plugins)
