"""Notifications API: /me/devices, /me/notifications, /me/notification-preferences,
/broadcasts and /notifications/outbox (dead letters)."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from notifications import broadcasts, schemas, service
from notifications import inbox as inboxes
from server import db, idempotency
from server.api import Blueprint
from server.auth.actor import current_actor, login_required

me_blp = Blueprint("my_notifications", __name__, url_prefix="/me",
                   description="One's devices, inbox and push settings (消息)")
broadcasts_blp = Blueprint("broadcasts", __name__, url_prefix="/broadcasts",
                           description="Alerts and notices to an area (通知公告/预警)")
outbox_blp = Blueprint("notification_outbox", __name__, url_prefix="/notifications/outbox",
                       description="Pushes that failed or were dead-lettered (死信)")
blueprints = [me_blp, broadcasts_blp, outbox_blp]


def request_locale() -> str:
    """The best of our languages for the request's Accept-Language (zh-CN by default)."""
    return request.accept_languages.best_match(service.LOCALES, default=service.DEFAULT_LOCALE)


@me_blp.route("/devices")
class Devices(MethodView):
    @me_blp.response(200, schemas.DeviceSchema(many=True))
    @login_required
    def get(self):
        """One's registered phones and browsers."""
        return service.list_devices(db.session(), current_actor())

    @me_blp.arguments(schemas.DeviceRegisterSchema)
    @me_blp.response(200, schemas.DeviceSchema)
    @me_blp.alt_response(201, schema=schemas.DeviceSchema, success=True, description="Created")
    @login_required
    def post(self, data):
        """Register this phone's push token (after each login and whenever its provider
        renews it) with its provider: `fcm` (default; iOS too) or `hms` (Huawei Push Kit). It
        is subscribed to the broadcast topics of your areas. A token registered by another
        account moves to yours. Pushes stop when this login
        ends (logout, password change): call DELETE /me/devices/{token} before logging out
        to stop them at once."""
        with db.unit_of_work() as s:
            device, created = service.register_device(s, current_actor(), data)
        return device, 201 if created else 200


@me_blp.route("/devices/<string:token>", methods=["DELETE"])
@me_blp.response(204)
@login_required
def delete_device(token):
    """Forget one of your devices: no more pushes to it."""
    with db.unit_of_work() as s:
        service.remove_device(s, current_actor(), token)


@me_blp.route("/notifications")
@me_blp.arguments(schemas.InboxQuerySchema, location="query")
@me_blp.response(200, schemas.InboxItemSchema(many=True), headers={
    "X-Unread-Count": {"description": "Unread notifications", "schema": {"type": "integer"}}})
@me_blp.paginate()
@login_required
def inbox(filters, pagination_parameters):
    """Your notifications, newest first, titles in your language (Accept-Language)."""
    s, actor = db.session(), current_actor()
    items = inboxes.list_inbox(s, actor, filters, pagination_parameters, request_locale())
    return items, 200, {"X-Unread-Count": str(inboxes.unread_count(s, actor))}


@me_blp.route("/notifications/unread-count")
@me_blp.response(200, schemas.UnreadCountSchema)
@login_required
def unread_count():
    """How many of your notifications are unread (the badge)."""
    return {"unread": inboxes.unread_count(db.session(), current_actor())}


@me_blp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@me_blp.response(200, schemas.InboxItemSchema)
@login_required
def read_one(notification_id):
    """Mark one notification read."""
    with db.unit_of_work() as s:
        n, read_at = inboxes.mark_read(s, current_actor(), notification_id)
    return inboxes.item(n, read_at, request_locale())


@me_blp.route("/notifications/read-all", methods=["POST"])
@me_blp.arguments(schemas.ReadAllSchema, required=False)
@me_blp.response(200, schemas.ReadAllResultSchema)
@login_required
def read_all(data):
    """Mark all (or all up to `up_to_id`) of your notifications read. The body is
    optional: without one, everything is marked."""
    with db.unit_of_work() as s:
        return {"marked": inboxes.mark_all_read(s, current_actor(), data.get("up_to_id"))}


@me_blp.route("/notification-preferences")
class Preferences(MethodView):
    @me_blp.response(200, schemas.PreferencesSchema)
    @login_required
    def get(self):
        """Your push settings: muted kinds, quiet hours (免打扰) and their time zone."""
        return service.get_preferences(db.session(), current_actor())

    @me_blp.arguments(schemas.PreferencesSchema)
    @me_blp.response(200, schemas.PreferencesSchema)
    @login_required
    def put(self, data):
        """Replace your push settings. They change pushes only: the inbox gets everything,
        and urgent pushes (emergencies, escalations) ignore mutes and quiet hours."""
        with db.unit_of_work() as s:
            return service.set_preferences(s, current_actor(), data)


@broadcasts_blp.route("")
class Broadcasts(MethodView):
    @broadcasts_blp.arguments(schemas.BroadcastQuerySchema, location="query")
    @broadcasts_blp.response(200, schemas.BroadcastSchema(many=True))
    @broadcasts_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Broadcasts to the areas of your scope, newest first (notice:broadcast)."""
        return broadcasts.list_broadcasts(db.session(), current_actor(), filters,
                                       pagination_parameters)

    @broadcasts_blp.arguments(schemas.BroadcastCreateSchema)
    @broadcasts_blp.response(201, schemas.BroadcastSchema)
    @idempotency.document_replay(broadcasts_blp, schemas.BroadcastSchema)
    @login_required
    def post(self, data):
        """Send an alert or notice to everyone (residents, workers…) with a membership in an
        area subtree of your scope: in their inboxes at once, on their phones as one topic
        message per provider within seconds; an emergency also goes by SMS to those without
        the app when SMS is configured. Rate-limited per
        sender (429 with Retry-After); idempotent by client_uuid."""
        client_uuid = data.pop("client_uuid", None)
        config = current_app.config
        with db.unit_of_work() as s:
            broadcast, created = broadcasts.create_broadcast(
                s, current_actor(), data, client_uuid, config["BROADCAST_LIMIT_PER_SENDER"],
                config["BROADCAST_LIMIT_WINDOW_S"])
        return broadcast, *idempotency.create_answer(created)


@broadcasts_blp.route("/<int:broadcast_id>")
@broadcasts_blp.response(200, schemas.BroadcastSchema)
@login_required
def get_broadcast(broadcast_id):
    """One broadcast and how many members it has been counted for so far."""
    return broadcasts.get_broadcast(db.session(), current_actor(), broadcast_id)


@outbox_blp.route("")
@outbox_blp.arguments(schemas.OutboxQuerySchema, location="query")
@outbox_blp.response(200, schemas.OutboxSchema(many=True))
@outbox_blp.paginate()
@login_required
def list_outbox(filters, pagination_parameters):
    """Pushes that failed (rejected by FCM) or were dead-lettered after the last attempt,
    newest first (notification:admin); `state` shows others."""
    return service.list_outbox(db.session(), current_actor(), filters, pagination_parameters)


@outbox_blp.route("/<int:outbox_id>/requeue", methods=["POST"])
@outbox_blp.response(200, schemas.OutboxSchema)
@login_required
def requeue(outbox_id):
    """Send a failed or dead push again, with a fresh count of attempts."""
    with db.unit_of_work() as s:
        return service.requeue(s, current_actor(), outbox_id)
