"""Sync API for phones: pull changes of the caller's grids, push a batch of operations."""

from __future__ import annotations

# as modules under other names: the views are called pull and push
from grid.sync import pull as pulling
from grid.sync import push as pushing
from grid.sync import schemas
from server import db
from server.api import Blueprint, json_text_response
from server.auth.actor import current_actor, login_required

blp = Blueprint("sync", __name__, url_prefix="/sync",
                description="Offline sync for phones (离线同步)")
blueprints = [blp]


@blp.route("/pull")
@blp.arguments(schemas.PullQuerySchema, location="query")
@blp.response(200, schemas.PullSchema)
@login_required
def pull(args):
    """What changed in your grids since `cursor`: records (masked, as their own endpoints
    show them; ended ones with `ended_at`) and tombstones (`deleted: true`: the record left
    your grids), in change order.

    Pages hold `limit` items (default and most 2000: ~1.3 MB of JSON, ~140 KB gzipped
    for clients that send `Accept-Encoding: gzip`). While `has_more` is true, pull
    again at once with `next_cursor`; when it is false, keep `next_cursor` for the next sync.
    No cursor: a full sync of the current records. `reset: true` (first page of a full
    sync, also when your grids or permissions changed): drop every record you hold first.
    A cursor this server cannot read is a 422: sync again without one.
    """
    # Built as JSON text by the service (PostgreSQL): not dumped again by PullSchema.
    return json_text_response(pulling.pull_json(db.session(), current_actor(),
                                                 args.get("cursor"), args["limit"]))


@blp.route("/push", methods=["POST"])
@blp.arguments(schemas.PushSchema)
@blp.response(200, schemas.PushResultsSchema)
@login_required
def push(data):
    """Apply up to 200 operations in order, each {op: create|update|end, type, client_uuid
    (creates), id + version (updates and ends), data (what the single-record endpoint
    takes)}. Each gets its own result {index, status, body | error}; a failed one changes
    nothing and does not stop the others. The answer is 200 whenever the batch was read
    (403 without registry:write; 422 for more than 200 items or a body that is no batch).

    Resending a batch is harmless: creates are idempotent by client_uuid (a new record's
    status is 201, a replay's 200 with the original record; the same client_uuid with other
    content is a 409); an update or end whose
    version is stale but whose changes the record already holds answers 200 with the
    record; one that the record does not reflect answers 412 with `current`.
    Field errors are named under the item: {"json": {"items": {"3": {"data": {...}}}}}.
    """
    with db.unit_of_work() as s:
        return {"results": pushing.push(s, current_actor(), data["items"])}
