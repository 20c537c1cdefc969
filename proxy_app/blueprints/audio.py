"""Audio: `/audio/speech` (JSON in, audio streamed out) and `/audio/transcriptions`,
`/audio/translations` (multipart in; text or JSON out per `response_format`)."""

from flask import Blueprint

from proxy_app import calls
from proxy_app.blueprints import route
from proxy_app.schemas import SpeechRequestSchema, TranscriptionRequestSchema

bp = Blueprint("audio", __name__)
_speech = SpeechRequestSchema()
_transcription = TranscriptionRequestSchema()


@route(bp, "/audio/speech")
def audio_speech(model=None):
    return calls.run("audio_speech", _speech, model)


@route(bp, "/audio/transcriptions")
def audio_transcriptions(model=None):
    return calls.run_upload("audio_transcriptions", _transcription, model)


@route(bp, "/audio/translations")
def audio_translations(model=None):
    return calls.run_upload("audio_translations", _transcription, model)
