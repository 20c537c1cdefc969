"""Request validation with a fast path: marshmallow decides, but rarely has to run.

`FastValidator(schema)` compiles the schema's declared fields into plain type checks. It is
sound for acceptance only: when the quick check passes, marshmallow would accept the body too;
when it doubts (a value it does not recognise, a failed check), the full marshmallow validation
runs and its verdict and error messages are the answer. So a valid request costs a few dict
lookups and isinstance calls, and an invalid one gets exactly marshmallow's errors.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields


class _Doubt(Exception):
    """The quick check cannot vouch for this body; ask marshmallow."""


def _validators(field):
    checks = list(field.validators)

    def run(value):
        for check in checks:
            try:
                check(value)
            except ValidationError:
                raise _Doubt from None
    return run


def _compile_field(field):
    """A function that returns silently when `value` is certainly valid for `field`."""
    run_validators = _validators(field)
    allow_none = field.allow_none

    def with_none(check):
        def checked(value):
            if value is None:
                if allow_none:
                    return
                raise _Doubt
            check(value)
            run_validators(value)
        return checked

    if isinstance(field, fields.Boolean):
        return with_none(lambda v: _require(isinstance(v, bool)))
    if isinstance(field, fields.Integer):
        return with_none(lambda v: _require(type(v) is int))
    if isinstance(field, fields.Float):
        return with_none(lambda v: _require(type(v) in (int, float)))
    if isinstance(field, fields.String):
        return with_none(lambda v: _require(isinstance(v, str)))
    if isinstance(field, fields.Dict) and field.key_field is None and field.value_field is None:
        return with_none(lambda v: _require(isinstance(v, dict)))
    if isinstance(field, fields.List):
        inner = _compile_field(field.inner)

        def each(values):
            _require(isinstance(values, list))
            for value in values:
                inner(value)
        return with_none(each)
    if isinstance(field, fields.Nested) and not field.many:
        nested = _compile_schema(field.schema)

        def nested_check(value):
            _require(isinstance(value, dict))
            nested(value)
        return with_none(nested_check)

    def custom(value):
        # Fields of our own (StringOrList, ...) are cheap to run for real.
        try:
            field.deserialize(value)
        except ValidationError:
            raise _Doubt from None
    return custom


def _require(condition: bool) -> None:
    if not condition:
        raise _Doubt


def _compile_schema(schema: Schema):
    if any(schema._hooks.values()):
        # Schema-level validators and load hooks (@validates_schema, @validates, @pre_load ...)
        # are arbitrary code: the quick check cannot vouch for them, so marshmallow decides.
        def always_doubt(body: dict):
            raise _Doubt
        return always_doubt
    checks = [(name, field.data_key or name, field.required, _compile_field(field))
              for name, field in schema.fields.items() if not field.dump_only]

    def check(body: dict):
        for _name, key, required, check_value in checks:
            if key in body:
                check_value(body[key])
            elif required:
                raise _Doubt
    return check


class FastValidator:
    def __init__(self, schema: Schema):
        self.schema = schema
        self._quick = _compile_schema(schema)

    def errors(self, body: dict) -> dict:
        """marshmallow's error dict for `body` ({} when valid), computed only when needed."""
        try:
            self._quick(body)
            return {}
        except _Doubt:
            return self.schema.validate(body)
