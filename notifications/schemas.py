"""Request and response shapes of devices, the inbox, push settings, broadcasts and the
outbox's dead letters."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from notifications.models import (
    BROADCAST_LEVELS,
    BROADCAST_STATES,
    OUTBOX_STATES,
    PLATFORMS,
    PROVIDERS,
)
from server.api import Schema

_ID = validate.Range(min=1, max=2**63 - 1)
# Push tokens (FCM, Push Kit) are printable ASCII without spaces (about 100-250 characters).
_TOKEN = validate.Regexp(r"^[\x21-\x7e]{1,4096}$", error="Not a push token.")
_LOCALE = validate.Regexp(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$",
                          error="A BCP 47 language tag such as zh-CN or en.")
_KIND = validate.Regexp(r"^[a-z0-9_.:-]{1,64}$",
                        error="A notification kind such as case.dispatched.")
_HHMM = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="A time as HH:MM.")


class DeviceRegisterSchema(Schema):
    token = fields.String(required=True, validate=_TOKEN,
                          metadata={"description": "The provider's push token"})
    platform = fields.String(required=True, validate=validate.OneOf(
        list(PLATFORMS), labels=list(PLATFORMS.values())))
    provider = fields.String(validate=validate.OneOf(list(PROVIDERS),
                                                     labels=list(PROVIDERS.values())),
                             metadata={"description": "Push channel: fcm (default; iOS "
                                                      "too) or hms (Huawei Push Kit)"})
    app_version = fields.String(validate=validate.Length(1, 32), allow_none=True)
    locale = fields.String(validate=[validate.Length(max=16), _LOCALE],
                           metadata={"description": "The phone's language for pushes "
                                                    "(zh-CN default, en)"})


class DeviceSchema(Schema):
    id = fields.Integer()
    token = fields.String()
    platform = fields.String()
    provider = fields.String()
    app_version = fields.String(allow_none=True)
    locale = fields.String()
    disabled_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "Set when the provider said the token is gone: no more pushes"})
    disabled_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    last_seen_at = fields.AwareDateTime()


class InboxQuerySchema(Schema):
    unread = fields.Boolean(metadata={"description": "true: unread only; false: read only"})
    kind = fields.String(validate=_KIND)


class InboxItemSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String(metadata={"description": "In the request's language "
                                                   "(Accept-Language: zh-CN default, en)"})
    body = fields.String()
    data = fields.Dict()
    urgent = fields.Boolean()
    collapse_key = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    read_at = fields.AwareDateTime(allow_none=True)
    read = fields.Boolean()


class UnreadCountSchema(Schema):
    unread = fields.Integer()


class ReadAllSchema(Schema):
    up_to_id = fields.Integer(validate=_ID, allow_none=True, metadata={
        "description": "Only notifications up to this id (what the app has shown)"})


class ReadAllResultSchema(Schema):
    marked = fields.Integer()


class QuietHoursSchema(Schema):
    start = fields.String(required=True, validate=_HHMM, metadata={"example": "22:00"})
    end = fields.String(required=True, validate=_HHMM, metadata={"example": "07:00"})

    @validates_schema
    def _check(self, data, **kwargs):
        if data["start"] == data["end"]:
            raise ValidationError("Start and end must differ.", "end")


class PreferencesSchema(Schema):
    """The whole of one's push settings: PUT replaces them, so every field is required
    (null for no quiet hours, the default zone): a partial body is a 422, never a reset."""

    muted_kinds = fields.List(fields.String(validate=_KIND), required=True,
                              validate=validate.Length(max=100), metadata={
                                  "description": "Kinds whose pushes are muted (the inbox "
                                                 "still gets them; urgent ones still push)"})
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, required=True, metadata={
        "description": "免打扰: non-urgent pushes wait until the end (local time); null: none"})
    timezone = fields.String(validate=validate.Length(1, 64), allow_none=True, required=True,
                             metadata={"description": "IANA zone of the quiet hours (null: "
                                                      "Asia/Shanghai)", "example": "Asia/Shanghai"})


class BroadcastCreateSchema(Schema):
    client_uuid = fields.UUID(load_only=True, metadata={
        "description": "The client's id for this request; a resend returns the original."})
    area_id = fields.Integer(required=True, validate=_ID, metadata={
        "description": "Everyone with a membership in this area's subtree"})
    level = fields.String(required=True, validate=validate.OneOf(
        list(BROADCAST_LEVELS), labels=list(BROADCAST_LEVELS.values())), metadata={
            "description": "info 通知 / warning 预警 / emergency 紧急 (pushed at once, even "
                           "to muted phones and in quiet hours)"})
    title = fields.String(required=True, validate=validate.Length(1, 100),
                          metadata={"example": "台风蓝色预警"})
    text = fields.String(required=True, validate=validate.Length(1, 2000))
    link = fields.URL(schemes={"http", "https"}, validate=validate.Length(max=500),
                      allow_none=True)


class BroadcastQuerySchema(Schema):
    area_id = fields.Integer(validate=_ID)
    level = fields.String(validate=validate.OneOf(list(BROADCAST_LEVELS)))
    state = fields.String(validate=validate.OneOf(list(BROADCAST_STATES)))


class BroadcastSchema(Schema):
    id = fields.Integer()
    sender_id = fields.Integer(allow_none=True)
    area_id = fields.Integer()
    level = fields.String()
    title = fields.String()
    text = fields.String()
    link = fields.String(allow_none=True)
    state = fields.String(metadata={"description": "pending: being fanned out; done"})
    recipients = fields.Integer(metadata={"description": "Members counted so far (all of "
                                                        "them see it in their inbox at once)"})
    created_at = fields.AwareDateTime()
    done_at = fields.AwareDateTime(allow_none=True)


class OutboxQuerySchema(Schema):
    state = fields.String(validate=validate.OneOf(list(OUTBOX_STATES)), metadata={
        "description": "Default: failed and dead"})
    user_id = fields.Integer(validate=_ID)


class OutboxSchema(Schema):
    id = fields.Integer()
    notification_id = fields.Integer()
    user_id = fields.Integer()
    kind = fields.String()
    state = fields.String()
    attempts = fields.Integer()
    due_at = fields.AwareDateTime()
    claimed_until = fields.AwareDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    sent_at = fields.AwareDateTime(allow_none=True)
