"""Exchange API. Each helper's part is one block with its own list of blueprints."""

from __future__ import annotations

import functools

from flask import Response, current_app, g, request
from flask.views import MethodView

from grid.exchange import hotline_results, open_data, schemas, subscriptions
from grid.exchange.events import EVENT_TYPES
from server import apiclients, db
from server.api import SIGNED_REQUEST, Blueprint
from server.auth.actor import credential_headers, current_actor, login_required

# --- webhooks: /webhooks (subscriptions, delivery log, replay), /exchange/hotline (回单),
# /open-data (数据开放) ---

webhooks_blp = Blueprint("webhooks", __name__, url_prefix="/webhooks",
                         description="Events out (事件推送): subscriptions of API clients, "
                                     "delivery log, replay")
hotline_blp = Blueprint("hotline_results", __name__, url_prefix="/exchange/hotline",
                        description="Results back to the 12345 hotline (回单)")
open_data_blp = Blueprint("open_data", __name__, url_prefix="/open-data",
                          description="Open data (数据开放): public de-identified aggregates")


@webhooks_blp.route("/event-types")
@webhooks_blp.response(200, schemas.EventTypeSchema(many=True))
@login_required
def event_types():
    """The event types one may subscribe to, and the kind of client each is for."""
    current_actor().require(subscriptions.MANAGE)
    return [{"type": t, "label": label, "client_kind": kind}
            for t, (label, kind) in EVENT_TYPES.items()]


@webhooks_blp.route("/subscriptions")
class Subscriptions(MethodView):
    @webhooks_blp.arguments(schemas.SubscriptionQuerySchema, location="query")
    @webhooks_blp.response(200, schemas.SubscriptionSchema(many=True))
    @webhooks_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Subscriptions (apiclient:manage), of one client or active ones if asked; secrets
        are never shown again."""
        return subscriptions.list_subscriptions(db.session(), current_actor(), filters,
                                                pagination_parameters)

    @webhooks_blp.arguments(schemas.SubscriptionSchema)
    @webhooks_blp.response(201, schemas.NewSubscriptionSchema)
    @login_required
    def post(self, data):
        """Subscribe an API client to events: the answer carries the signing secret, once."""
        rules = subscriptions.UrlRules.from_config(current_app.config)
        with db.unit_of_work() as s:
            sub, secret = subscriptions.create_subscription(s, current_actor(), data, rules)
        sub.secret = secret  # shown once
        return sub, 201


@webhooks_blp.route("/subscriptions/<int:subscription_id>")
@webhooks_blp.response(200, schemas.SubscriptionSchema)
@login_required
def subscription(subscription_id):
    return subscriptions.get_subscription(db.session(), current_actor(), subscription_id)


def _set_active(subscription_id: int, active: bool):
    with db.unit_of_work() as s:
        return subscriptions.set_active(s, current_actor(), subscription_id, active)


@webhooks_blp.route("/subscriptions/<int:subscription_id>/disable", methods=["POST"])
@webhooks_blp.response(200, schemas.SubscriptionSchema)
@login_required
def disable(subscription_id):
    """Pause: its deliveries wait until it is enabled again."""
    return _set_active(subscription_id, False)


@webhooks_blp.route("/subscriptions/<int:subscription_id>/enable", methods=["POST"])
@webhooks_blp.response(200, schemas.SubscriptionSchema)
@login_required
def enable(subscription_id):
    return _set_active(subscription_id, True)


@webhooks_blp.route("/subscriptions/<int:subscription_id>/deliveries")
@webhooks_blp.arguments(schemas.DeliveryQuerySchema, location="query")
@webhooks_blp.response(200, schemas.DeliverySchema(many=True))
@webhooks_blp.paginate()
@login_required
def deliveries(filters, subscription_id, pagination_parameters):
    """The delivery log (投递记录), newest first: dead letters with `?state=dead`."""
    return subscriptions.deliveries(db.session(), current_actor(), subscription_id, filters,
                                    pagination_parameters)


@webhooks_blp.route("/subscriptions/<int:subscription_id>/deliveries/<int:delivery_id>")
@webhooks_blp.response(200, schemas.DeliveryDetailSchema)
@login_required
def delivery(subscription_id, delivery_id):
    """One delivery: the CloudEvents body sent and every attempt."""
    s = db.session()
    found = subscriptions.get_delivery(s, current_actor(), subscription_id, delivery_id)
    found.attempt_log = subscriptions.attempts_of(s, found)
    return found


@webhooks_blp.route("/subscriptions/<int:subscription_id>/deliveries/<int:delivery_id>/replay",
                    methods=["POST"])
@webhooks_blp.response(200, schemas.DeliverySchema)
@login_required
def replay(subscription_id, delivery_id):
    """Send again (a dead letter, or one the receiver lost): due now, attempts afresh."""
    with db.unit_of_work() as s:
        return subscriptions.replay(s, current_actor(), subscription_id, delivery_id)


# --- 回单 ---


def signed_get(kind: str):
    """The caller is the API client that signed `X-Timestamp + "." + path` (a GET has no
    body: the path is what is signed, so a signature is good for one resource only)."""
    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with db.unit_of_work() as s:
                _, g.actor = apiclients.by_signature(
                    s, request.headers.get("X-Api-Key"), request.headers.get("X-Timestamp"),
                    request.headers.get("X-Signature"), request.path.encode(), kind,
                    request.remote_addr, g.get("request_id"))
            return func(*args, **kwargs)
        wrapper._check_credentials = credential_headers("X-Api-Key", "X-Timestamp",
                                                        "X-Signature")
        return wrapper
    return decorator


@hotline_blp.route("/tickets/<ticket_no>")
@hotline_blp.response(200, schemas.TicketStatusSchema)
@hotline_blp.doc(security=SIGNED_REQUEST)
@signed_get("hotline")
def ticket(ticket_no):
    """A ticket's status and result (回单), for the 12345 hotline: `X-Api-Key`,
    `X-Timestamp` (Unix seconds) and `X-Signature` = hex HMAC-SHA256(secret, timestamp +
    "." + the request path, e.g. `/exchange/hotline/tickets/12345-2026-000001`)."""
    return hotline_results.ticket_status(db.session(), current_actor(), ticket_no)


# --- open data ---


def _cached(response: Response, etag: str) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={open_data.MAX_AGE_S}"
    return response.make_conditional(request)


@open_data_blp.route("/catalog.json")
@open_data_blp.response(200, schemas.CatalogSchema)
def catalog():
    """The catalogue of open datasets (DCAT-style), public."""
    with db.unit_of_work() as s:
        return open_data.catalog(s, current_app.config["PUBLIC_BASE_URL"])


def _dataset(name: str):
    with db.unit_of_work() as s:
        return open_data.DATASETS.get(name), open_data.snapshot(s, name)


@open_data_blp.route("/datasets/<dataset>.json")
@open_data_blp.response(200, schemas.OpenDatasetSchema,
                        description="ETag; Cache-Control: public")
@open_data_blp.alt_response(304, description="Not modified (If-None-Match matched)",
                            success=True)
def dataset_json(dataset):
    """A dataset with its data dictionary, licence and update time (public)."""
    found, snap = _dataset(dataset)
    body = schemas.OpenDatasetSchema().dumps(open_data.as_json(found, snap),
                                             ensure_ascii=False)
    return _cached(Response(body, mimetype="application/json"), snap.etag)


@open_data_blp.route("/datasets/<dataset>.csv")
@open_data_blp.response(200, {"type": "string"}, content_type="text/csv",
                        description="UTF-8 CSV, header row; suppressed cells empty. ETag; "
                                    "Cache-Control: public")
@open_data_blp.alt_response(304, description="Not modified (If-None-Match matched)",
                            success=True)
def dataset_csv(dataset):
    """A dataset as CSV (public); its dictionary is in the catalogue and the JSON."""
    found, snap = _dataset(dataset)
    response = Response(open_data.as_csv(found, snap), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{dataset}.csv"'
    return _cached(response, snap.etag)


WEBHOOKS_BLUEPRINTS = [webhooks_blp, hotline_blp, open_data_blp]

# --- end webhooks ---
