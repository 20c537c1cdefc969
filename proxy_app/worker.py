"""gunicorn's gevent worker, with gevent imported in the worker process only.

gunicorn's master loads the worker class to build each worker object before forking it, and
`gunicorn.workers.ggevent` imports gevent at its top: ~4.5 MB in a master that never runs a
greenlet, counted again in every worker's memory. The master sees this class instead; in the
forked process, before anything runs, the object becomes gunicorn's own `GeventWorker` (same
base class, so the same state), and gevent is imported and patches the standard library there.
"""

from gunicorn.workers.base_async import AsyncWorker


class GeventWorker(AsyncWorker):
    def init_process(self):
        from gunicorn.workers.ggevent import GeventWorker as Worker

        self.__class__ = Worker
        Worker.init_process(self)
