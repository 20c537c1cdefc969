"""Azure OpenAI's inbound URL scheme, so `openai.AzureOpenAI(azure_endpoint=<gateway>)` and
LlamaIndex's `AzureOpenAI(engine=...)` work unchanged: the deployment in the path is the model
name, `?api-version=` is accepted and not needed. `/openai/v1/...` and `/openai/responses` are
served by the families' own blueprints."""

from flask import Blueprint

from dheera_ai.errors import NotFoundError
from proxy_app.blueprints import audio, chat, completions, embeddings, images

bp = Blueprint("azure", __name__)

OPERATIONS = {
    "chat/completions": chat.chat_completions,
    "completions": completions.completions,
    "embeddings": embeddings.embeddings,
    "images/generations": images.image_generations,
    "images/edits": images.image_edits,
    "audio/speech": audio.audio_speech,
    "audio/transcriptions": audio.audio_transcriptions,
    "audio/translations": audio.audio_translations,
}


@bp.post("/openai/deployments/<deployment>/<path:operation>")
def deployment_call(deployment, operation):
    view = OPERATIONS.get(operation)
    if view is None:
        raise NotFoundError(f"Unknown Azure OpenAI operation '{operation}'; served: {', '.join(OPERATIONS)}.",
                            code="unknown_route")
    return view(model=deployment)
