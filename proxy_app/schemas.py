"""Request schemas: known fields are type-checked, unknown ones pass through to the upstream
(so new OpenAI parameters keep working)."""

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate


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
