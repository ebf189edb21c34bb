"""The insights API (研判与预警)."""

from __future__ import annotations

import io

from flask import send_file

from grid.insights import hotspot_runs, labour, risk_report, schemas  # hotspots
from server import db, jobs  # hotspots
from server.api import Blueprint  # hotspots
from server.auth.actor import current_actor, login_required  # hotspots
from server.security import no_store  # hotspots

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
