"""Cases API: /case-categories, /cases (intake, queue, actions, timeline), /cases/hotline,
/stats/performance."""

from __future__ import annotations

import functools

from flask import current_app, g, request, send_file
from flask.views import MethodView

from geo.fields import GpsFix
from grid.cases import (
    actions,
    bulk,
    categories,
    console_schemas,
    exports,
    intake,
    queue,
    resident_view,
    schemas,
    scope,
    stats,
    sweep,  # noqa: F401  (registers the worker's case_sweep and case_stats_compact)
    trends,
)
from server import apiclients, audit, db, idempotency
from server.api import SIGNED_REQUEST, Blueprint, etag, expected_version, link
from server.auth.actor import credential_headers, current_actor, login_required
from server.security import no_store

categories_blp = Blueprint("case_categories", __name__, url_prefix="/case-categories",
                           description="Case categories (大类/小类), limits and routing")
cases_blp = Blueprint("cases", __name__, url_prefix="/cases",
                      description="Cases (事件): report, triage, dispatch, handle, close")
stats_blp = Blueprint("stats", __name__, url_prefix="/stats",
                      description="Evaluation (综合评价)")
blueprints = [categories_blp, cases_blp, stats_blp]


# --- categories ----------------------------------------------------------------------------


@categories_blp.route("")
class Categories(MethodView):
    @categories_blp.response(200, schemas.CategorySchema(many=True))
    @login_required
    def get(self):
        """Active categories, 大类 and their 小类 (report with a 小类's id)."""
        return categories.list_categories(db.session())

    @categories_blp.arguments(schemas.CategorySchema)
    @categories_blp.response(201, schemas.CategorySchema)
    @login_required
    def post(self, data):
        """Add a category (area:manage)."""
        with db.unit_of_work() as s:
            category = categories.save_category(s, current_actor(), data)
        return category, 201, etag(category.version)


@categories_blp.route("/<int:category_id>")
class CategoryById(MethodView):
    @categories_blp.response(200, schemas.CategorySchema)
    @login_required
    def get(self, category_id):
        category = categories.get_category(db.session(), category_id)
        return category, 200, etag(category.version)

    @categories_blp.arguments(schemas.CategoryUpdateSchema)
    @categories_blp.response(200, schemas.CategorySchema)
    @login_required
    def patch(self, data, category_id):
        """Change limits, department, questions… (area:manage; needs the version)."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            category = categories.save_category(s, current_actor(), data, category_id, version)
        return category, 200, etag(category.version)


@categories_blp.route("/<int:category_id>/routes", methods=["PUT"])
@categories_blp.arguments(schemas.RouteSchema)
@categories_blp.response(204)
@login_required
def put_route(data, category_id):
    """A street's own department for this category (null removes the override)."""
    with db.unit_of_work() as s:
        categories.set_route(s, current_actor(), category_id, data["area_id"],
                             data["department_id"])


# --- cases ---------------------------------------------------------------------------------


@cases_blp.route("")
class Cases(MethodView):
    @cases_blp.arguments(schemas.CaseQuerySchema, location="query")
    @cases_blp.response(200, schemas.CaseAnswerSchema(many=True))
    @cases_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """The caller's queue: cases of their grids, street, department, or their own
        (those in the resident view)."""
        s, actor = db.session(), current_actor()
        return resident_view.present(s, actor, queue.list_cases(s, actor, filters,
                                                                pagination_parameters))

    @cases_blp.arguments(schemas.CaseCreateSchema)
    @cases_blp.response(201, schemas.ReportedCaseSchema)
    @idempotency.document_replay(cases_blp, schemas.ReportedCaseSchema)
    @link(201, "GetCase", "get", "/cases/{case_id}", "Read the case reported",
          case_id="$response.body#/id")
    @link(201, "ActOnCase", "post", "/cases/{case_id}/actions/{action}",
          "Accept (受理) the case reported, at its version", case_id="$response.body#/id",
          action="accept", **{"header.If-Match": "$response.header.ETag"})
    @login_required
    def post(self, data):
        """Report a problem (上报); the answer lists likely duplicates nearby. Idempotent by
        client_uuid (a replay answers 200 with the original case)."""
        client_uuid = data.pop("client_uuid", None)
        actor = current_actor()
        with db.unit_of_work() as s:
            case, duplicates, created = intake.report_case(s, actor, data, client_uuid)
            shown = actions.view(s, actor, case, duplicates, new=created)
        return shown, *idempotency.create_answer(created, etag(case.version))


@cases_blp.route("/counts")
@cases_blp.arguments(schemas.CaseQuerySchema, location="query")
@cases_blp.response(200, schemas.CaseCountsSchema)
@login_required
def counts(filters):
    """Badges: cases per state under the same filters as the queue."""
    counted = queue.count_by_state(db.session(), current_actor(), filters)
    return {"counts": counted, "total": sum(counted.values())}


def signed_by(kind: str):
    """The caller is the API client that signed the body (401 otherwise), checked before
    the body is even parsed: an unsigned caller learns nothing about what we accept."""
    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with db.unit_of_work() as s:
                _, g.actor = apiclients.by_signature(
                    s, request.headers.get("X-Api-Key"), request.headers.get("X-Timestamp"),
                    request.headers.get("X-Signature"), request.get_data(), kind,
                    request.remote_addr, g.get("request_id"))
            return func(*args, **kwargs)
        # unsigned calls are a 401 before any request hook looks at the input
        wrapper._check_credentials = credential_headers("X-Api-Key", "X-Timestamp",
                                                        "X-Signature")
        return wrapper
    return decorator


@cases_blp.route("/hotline", methods=["POST"])
@cases_blp.response(201, schemas.CaseSchema)
@idempotency.document_replay(cases_blp, schemas.CaseSchema)
@signed_by("hotline")
@cases_blp.arguments(schemas.HotlineCaseSchema)
@cases_blp.doc(security=SIGNED_REQUEST)
def hotline(data):
    """12345 hotline tickets, server to server: `X-Api-Key`, `X-Timestamp` (Unix seconds)
    and `X-Signature` = hex HMAC-SHA256(secret, timestamp + "." + body). Idempotent by
    ticket_no: 200 with the original case when sent again."""
    actor = current_actor()
    with db.unit_of_work() as s:
        case, created = intake.report_from_hotline(s, actor, data)
    return resident_view.CaseView(case, actor), *idempotency.create_answer(
        created, etag(case.version))


@cases_blp.route("/likely-duplicates")
@cases_blp.arguments(schemas.DuplicateQuerySchema, location="query")
@cases_blp.response(200, schemas.DuplicateSchema(many=True))
@login_required
def likely_duplicates(query):
    """Before reporting (查重): open cases of this 小类 near where you stand, in the
    resident view, nearest first (at most ten; CASE_LOOKUP_LIMIT per user). Join one with
    `POST /cases/{id}/join {"location", "category_id"}` instead of filing anew."""
    lon, lat, radius = query["near"]
    with db.unit_of_work() as s:
        return intake.duplicate_lookup(s, current_actor(), query["category_id"],
                                       GpsFix(lon=lon, lat=lat), radius, _lookup_limit())


def _lookup_limit() -> tuple[int, int]:
    config = current_app.config
    return config["CASE_LOOKUP_LIMIT"], config["CASE_LOOKUP_WINDOW_S"]


@cases_blp.route("/<int:case_id>")
@cases_blp.response(200, schemas.CaseAnswerSchema)
@link(200, "ActOnCase", "post", "/cases/{case_id}/actions/{action}",
      "Take one of `actions` at the version read", case_id="$request.path.case_id",
      action="$response.body#/actions/0", **{"header.If-Match": "$response.header.ETag"})
@link(200, "Timeline", "get", "/cases/{case_id}/timeline", "The case's history",
      case_id="$request.path.case_id")
@login_required
def get_case(case_id):
    """One case with the actions you may take now: the whole case for its staff, the
    resident view for its reporter and residents who joined or follow it."""
    s, actor = db.session(), current_actor()
    case = scope.get_case(s, actor, case_id)
    return actions.view(s, actor, case), 200, etag(case.version)


@cases_blp.route("/<int:case_id>/actions/<string:action>", methods=["POST"])
@cases_blp.arguments(schemas.ActionSchema)
@cases_blp.response(200, schemas.CaseAnswerSchema)
@login_required
def act(data, case_id, action):
    """Move the case along its loop (accept, reject, merge, dispatch, sign, return, handle,
    verify, reject_result, close, evaluate, reopen, request_extension, request_defer,
    request_backlog, request_void, approve, refuse, resume). Needs the version (If-Match or
    `version`): 412 with the current case if stale, 409 with `allowed` if not possible now."""
    version = expected_version(data)
    actor = current_actor()
    with db.unit_of_work() as s:
        case = actions.act(s, actor, case_id, action, data, version,
                           lambda c, allowed: _as_dict(c, actor, allowed))
        shown = actions.view(s, actor, case)
    return shown, 200, etag(case.version)


def _as_dict(case, actor, allowed) -> dict:
    shown = resident_view.shown(db.session(), actor, case, allowed)
    return schemas.CaseAnswerSchema().dump(shown)


@cases_blp.route("/<int:case_id>/join", methods=["POST"])
@cases_blp.arguments(schemas.JoinSchema)
@cases_blp.response(200, schemas.CaseAnswerSchema)
@login_required
def join(data, case_id):
    """"Me too": join this open case instead of filing anew — a case you were offered:
    a likely duplicate of your own report (`report_case_id`), or of the pre-report lookup
    `GET /cases/likely-duplicates` where you stand (`location` + `category_id`). You then
    see its resident view and are told of its progress."""
    actor = current_actor()
    with db.unit_of_work() as s:
        case = intake.join_case(s, actor, case_id, data, _lookup_limit())
        shown = actions.view(s, actor, case)
    return shown, 200, etag(case.version)


@cases_blp.route("/<int:case_id>/follow", methods=["POST"])
@cases_blp.arguments(schemas.FollowSchema, required=False)
@cases_blp.response(204)
@login_required
def follow(data, case_id):
    """Follow (or stop following) a case you can see: you are told when it moves. The
    body is optional: none follows."""
    with db.unit_of_work() as s:
        intake.follow_case(s, current_actor(), case_id, data["following"])


@cases_blp.route("/<int:case_id>/timeline")
@cases_blp.response(200, schemas.EventAnswerSchema(many=True))
@login_required
def get_timeline(case_id):
    """Every action on the case, oldest first (流转记录); outside the case's staff, the
    public timeline (ResidentEvent)."""
    return resident_view.timeline(db.session(), current_actor(), case_id)


@cases_blp.route("/<int:case_id>/requests")
@cases_blp.response(200, schemas.RequestSchema(many=True))
@login_required
def get_requests(case_id):
    """Extension, defer, backlog and void requests with their decisions."""
    return queue.requests_of(db.session(), current_actor(), case_id)


@cases_blp.route("/<int:case_id>/contact", methods=["POST"])
@no_store
@cases_blp.arguments(audit.PurposeSchema)
@cases_blp.response(200, schemas.CaseContactSchema)
@login_required
def reveal_contact(data, case_id):
    """The caller's phone in clear, for a stated purpose: a code and a text (dispatchers;
    audited, and so is a refusal)."""
    with db.unit_of_work() as s:
        return queue.contact_of(s, current_actor(), case_id, audit.purpose_of(data))


# --- statistics ----------------------------------------------------------------------------


@stats_blp.route("/performance")
@stats_blp.arguments(schemas.PerformanceQuerySchema, location="query")
@stats_blp.response(200, schemas.PerformanceSchema)
@login_required
def get_performance(filters):
    """上报数 … 满意率 and the composite score per department and per grid, for cases
    reported in [from, to) that you may see (CASE_SCORE_WEIGHTS sets the weights)."""
    return stats.performance(db.session(), current_actor(), filters,
                             current_app.config["CASE_SCORE_WEIGHTS"])


# --- consoleapi: bulk actions, exports, trends ----------------------------------------------


@cases_blp.route("/bulk-actions", methods=["POST"])
@cases_blp.arguments(console_schemas.BulkActionSchema)
@cases_blp.response(200, console_schemas.BulkAnswerSchema, headers={idempotency.REPLAY_HEADER: {
    "description": "true: a replay of the same client_uuid (nothing was done again)",
    "schema": {"type": "string", "enum": ["true"]}}})
@login_required
def bulk_actions(data):
    """One action on several cases (批量: at most 100), each through the case's own action
    in its own savepoint: the answer lists each case's new state and version, or its error
    in the one error shape (404, 403, 409 with `allowed`, 412 with `current`, 422) — one
    failing leaves the others going through. The same client_uuid again answers the same
    results without acting again (409 if the body differs)."""
    actor = current_actor()
    client_uuid, action, items = data.pop("client_uuid"), data.pop("action"), data.pop("items")
    with db.unit_of_work() as s:
        answer, made = bulk.apply(s, actor, client_uuid, action, items, data,
                                  lambda c, allowed: _as_dict(c, actor, allowed))
    return answer, 200, ({} if made else {idempotency.REPLAY_HEADER: "true"})


@stats_blp.route("/trends")
@stats_blp.arguments(console_schemas.TrendsQuerySchema, location="query")
@stats_blp.response(200, console_schemas.TrendsSchema)
@login_required
def get_trends(filters):
    """The dashboard (统计考核): reported / accepted / closed cases, yellow and red cards of
    an area's subtree on the UTC day each happened, per day, week or month, per category
    (大类/小类), department and child area, beside the period before and the same period a
    year earlier; with /stats/performance's rates and its rankings (综合评价) for the same
    period. From the daily roll-up (stats:read)."""
    return trends.trends(db.session(), current_actor(), filters,
                         current_app.config["CASE_SCORE_WEIGHTS"])


XLSX_FILE = {"type": "string", "format": "binary"}


@cases_blp.route("/export")
@no_store  # personal data, even masked
@cases_blp.arguments(schemas.CaseQuerySchema, location="query")
@cases_blp.response(200, XLSX_FILE, content_type=exports.XLSX,
                    description="The queue as .xlsx (X-Row-Count: the rows)")
@login_required
def export_cases(filters):
    """The queue as it is filtered and sorted, as .xlsx (导出): the cases of your areas and
    departments, shown as the list shows them (the caller's phone masked), times in the
    area's zone; at most 10,000 rows (422: narrow the filters). Audited."""
    with db.unit_of_work() as s:
        out, name, count = exports.export_cases(s, current_actor(), filters)
    response = send_file(out, mimetype=exports.XLSX, as_attachment=True, download_name=name)
    response.headers["X-Row-Count"] = str(count)
    return response


@stats_blp.route("/trends/export")
@stats_blp.arguments(console_schemas.TrendsQuerySchema, location="query")
@stats_blp.response(200, XLSX_FILE, content_type=exports.XLSX,
                    description="The dashboard's tables as .xlsx")
@login_required
def export_trends(filters):
    """The dashboard's tables (GET /stats/trends) as .xlsx: 趋势, 按类别, 按部门, 按区域,
    部门排名, 网格排名. Audited."""
    with db.unit_of_work() as s:
        out, name = exports.export_trends(s, current_actor(), filters,
                                          current_app.config["CASE_SCORE_WEIGHTS"])
    return send_file(out, mimetype=exports.XLSX, as_attachment=True, download_name=name)
