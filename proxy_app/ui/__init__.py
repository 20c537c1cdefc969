"""The admin web UI at `/ui`: server-rendered pages over the same functions the admin API runs.

Pages import the admin blueprints' functions (create_key, update_team, check_deployments, ...)
and the store's queries; nothing here decides what a key, user or team may be. The session is a
signed cookie (`session.py`); every form that changes something carries its CSRF token.
"""

from proxy_app.ui import auth, dashboard, directory, keys, logs, models, playground  # noqa: F401 - routes
from proxy_app.ui.blueprint import bp

__all__ = ["bp"]
