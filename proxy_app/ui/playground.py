"""`/ui/playground`: chat with a model group as a chosen key, streamed into the page.

The browser calls `/v1/chat/completions` itself with the key typed into the page (the UI never
has it: keys are shown once), so the call is exactly what a client's would be: the same auth,
limits, routing and spend row. Cost and tokens come from that spend row once it is stored.
"""

from flask import render_template

from proxy_app import calls
from proxy_app.ui.blueprint import bp
from proxy_app.ui.session import login_required


@bp.get("/playground")
@login_required
def playground():
    return render_template("playground.html", models=sorted(calls.engine().router.model_names()))
