"""The fast validator agrees with marshmallow on every body, valid or not."""

import pytest

from proxy_app.schemas import ChatCompletionRequestSchema
from proxy_app.validation import FastValidator

SCHEMA = ChatCompletionRequestSchema()
FAST = FastValidator(SCHEMA)
HI = [{"role": "user", "content": "hi"}]

BODIES = [
    {"model": "m", "messages": HI},
    {"model": "m", "messages": HI, "stream": True, "temperature": 0.5, "top_p": 1, "n": 1, "max_tokens": 9,
     "stop": ["x"], "tools": [{"type": "function"}], "tool_choice": "auto", "user": "u", "metadata": {"a": 1},
     "tags": ["t"], "unknown_new_param": {"anything": True}},
    {"model": "m", "messages": HI, "stop": "x", "tool_choice": {"type": "function"}, "temperature": None},
    {"messages": HI},
    {"model": "", "messages": HI},
    {"model": 5, "messages": HI},
    {"model": "m"},
    {"model": "m", "messages": []},
    {"model": "m", "messages": "hi"},
    {"model": "m", "messages": [{"content": "no role"}]},
    {"model": "m", "messages": [{"role": "wizard"}]},
    {"model": "m", "messages": ["not an object"]},
    {"model": "m", "messages": HI, "temperature": "hot"},
    {"model": "m", "messages": HI, "temperature": 3},
    {"model": "m", "messages": HI, "temperature": True},
    {"model": "m", "messages": HI, "n": 0},
    {"model": "m", "messages": HI, "n": 1.5},
    {"model": "m", "messages": HI, "n": 2.0},
    {"model": "m", "messages": HI, "n": "2"},
    {"model": "m", "messages": HI, "stream": "yes"},
    {"model": "m", "messages": HI, "stream": 1},
    {"model": "m", "messages": HI, "stop": 5},
    {"model": "m", "messages": HI, "stop": ["a", 1]},
    {"model": "m", "messages": HI, "tools": {"type": "function"}},
    {"model": "m", "messages": HI, "tools": [1]},
    {"model": "m", "messages": HI, "tool_choice": 3},
    {"model": "m", "messages": HI, "metadata": "x"},
    {"model": "m", "messages": HI, "tags": "x"},
    {"model": "m", "messages": HI, "tags": [1]},
    {"model": "m", "messages": None},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_fast_validator_gives_marshmallows_verdict(body):
    assert FAST.errors(body) == SCHEMA.validate(body)


def test_a_valid_body_never_reaches_marshmallow(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("marshmallow ran for a valid body")

    monkeypatch.setattr(SCHEMA, "validate", fail)
    assert FAST.errors(BODIES[1]) == {}


def test_a_schema_with_its_own_validators_is_always_left_to_marshmallow():
    from marshmallow import Schema, ValidationError, fields, validates_schema

    class Ranked(Schema):
        top_n = fields.Integer()
        documents = fields.List(fields.String())

        @validates_schema
        def enough_documents(self, data, **kwargs):
            if data.get("top_n", 0) > len(data.get("documents", [])):
                raise ValidationError("more than there are", "top_n")

    body = {"top_n": 5, "documents": ["a"]}
    assert FastValidator(Ranked()).errors(body) == {"top_n": ["more than there are"]}
