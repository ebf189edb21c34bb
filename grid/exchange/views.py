"""Exchange API. Each helper's part is one block with its own list of blueprints."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask.views import MethodView

from grid.exchange import (
    declarations,
    grants,
    hotline_results,
    open_data,
    reviews,
    schemas,
    subscriptions,
)
from grid.exchange import feeds as feeds_service
from grid.exchange.events import EVENT_TYPES
from grid.exchange.intake import Sender
from server import apiclients, clock, db, idempotency
from server.api import SIGNED_REQUEST, Blueprint, ErrorSchema, etag, expected_version, statuses
from server.auth.actor import current_actor, login_required
from server.storage.images import PayloadTooLarge

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


@hotline_blp.route("/tickets/<ticket_no>")
@hotline_blp.response(200, schemas.TicketStatusSchema)
@hotline_blp.doc(security=SIGNED_REQUEST)
@apiclients.signed("hotline", what="path")
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


# --- feeds: feeds in (1+N 多源), review items (核实任务), declarations, break-the-glass ---

feeds_blp = Blueprint("feeds", __name__, url_prefix="/feeds",
                      description="Feeds in from other systems (1+N 多源): batch upserts by "
                                  "the systems' own record keys, provenance per field")
reviews_blp = Blueprint("review_items", __name__, url_prefix="/review-items",
                        description="核实任务: where a feed disagrees with what a grid worker "
                                    "collected; the worker keeps, replaces or edits")
grants_blp = Blueprint("break_glass", __name__, url_prefix="/break-glass",
                       description="紧急授权: one record outside your scope, for a limited "
                                   "time, audited and reviewed")


@feeds_blp.route("/batches", methods=["POST"])
@feeds_blp.response(200, schemas.FeedReportSchema)
@feeds_blp.alt_response(413, schema=ErrorSchema,
                        description=f"More than {schemas.MAX_FEED_ROWS} rows: split the batch")
@apiclients.signed("system")
@feeds_blp.arguments(schemas.FeedBatchSchema)
@feeds_blp.doc(security=SIGNED_REQUEST)
def upsert_batch(data):
    """A batch of one kind of register record from another system (key of kind `system`;
    `X-Api-Key`, `X-Timestamp`, `X-Signature` = hex HMAC-SHA256(secret, timestamp + "." +
    body)). Idempotent by each row's `record_key`; each row is checked as the register
    checks it and rejected alone with its reasons. Values a grid worker collected are never
    overwritten: a disagreement becomes a review item (核实任务) for the grid's workers.
    The answer counts created, updated, unchanged, queued for review and rejected rows."""
    if len(data["rows"]) > schemas.MAX_FEED_ROWS:
        raise PayloadTooLarge(f"At most {schemas.MAX_FEED_ROWS} rows a batch: split it")
    with db.unit_of_work() as s:
        sender = Sender(g.api_client.id, g.api_client.name, clock.now())
        return feeds_service.upsert_batch(s, current_actor(), sender, data["kind"],
                                          data["rows"])


@feeds_blp.route("/provenance/<string:object_type>/<int:object_id>")
@feeds_blp.response(200, schemas.ProvenanceSchema)
@login_required
def provenance(object_type, object_id):
    """Where each field of a register record came from (数据来源): the system, its record
    key and when, or the grid worker who verified it; fields without an entry have the
    record's `source`."""
    return reviews.provenance(db.session(), current_actor(), object_type, object_id)


@reviews_blp.route("")
@reviews_blp.arguments(schemas.ReviewQuerySchema, location="query")
@reviews_blp.response(200, schemas.FeedReviewItemSchema(many=True))
@reviews_blp.paginate()
@login_required
def list_review_items(filters, pagination_parameters):
    """Review items of your grids (oldest first); open ones are also in `GET /me/tasks`."""
    return reviews.list_items(db.session(), current_actor(), filters, pagination_parameters)


@reviews_blp.route("/<int:item_id>")
class ReviewItemById(MethodView):
    @reviews_blp.response(200, schemas.FeedReviewItemSchema)
    @login_required
    def get(self, item_id):
        item = reviews.get_item(db.session(), current_actor(), item_id)
        return item, 200, etag(item.version)


@reviews_blp.route("/<int:item_id>/resolve", methods=["POST"])
@reviews_blp.arguments(schemas.ReviewResolveSchema)
@reviews_blp.response(200, schemas.FeedReviewItemSchema)
@statuses(409)
@login_required
def resolve_review_item(data, item_id):
    """Keep the register's value, replace it with the system's, or edit it (`value`), at
    the item's version (If-Match or `version`: 412 with the current item when stale). The
    same decision again changes nothing; another one is a 409."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        item = reviews.resolve(s, current_actor(), item_id, data, version)
    return item, 200, etag(item.version)


@grants_blp.route("/grants")
class Grants(MethodView):
    @grants_blp.arguments(schemas.GrantQuerySchema, location="query")
    @grants_blp.response(200, schemas.GrantSchema(many=True))
    @grants_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Auditors (grant:review): every grant, open ones first — the review list. Anyone
        else with record:break_glass: their own grants."""
        return grants.list_grants(db.session(), current_actor(), filters,
                                  pagination_parameters)

    @grants_blp.arguments(schemas.GrantCreateSchema)
    @grants_blp.response(201, schemas.GrantSchema)
    @statuses(409)
    @login_required
    def post(self, data):
        """Open one register record outside your scope (record:break_glass), stating why:
        readable at its usual URL until `expires_at` (BREAK_GLASS_MINUTES, 60 by default),
        every read audited; the auditors and the record's grid chief are told at once."""
        minutes = current_app.config.get("BREAK_GLASS_MINUTES", grants.DEFAULT_MINUTES)
        with db.unit_of_work() as s:
            grant = grants.open_grant(s, current_actor(), data["object_type"],
                                      data["object_id"], data["reason"], minutes)
        return grant, 201, etag(grant.version)


@grants_blp.route("/grants/<int:grant_id>")
@grants_blp.response(200, schemas.GrantSchema)
@login_required
def get_grant(grant_id):
    grant = grants.get_grant(db.session(), current_actor(), grant_id)
    return grant, 200, etag(grant.version)


@grants_blp.route("/grants/<int:grant_id>/close", methods=["POST"])
@grants_blp.arguments(schemas.GrantCloseSchema)
@grants_blp.response(200, schemas.GrantSchema)
@statuses(409)
@login_required
def close_grant(data, grant_id):
    """An auditor (grant:review) closes a grant with a finding (使用正当 / 使用不当 / 存疑); it
    opens nothing any more. Needs the version (If-Match or `version`)."""
    version = expected_version(data)
    with db.unit_of_work() as s:
        grant = grants.close_grant(s, current_actor(), grant_id, data["finding"],
                                   data.get("note"), version)
    return grant, 200, etag(grant.version)


declarations_blp = Blueprint("declarations", __name__, url_prefix="/declarations",
                             description="居民自主申报: residents declare facts about their own "
                                         "household; the grid worker checks them")


def _declaration_limit() -> tuple[int, int]:
    config = current_app.config
    return (config.get("DECLARATION_LIMIT", declarations.DEFAULT_LIMIT),
            config.get("DECLARATION_WINDOW_S", declarations.DEFAULT_WINDOW_S))


def _shown(declaration, actor):
    declaration.actions = declarations.allowed(db.session(), actor, declaration)
    return declaration


@declarations_blp.route("")
class Declarations(MethodView):
    @declarations_blp.arguments(schemas.DeclarationQuerySchema, location="query")
    @declarations_blp.response(200, schemas.DeclarationSchema(many=True))
    @declarations_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """A resident: their own declarations, with their state and the reason of a
        refusal. A grid's checkers (declaration:decide): their grids' declarations."""
        actor = current_actor()
        found = declarations.list_declarations(db.session(), actor, filters,
                                               pagination_parameters)
        return [_shown(d, actor) for d in found]

    @declarations_blp.arguments(schemas.DeclarationCreateSchema)
    @declarations_blp.response(201, schemas.DeclarationSchema)
    @idempotency.document_replay(declarations_blp, schemas.DeclarationSchema)
    @statuses(429)
    @login_required
    def post(self, data):
        """Declare a fact about your own household (迁入, 租户, 新生儿, 电话变更, 独居老人) at
        your home's point (in the community you live in); idempotent by client_uuid; at most
        DECLARATION_LIMIT a day. It goes to your grid worker, who checks it."""
        client_uuid = data.pop("client_uuid", None)
        actor = current_actor()
        with db.unit_of_work() as s:
            found, created = declarations.submit(s, actor, data, client_uuid,
                                                 _declaration_limit())
        return _shown(found, actor), *idempotency.create_answer(created, etag(found.version))


@declarations_blp.route("/<int:declaration_id>")
@declarations_blp.response(200, schemas.DeclarationSchema)
@login_required
def get_declaration(declaration_id):
    actor = current_actor()
    found = declarations.get_declaration(db.session(), actor, declaration_id)
    return _shown(found, actor), 200, etag(found.version)


@declarations_blp.route("/<int:declaration_id>/actions/<string:action>", methods=["POST"])
@declarations_blp.arguments(schemas.DeclarationActionSchema)
@declarations_blp.response(200, schemas.DeclarationSchema)
@statuses(409)
@login_required
def act_on_declaration(data, declaration_id, action):
    """accept (采纳: the register changes, `self_declared`), refuse (with `reason`, which the
    resident sees) or withdraw (the resident), at the version read (If-Match or
    `version`)."""
    version = expected_version(data)
    actor = current_actor()
    with db.unit_of_work() as s:
        found = declarations.act(s, actor, declaration_id, action, data, version)
        shown = _shown(found, actor)
    return shown, 200, etag(found.version)


def current_declaration(declaration) -> dict:
    """A stale declaration's 412 shows it as the API does (registered at wiring)."""
    return schemas.DeclarationSchema().dump(declaration)


def current_grant(grant) -> dict:
    return schemas.GrantSchema().dump(grant)


def declaration_access(s, actor, declaration_id: int) -> None:
    """Who may see a declaration's photos: whoever may see the declaration."""
    declarations.get_declaration(s, actor, declaration_id)


FEEDS_BLUEPRINTS = [feeds_blp, reviews_blp, grants_blp, declarations_blp]

# --- end feeds ---
