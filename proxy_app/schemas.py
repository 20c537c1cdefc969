"""Request schemas: known fields are type-checked, unknown ones pass through to the upstream
(so new OpenAI parameters keep working)."""

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from dheera_ai.translate import TranslationError
from dheera_ai.translate.cohere import validate_rerank_request


class StringOrList(fields.Field):
    """`stop`: a string or a list of strings."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise ValidationError("must be a string or a list of strings.")


class StringOrObject(fields.Field):
    """`tool_choice`: "auto" / "none" / "required", or an object naming a tool."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, dict)):
            return value
        raise ValidationError("must be a string or an object.")


class MessageSchema(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.OneOf(
        ["system", "developer", "user", "assistant", "tool", "function"]))


class ChatCompletionRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = fields.List(fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1))
    stream = fields.Boolean(allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    n = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    max_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    stop = StringOrList(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    tool_choice = StringOrObject(allow_none=True)
    user = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)


def JSONBoolean():  # noqa: N802 - reads like the fields it sits among
    """A JSON true/false, not marshmallow's "yes"/1/"on"."""
    return fields.Boolean(allow_none=True, truthy={True}, falsy={False})


class StringOrArray(fields.Field):
    """`prompt`, `input`: a string, or a list (of strings, token ids, token arrays or parts)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, list)):
            return value
        raise ValidationError("must be a string or an array.")


class EmbeddingInput(fields.Field):
    """A string, a list of strings, a token array, or a list of token arrays; never empty."""

    def _deserialize(self, value, attr, data, **kwargs):
        def tokens(v):
            return isinstance(v, list) and bool(v) and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        if isinstance(value, str) or tokens(value):
            return value
        if isinstance(value, list) and value and (all(isinstance(v, str) for v in value)
                                                  or all(tokens(v) for v in value)):
            return value
        raise ValidationError("must be a string, a list of strings, a token array or a list of token arrays.")


class _PassThrough(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    user = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)


class CompletionRequestSchema(_PassThrough):
    prompt = StringOrArray(required=True, allow_none=True)
    stream = JSONBoolean()
    stream_options = fields.Dict(allow_none=True)
    max_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=0))
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    n = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    stop = StringOrList(allow_none=True)
    echo = JSONBoolean()
    logprobs = fields.Integer(allow_none=True)
    suffix = fields.String(allow_none=True)


class EmbeddingRequestSchema(_PassThrough):
    input = EmbeddingInput(required=True)
    encoding_format = fields.String(allow_none=True, validate=validate.OneOf(["float", "base64"]))
    dimensions = fields.Integer(allow_none=True, validate=validate.Range(min=1))


class ImageGenerationRequestSchema(_PassThrough):
    prompt = fields.String(required=True, validate=validate.Length(min=1))
    n = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=10))
    size = fields.String(allow_none=True)
    quality = fields.String(allow_none=True)
    style = fields.String(allow_none=True)
    response_format = fields.String(allow_none=True, validate=validate.OneOf(["url", "b64_json"]))


class ImageEditRequestSchema(ImageGenerationRequestSchema):
    """The text fields of the multipart form (numbers arrive as text and are checked as numbers)."""


class SpeechRequestSchema(_PassThrough):
    input = fields.String(required=True, validate=validate.Length(min=1))
    voice = StringOrObject(required=True)
    response_format = fields.String(allow_none=True)
    speed = fields.Float(allow_none=True, validate=validate.Range(min=0.25, max=4))
    instructions = fields.String(allow_none=True)


class TranscriptionRequestSchema(_PassThrough):
    """The text fields of a transcription or translation form."""

    response_format = fields.String(allow_none=True, validate=validate.OneOf(
        ["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]))
    language = fields.String(allow_none=True)
    prompt = fields.String(allow_none=True)
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))


class ModerationRequestSchema(_PassThrough):
    input = StringOrArray(required=True)


class RerankRequestSchema(_PassThrough):
    """Cohere's shape; the document rules are `translate.cohere.validate_rerank_request`'s."""

    query = fields.String(required=True)
    documents = fields.List(fields.Raw(), required=True)
    top_n = fields.Integer(allow_none=True)
    return_documents = JSONBoolean()

    @validates_schema
    def cohere_rules(self, data, **kwargs):
        try:
            validate_rerank_request(data)
        except TranslationError as e:
            raise ValidationError(str(e), field_name=e.param) from None


class ResponseCreateRequestSchema(_PassThrough):
    input = StringOrArray(allow_none=True)
    instructions = fields.String(allow_none=True)
    stream = JSONBoolean()
    store = JSONBoolean()
    previous_response_id = fields.String(allow_none=True)
    max_output_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    tools = fields.List(fields.Dict(), allow_none=True)
    tool_choice = StringOrObject(allow_none=True)
    text = fields.Dict(allow_none=True)
    reasoning = fields.Dict(allow_none=True)


class AnthropicMessageSchema(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.OneOf(["user", "assistant"]))
    content = StringOrArray(required=True)


class AnthropicMessagesRequestSchema(_PassThrough):
    messages = fields.List(fields.Nested(AnthropicMessageSchema), required=True, validate=validate.Length(min=1))
    max_tokens = fields.Integer(required=True, validate=validate.Range(min=1))
    system = StringOrArray(allow_none=True)
    stream = JSONBoolean()
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    top_p = fields.Float(allow_none=True)
    top_k = fields.Integer(allow_none=True)
    stop_sequences = fields.List(fields.String(), allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    tool_choice = fields.Dict(allow_none=True)


class FileUploadSchema(Schema):
    """The text fields of `POST /v1/files` (the bytes are the `file` part)."""

    class Meta:
        unknown = INCLUDE

    purpose = fields.String(required=True, validate=validate.OneOf(
        ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")))
    # OpenAI's form spelling of `expires_after: {anchor, seconds}`: an hour to 30 days.
    expires_after_anchor = fields.String(data_key="expires_after[anchor]", validate=validate.OneOf(("created_at",)))
    expires_after_seconds = fields.Integer(data_key="expires_after[seconds]",
                                           validate=validate.Range(min=3600, max=30 * 86400))


class BatchCreateSchema(Schema):
    """`POST /v1/batches`."""

    input_file_id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    endpoint = fields.String(required=True, validate=validate.OneOf(
        ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")))
    completion_window = fields.String(required=True, validate=validate.OneOf(("24h",)))
    # OpenAI's Metadata: up to 16 string pairs, keys up to 64 characters, values up to 512.
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=64)),
                           values=fields.String(validate=validate.Length(max=512)),
                           allow_none=True, validate=validate.Length(max=16))
    output_expires_after = fields.Dict(allow_none=True)
