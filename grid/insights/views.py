"""The insights API (研判与预警)."""

from __future__ import annotations

import io

from flask import send_file
from flask.views import MethodView

from grid.insights import (
    actions,
    hotspot_runs,
    indicators,
    labour,
    reports,
    risk_report,
    schemas,
    warnings,
)
from server import db, jobs
from server.api import Blueprint, etag, expected_version, statuses
from server.auth.actor import current_actor, login_required
from server.jobs import JobSchema
from server.security import no_store
from server.storage.blobs import blob_store

blueprints: list = []

# --- hotspots: hot spots and labour risk ---

hotspots_blp = Blueprint("hotspots", __name__, url_prefix="/insights/hotspots",
                         description="Hot spots (热点): where cases of a category cluster now "
                                     "(method: README \"Hot spots\")")
labour_blp = Blueprint("labour_risks", __name__, url_prefix="/insights/labour-risks",
                       description="Labour-dispute risk (劳资纠纷预警) of organisations, monthly")


@hotspots_blp.route("")
@hotspots_blp.arguments(schemas.HotspotQuerySchema, location="query")
@hotspots_blp.response(200, schemas.HotspotListSchema)
@login_required
def get_hotspots(args):
    """The latest run's hot spots of a category in an area of yours (the worker runs every
    district daily): shape, count, expected, z/p/q, class (new, intensifying, persistent,
    fading) and the case ids you may see. Needs stats:read."""
    return hotspot_runs.hotspots_for(db.session(), current_actor(), args["category"],
                                     args["area_id"], args.get("hotspot_class"))


@hotspots_blp.route("/runs", methods=["POST"])
@hotspots_blp.arguments(schemas.HotspotRunCreateSchema)
@hotspots_blp.response(202, jobs.JobSchema, description="Queued: poll the job (`Location`)")
@login_required
def post_hotspot_run(data):
    """Run the analysis now for one category over an area of yours, with settings of your
    own (defaults: README), as a background job; its result names the run, which
    `GET /insights/hotspots` then shows. Needs stats:read."""
    with db.unit_of_work() as s:
        job = hotspot_runs.submit(s, current_actor(), data)
    return jobs.accepted(job)


@labour_blp.route("")
@labour_blp.arguments(schemas.RiskQuerySchema, location="query")
@labour_blp.response(200, schemas.OrganisationRiskSchema(many=True))
@labour_blp.paginate()
@login_required
def list_labour_risks(args, pagination_parameters):
    """The month's scored organisations in your grids, riskiest first, with each factor's
    points. Needs registry:read."""
    return labour.list_risks(db.session(), current_actor(), args["month"], args,
                             pagination_parameters)


@labour_blp.route("/<int:org_id>")
@labour_blp.arguments(schemas.RiskSeriesQuerySchema, location="query")
@labour_blp.response(200, schemas.RiskCardSchema)
@login_required
def get_labour_risk(args, org_id):
    """An organisation's monthly scores (default: the last 12 months) with its indicators.
    Audited (wage arrears are sensitive business data)."""
    with db.unit_of_work() as s:
        card = labour.risk_card(s, current_actor(), org_id, args.get("from_"), args.get("to"))
        return _card(card)


def _card(card: labour.RiskCard) -> dict:
    return {"organisation_id": card.organisation.id,
            "organisation_name": card.organisation.name,
            "latest": card.latest, "series": card.series, "indicators": card.indicators}


@labour_blp.route("/<int:org_id>/report")
@no_store
@labour_blp.arguments(schemas.RiskReportQuerySchema, location="query")
@labour_blp.response(200, {"type": "string", "format": "binary"},
                     content_type=risk_report.XLSX,
                     description="评估报告 as .xlsx (format=xlsx) or printable HTML (format=html)")
@login_required
def get_labour_risk_report(args, org_id):
    """The organisation's risk report (评估报告) a community prints: latest score and
    factors, the indicator series beside the scores. Audited (it names the legal
    representative)."""
    with db.unit_of_work() as s:
        content, name, mimetype = risk_report.build(s, current_actor(), org_id,
                                                    args["format"], args.get("from_"),
                                                    args.get("to"))
    return send_file(io.BytesIO(content), mimetype=mimetype,
                     as_attachment=args["format"] == "xlsx", download_name=name)


blueprints += [hotspots_blp, labour_blp]
# --- end hotspots ---

# --- warnings: /indicators, /warnings, /reports/leaders ---

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
indicators_blp = Blueprint("indicators", __name__, url_prefix="/indicators",
                           description="Indicators (城市运行体征指标) and their thresholds")
warnings_blp = Blueprint("warnings", __name__, url_prefix="/warnings",
                         description="Early warnings (预警): 三色预警 raised by the indicators")
reports_blp = Blueprint("leader_reports", __name__, url_prefix="/reports/leaders",
                        description="Leaders' reports (领导报表, .xlsx)")
blueprints += [indicators_blp, warnings_blp, reports_blp]


@indicators_blp.route("")
class Indicators(MethodView):
    @indicators_blp.arguments(schemas.CityIndicatorQuerySchema, location="query")
    @indicators_blp.response(200, schemas.CityIndicatorSchema(many=True))
    @indicators_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """The indicators (warning:read or indicator:manage), by code."""
        return indicators.list_indicators(db.session(), current_actor(), filters,
                                          pagination_parameters)

    @indicators_blp.arguments(schemas.CityIndicatorCreateSchema)
    @indicators_blp.response(201, schemas.CityIndicatorSchema)
    @statuses(409)
    @login_required
    def post(self, data):
        """Create an indicator (indicator:manage): its kind, level, window, schedule,
        parameters and thresholds; the worker evaluates it from now on."""
        with db.unit_of_work() as s:
            indicator = indicators.create_indicator(s, current_actor(), data)
        return indicator, 201, etag(indicator.version)


@indicators_blp.route("/<int:indicator_id>")
class IndicatorById(MethodView):
    @indicators_blp.response(200, schemas.CityIndicatorSchema)
    @login_required
    def get(self, indicator_id):
        indicator = indicators.get_indicator(db.session(), current_actor(), indicator_id)
        return indicator, 200, etag(indicator.version)

    @indicators_blp.arguments(schemas.CityIndicatorUpdateSchema)
    @indicators_blp.response(200, schemas.CityIndicatorSchema)
    @login_required
    def patch(self, data, indicator_id):
        """Tune an indicator or switch it off (`active: false`); needs its version."""
        version = expected_version(data)
        with db.unit_of_work() as s:
            indicator = indicators.update_indicator(s, current_actor(), indicator_id, data,
                                                    version)
        return indicator, 200, etag(indicator.version)


@indicators_blp.route("/<int:indicator_id>/areas/<int:area_id>")
class AreaThresholds(MethodView):
    @indicators_blp.arguments(schemas.AreaThresholdsSchema)
    @indicators_blp.response(200, schemas.AreaThresholdsOutSchema)
    @indicators_blp.alt_response(201, schema=schemas.AreaThresholdsOutSchema, success=True,
                                 description="Created")
    @login_required
    def put(self, data, indicator_id, area_id):
        """An area's own thresholds for its subtree (the deepest area's win); null keeps
        the indicator's."""
        with db.unit_of_work() as s:
            row, created = indicators.set_area_thresholds(s, current_actor(), indicator_id,
                                                          area_id, data)
        return row, 201 if created else 200

    @indicators_blp.response(204)
    @login_required
    def delete(self, indicator_id, area_id):
        """Remove an area's thresholds: the next area up (or the indicator's) apply."""
        with db.unit_of_work() as s:
            indicators.remove_area_thresholds(s, current_actor(), indicator_id, area_id)


@indicators_blp.route("/<int:indicator_id>/series")
@indicators_blp.arguments(schemas.SeriesQuerySchema, location="query")
@indicators_blp.response(200, schemas.SeriesSchema)
@login_required
def indicator_series(args, indicator_id):
    """The indicator's value for an area (and department) at its last runs, oldest
    first; figures about fewer than 5 people null for roles without register access."""
    return indicators.area_series(db.session(), current_actor(), indicator_id,
                                  args["area_id"], args.get("department_id"), args["limit"])


@warnings_blp.route("")
@warnings_blp.arguments(schemas.WarningQuerySchema, location="query")
@warnings_blp.response(200, schemas.WarningSchema(many=True))
@warnings_blp.paginate()
@login_required
def list_warnings(filters, pagination_parameters):
    """Warnings of your areas (and departments), open and most severe first."""
    s, actor = db.session(), current_actor()
    found = warnings.list_warnings(s, actor, filters, pagination_parameters)
    return warnings.shown(s, actor, found, lambda w: actions.allowed(s, actor, w))


@warnings_blp.route("/counts")
@warnings_blp.arguments(schemas.WarningQuerySchema, location="query")
@warnings_blp.response(200, schemas.WarningCountsSchema)
@login_required
def warning_counts(filters):
    """How many warnings under the same filters as the list, by state and level."""
    return warnings.warning_counts(db.session(), current_actor(), filters)


def _detail(s, actor, warning) -> dict:
    shown = warnings.shown(s, actor, [warning], lambda w: actions.allowed(s, actor, w))[0]
    return {**shown, "records": warnings.records(s, actor, warning),
            "timeline": warnings.timeline(s, warning)}


def present_current(warning) -> dict:
    """A stale warning (412) as the detail shows it to the caller."""
    s = db.session()
    fresh = warnings.get_warning(s, current_actor(), warning.id)
    return schemas.WarningDetailSchema().dump(_detail(s, current_actor(), fresh))


@warnings_blp.route("/<int:warning_id>")
@warnings_blp.response(200, schemas.WarningDetailSchema)
@login_required
def get_warning(warning_id):
    """One warning: its figure, the records behind it you may see, its timeline and the
    actions you may take."""
    s, actor = db.session(), current_actor()
    warning = warnings.get_warning(s, actor, warning_id)
    return _detail(s, actor, warning), 200, etag(warning.version)


def _act(action: str, data: dict, warning_id: int):
    version = expected_version(data)
    actor = current_actor()
    with db.unit_of_work() as s:
        warning = actions.act(s, actor, warning_id, action, data, version)
        shown = _detail(s, actor, warning)
    return shown, 200, etag(warning.version)


def _action_view(action: str, doc: str, schema: type = schemas.WarningNoteSchema):
    def view(data, warning_id):
        return _act(action, data, warning_id)

    view.__name__, view.__doc__ = f"warning_{action}", doc
    path = "/<int:warning_id>/" + action.replace("_", "-")
    decorated = warnings_blp.route(path, methods=["POST"])(
        warnings_blp.arguments(schema)(
            warnings_blp.response(200, schemas.WarningDetailSchema)(login_required(view))))
    return decorated


acknowledge = _action_view("acknowledge", """签收: you are on it (warning:act, staff of its
area). Needs the version (If-Match or `version`).""")
resolve = _action_view("resolve", """解除: the trouble is over (`note`: what was done).""")
dismiss = _action_view("dismiss", """排除: not a problem (`reason` required); not raised again
within the indicator's window unless it gets worse.""", schemas.WarningDismissSchema)
to_case = _action_view("to_case", """转为事件/督办: file a case of `category_code` in the
warning's grid (or `grid_code`); once per warning.""", schemas.WarningActionSchema)


@reports_blp.route("")
class LeaderReports(MethodView):
    @reports_blp.arguments(schemas.LeaderReportQuerySchema, location="query")
    @reports_blp.response(200, schemas.LeaderReportSchema(many=True))
    @reports_blp.paginate()
    @login_required
    def get(self, filters, pagination_parameters):
        """Weekly reports of your areas and the reports you asked for, newest first."""
        found = reports.list_reports(db.session(), current_actor(), filters,
                                     pagination_parameters)
        return [{**{k: getattr(r, k) for k in ("id", "area_id", "kind", "start", "end",
                                               "size", "created_at")},
                 "download": reports.download_path(r)} for r in found]

    @reports_blp.arguments(schemas.ReportRequestSchema)
    @reports_blp.response(202, JobSchema)
    @login_required
    def post(self, data):
        """Build the report of an area and period (stats:read): a job; its result names
        the download."""
        with db.unit_of_work() as s:
            job = reports.request_report(s, current_actor(), data)
        return jobs.accepted(job)


@reports_blp.route("/<int:report_id>/file")
@no_store
@reports_blp.response(200, {"type": "string", "format": "binary"}, content_type=XLSX,
                      description="The report as .xlsx")
@login_required
def download_report(report_id):
    """Download a report (audited)."""
    with db.unit_of_work() as s:
        out, name = reports.open_report(s, current_actor(), blob_store(), report_id)
    return send_file(out, mimetype=XLSX, as_attachment=True, download_name=name)

# --- end warnings ---
