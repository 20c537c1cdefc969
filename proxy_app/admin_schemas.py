"""Request schemas of the key, user and team routes. A field neither Dheera AI nor LiteLLM knows is
refused (400 naming it): a typo in an admin request must not silently grant something else.
LiteLLM's own fields without a place here are dropped with a warning (`admin.body`)."""

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from proxy_app.virtual_keys import KEY_PREFIX, parse_duration

USER_ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")
TEAM_ROLES = ("admin", "user")


def _duration(value):
    try:
        parse_duration(value)
    except ValueError as e:
        raise ValidationError(str(e)) from None


def _key(value):
    if not value.startswith(KEY_PREFIX) or len(value) < len(KEY_PREFIX) + 8:
        raise ValidationError(f"a key must start with '{KEY_PREFIX}' and have at least 8 more characters.")


_non_negative = validate.Range(min=0)
# Integer limits are stored as BIGINT (SQLite's INTEGER is the same 64 bits): larger is refused here.
BIGINT_MAX = 2**63 - 1
_count = validate.Range(min=0, max=BIGINT_MAX)
_name = validate.Length(min=1, max=256)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class LimitsSchema(StrictSchema):
    """What a key, user or team may use; enforced by the spend and rate-limit plugins."""

    models = fields.List(fields.String(validate=_name))
    max_budget = fields.Float(allow_none=True, validate=_non_negative)
    budget_duration = fields.String(allow_none=True, validate=_duration)
    rpm_limit = fields.Integer(allow_none=True, validate=_count)
    tpm_limit = fields.Integer(allow_none=True, validate=_count)
    # 0 blocks every call (LiteLLM's way to pause a key without deleting it).
    max_parallel_requests = fields.Integer(allow_none=True, validate=_count)
    metadata = fields.Dict(keys=fields.String())
    # LiteLLM also takes these beside `metadata`; they are kept in it, where the limits are read.
    model_rpm_limit = fields.Dict(keys=fields.String(), values=fields.Integer(validate=_count), allow_none=True)
    model_tpm_limit = fields.Dict(keys=fields.String(), values=fields.Integer(validate=_count), allow_none=True)


class KeyFieldsSchema(LimitsSchema):
    key_alias = fields.String(allow_none=True, validate=_name)
    duration = fields.String(allow_none=True, validate=_duration)
    tags = fields.List(fields.String(validate=_name))
    user_id = fields.String(allow_none=True, validate=_name)
    team_id = fields.String(allow_none=True, validate=_name)
    blocked = fields.Boolean()


class KeyGenerateSchema(KeyFieldsSchema):
    key = fields.String(validate=_key)


class KeyUpdateSchema(KeyFieldsSchema):
    key = fields.String(required=True, validate=validate.Length(min=1))


class KeyRegenerateSchema(KeyFieldsSchema):
    key = fields.String(required=True, validate=validate.Length(min=1))
    new_key = fields.String(validate=_key)


class KeyRefSchema(StrictSchema):
    key = fields.String(required=True, validate=validate.Length(min=1))


class KeyDeleteSchema(StrictSchema):
    keys = fields.List(fields.String(validate=validate.Length(min=1)))
    key_aliases = fields.List(fields.String(validate=validate.Length(min=1)))


class UserFieldsSchema(LimitsSchema):
    user_email = fields.String(allow_none=True, validate=_name)
    user_role = fields.String(validate=validate.OneOf(USER_ROLES))


class UserNewSchema(UserFieldsSchema):
    user_id = fields.String(validate=_name)
    teams = fields.List(fields.String(validate=_name))
    team_id = fields.String(allow_none=True, validate=_name)  # LiteLLM's: one team to join
    auto_create_key = fields.Boolean(load_default=True)
    key_alias = fields.String(allow_none=True, validate=_name)
    duration = fields.String(allow_none=True, validate=_duration)


class UserUpdateSchema(UserFieldsSchema):
    user_id = fields.String(required=True, validate=_name)


class UserDeleteSchema(StrictSchema):
    user_ids = fields.List(fields.String(validate=_name), required=True, validate=validate.Length(min=1))


class MemberSchema(StrictSchema):
    """A team member by id or by email (LiteLLM's `user_email`); unknown users are created."""

    user_id = fields.String(allow_none=True, validate=_name)
    user_email = fields.String(allow_none=True, validate=_name)
    role = fields.String(load_default="user", validate=validate.OneOf(TEAM_ROLES))

    @validates_schema
    def _someone(self, data, **kwargs):
        if not data.get("user_id") and not data.get("user_email"):
            raise ValidationError("give user_id or user_email", "user_id")


class TeamFieldsSchema(LimitsSchema):
    team_alias = fields.String(allow_none=True, validate=_name)
    tags = fields.List(fields.String(validate=_name))
    blocked = fields.Boolean()


class TeamNewSchema(TeamFieldsSchema):
    team_id = fields.String(validate=_name)
    members_with_roles = fields.List(fields.Nested(MemberSchema))


class TeamUpdateSchema(TeamFieldsSchema):
    team_id = fields.String(required=True, validate=_name)


class MemberList(fields.Field):
    """`member`: one {user_id, role} or a list of them."""

    def _deserialize(self, value, attr, data, **kwargs):
        items = value if isinstance(value, list) else [value]
        return [MemberSchema().load(item) if isinstance(item, dict) else _not_member() for item in items]


def _not_member():
    raise ValidationError("must be {user_id, role} or a list of them.")


class TeamMemberAddSchema(StrictSchema):
    team_id = fields.String(required=True, validate=_name)
    member = MemberList(required=True)


class TeamMemberUpdateSchema(StrictSchema):
    team_id = fields.String(required=True, validate=_name)
    user_id = fields.String(allow_none=True, validate=_name)
    user_email = fields.String(allow_none=True, validate=_name)
    role = fields.String(validate=validate.OneOf(TEAM_ROLES))


class TeamMemberDeleteSchema(StrictSchema):
    team_id = fields.String(required=True, validate=_name)
    user_id = fields.String(validate=_name)
    user_ids = fields.List(fields.String(validate=_name))


class TeamDeleteSchema(StrictSchema):
    team_ids = fields.List(fields.String(validate=_name), required=True, validate=validate.Length(min=1))
