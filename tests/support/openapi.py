"""Validating gateway answers against OpenAI's official OpenAPI spec (vendored in tests/data, MIT)."""

from __future__ import annotations

import functools
import os
import pickle

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = os.path.join(os.path.dirname(__file__), "..", "data", "openai-openapi.yaml")
CACHE = os.path.join(os.path.dirname(__file__), "..", "..", ".pytest_cache", "openai-openapi.pickle")


@functools.lru_cache(maxsize=1)
def spec() -> dict:
    """The spec, parsed once and cached on disk (the YAML is 3 MB and slow to parse)."""
    path = os.path.abspath(os.environ.get("DHEERA_AI_OPENAI_SPEC", SPEC))
    if os.path.exists(CACHE) and os.path.getmtime(CACHE) > os.path.getmtime(path):
        with open(CACHE, "rb") as f:
            return pickle.load(f)
    with open(path, encoding="utf-8") as f:
        document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE, "wb") as f:
        pickle.dump(document, f)
    return document


# Where the live API (and the official SDKs' types) allow null but the spec forgot to say so.
# Kept short and explicit: each entry is a path to a property inside a component schema.
ERRATA_NULLABLE = (
    # Every chunk but the last carries "finish_reason": null and "logprobs": null.
    ("CreateChatCompletionStreamResponse", ("properties", "choices", "items", "properties", "finish_reason")),
    ("CreateChatCompletionStreamResponse", ("properties", "choices", "items", "properties", "logprobs")),
)


def _allow_null(schema: dict) -> None:
    """OpenAPI 3.0's `nullable: true` (which the spec still uses) in JSON Schema terms."""
    if "type" in schema or "enum" in schema:
        if isinstance(schema.get("type"), str):
            schema["type"] = [schema["type"], "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = list(schema["enum"]) + [None]
    else:
        schema_copy = dict(schema)
        schema.clear()
        schema["anyOf"] = [schema_copy, {"type": "null"}]


def _patched(document: dict) -> dict:
    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
            if node.get("nullable") is True:
                _allow_null(node)
                node.pop("nullable", None)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document["components"]["schemas"])
    for schema_name, path in ERRATA_NULLABLE:
        node = document["components"]["schemas"][schema_name]
        for part in path:
            node = node[part]
        _allow_null(node)
    return document


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    document = _patched_spec()
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openai", resource)
    return Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{schema_name}"}, registry=registry)


@functools.lru_cache(maxsize=1)
def _patched_spec() -> dict:
    return _patched(spec())


def assert_valid(schema_name: str, instance) -> None:
    errors = sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

