"""Request and response shapes for accounts and tokens."""

from __future__ import annotations

from marshmallow import fields, validate

from server import pii
from server.api import Schema
from server.auth.permissions import ROLES
from server.validators import validate_mobile, validate_username

_role = fields.String(validate=validate.OneOf(ROLES))


class LoginSchema(Schema):
    login = fields.String(
        required=True, validate=validate.Length(1, 64),
        metadata={"description": "Username or mainland mobile number", "example": "worker01"},
    )
    password = fields.String(required=True, validate=validate.Length(1, 128), load_only=True)


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(1, 4096))


class ChangePasswordSchema(Schema):
    current_password = fields.String(required=True, validate=validate.Length(1, 128))
    new_password = fields.String(required=True, validate=validate.Length(1, 128))


class VerificationCodeRequestSchema(Schema):
    phone = fields.String(required=True, validate=validate_mobile)


class RegisterSchema(Schema):
    phone = fields.String(required=True, validate=validate_mobile)
    code = fields.String(required=True, validate=validate.Regexp(r"^\d{6}$"))
    password = fields.String(required=True, validate=validate.Length(1, 128))
    display_name = fields.String(required=True, validate=validate.Length(1, 100))


class UserSchema(Schema):
    """An account as administrators see it: the phone is masked."""

    id = fields.Integer(dump_only=True)
    username = fields.String(allow_none=True)
    display_name = fields.String()
    phone = fields.Method("masked_phone", dump_only=True, allow_none=True)
    roles = fields.List(fields.String(), attribute="role_names", dump_only=True)
    is_active = fields.Boolean()
    locked_until = fields.AwareDateTime(allow_none=True)
    last_login_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    version = fields.Integer()

    def masked_phone(self, user) -> str | None:
        return pii.mask_phone(pii.decrypt(user.phone_enc, "user.phone"))


class MeSchema(UserSchema):
    """One's own account: one's own phone is shown in full."""

    phone = fields.Method("own_phone", dump_only=True, allow_none=True)
    permissions = fields.List(fields.String(), dump_only=True)

    def own_phone(self, user) -> str | None:
        return pii.decrypt(user.phone_enc, "user.phone")


class TokenSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer(metadata={"description": "Access token lifetime in seconds"})
    user = fields.Nested(UserSchema)


class UserCreateSchema(Schema):
    username = fields.String(validate=validate_username)
    phone = fields.String(validate=validate_mobile)
    display_name = fields.String(required=True, validate=validate.Length(1, 100))
    password = fields.String(required=True, validate=validate.Length(1, 128), load_only=True)
    roles = fields.List(_role, required=True, validate=validate.Length(1, len(ROLES)))


class UserUpdateSchema(Schema):
    display_name = fields.String(validate=validate.Length(1, 100))
    is_active = fields.Boolean()
    roles = fields.List(_role, validate=validate.Length(1, len(ROLES)))
    unlock = fields.Boolean(metadata={"description": "true lifts a lockout after failures"})
    version = fields.Integer(
        validate=validate.Range(min=1),
        metadata={"description": "The version edited (or send If-Match)"},
    )


class UserQuerySchema(Schema):
    q = fields.String(metadata={"description": "Part of the username or name, or a phone"})
    role = _role
    is_active = fields.Boolean()
